"""OONI's classic web_connectivity summary keys, computed from a measurement's observations.

``blocking``, ``accessible``, ``dns_consistency``, the body/status/title/headers matches and
OONI LTE's ``x_blocking_flags``: the keys OONI's own pipeline and older readers expect in
``test_keys``. The probe writes them into every measurement; they are a plain, compatible
summary, not the verdict (``analysis.core`` decides that). Reading observations, like the
verdict does, they see the same addresses, failures and titles.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec

from censorwatch import failures
from censorwatch.netinfo import AddressPlan
from censorwatch.observations.builder import DnsObs, HttpObs, Observations, observe, url_parts
from censorwatch.observations.schema import TestKeys
from censorwatch.observations.text import title_of

# OONI LTE's x_blocking_flags bits.
FLAG_DNS, FLAG_TCP, FLAG_TLS, FLAG_HTTP, FLAG_HTTP_DIFF, FLAG_SUCCESS = 1, 2, 4, 8, 16, 32
BODY_PROPORTION_MATCH = 0.7  # OONI: bodies within 70 % of each other's length "match"
# Headers every server sets its own way: sharing only these says nothing.
COMMON_HEADERS = frozenset({"date", "content-length", "content-type", "server"})
NETWORK_TLS_FAILURES = frozenset(
    {
        failures.CONNECTION_RESET,
        failures.GENERIC_TIMEOUT,
        failures.EOF_ERROR,
        failures.SSL_FAILED_HANDSHAKE,
        failures.CONNECTION_REFUSED,
    }
)


class ClassicKeys(msgspec.Struct):
    """The summary keys, in the order a probe writes them."""

    dns_consistency: str | None = None
    body_length_match: bool | None = None
    body_proportion: float | None = None
    headers_match: bool | None = None
    status_code_match: bool | None = None
    title_match: bool | None = None
    blocking: str | bool | None = None
    accessible: bool | None = None
    x_blocking_flags: int = 0

    def as_test_keys(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _classic_queries(obs: Observations) -> list[DnsObs]:
    """The queries for the measured name by the resolver a browser would use (the system
    one; without it, the first resolver the probe asked), not those of redirects."""
    own = [q for q in obs.queries if not q.redirect]
    classic = [q for q in own if q.classic]
    if classic or not own:
        return classic
    return [q for q in own if q.engine == own[0].engine]


def probe_addresses(obs: Observations, url: str) -> list[str]:
    """The addresses the probe measured the URL's host at, as the classic test took them."""
    _, host, _ = url_parts(url)
    host = host.strip("[]")
    if host and _is_ip(host):
        return [host]
    addrs: list[str] = []
    for q in _classic_queries(obs):
        addrs.extend(a for a in q.addrs if a not in addrs)
    return addrs


def _dns_consistency(
    obs: Observations, probe_addrs: list[str], dns_failure: str | None, plan: AddressPlan
) -> str | None:
    """Same addresses, same ASes, a name-valid TLS handshake, or the same failure."""
    control = obs.control
    ctrl_addrs = control.dns_addrs
    ctrl_failure = control.dns_failure
    if ctrl_failure == failures.TH_DNS_NAME_ERROR:
        ctrl_failure = failures.DNS_NXDOMAIN
    if dns_failure and ctrl_failure == dns_failure:
        return "consistent"
    if dns_failure:
        return "inconsistent"
    if ctrl_failure and ctrl_failure != failures.DNS_NXDOMAIN and not ctrl_addrs:
        return None  # the control could not resolve: nothing to compare with
    if set(probe_addrs) & set(ctrl_addrs):
        return "consistent"
    if any(plan.is_bogon(a) for a in probe_addrs):
        return "inconsistent"
    probe_as = {i.asn for a in probe_addrs if (i := plan.lookup(a))}
    ctrl_as = {i.asn for a in ctrl_addrs if (i := plan.lookup(a))}
    # A handshake with the real name and a valid certificate proves the address right.
    valid = any(h.failure is None and h.ip in probe_addrs for h in obs.tls if not h.sni_probe)
    return "consistent" if (probe_as & ctrl_as) or valid else "inconsistent"


def _received_bytes(h: HttpObs) -> int:
    """Bytes of body the probe received (``x_body_length``), else the body kept."""
    received = getattr(h.response, "x_body_length", None)
    if isinstance(received, int) and received >= 0:
        return received
    return len(h.body.encode("utf-8", "surrogatepass")) if h.body else 0


def _compare_http(out: ClassicKeys, final: HttpObs, obs: Observations) -> bool:
    """Fill the match keys from the probe's final response and the control's; whether the
    page is the one the control got."""
    control = obs.control
    ctrl_len = max(0, control.http_body_length)
    probe_len = _received_bytes(final)
    longest = max(ctrl_len, probe_len)
    proportion = min(ctrl_len, probe_len) / longest if longest else 1.0
    out.body_proportion = proportion
    out.body_length_match = proportion > BODY_PROPORTION_MATCH
    out.status_code_match = final.status == control.http_status
    ctrl_title = control.http_title.strip().lower()
    title = title_of(final.body)
    out.title_match = title.strip().lower() == ctrl_title if ctrl_title or title else None
    probe_headers = set(final.headers)
    ctrl_headers = set(control.http_headers)
    out.headers_match = not (probe_headers ^ ctrl_headers) or bool(
        probe_headers & ctrl_headers - COMMON_HEADERS
    )
    return bool(out.status_code_match and (out.body_length_match or out.title_match))


def classic_keys(tk: TestKeys, url: str, plan: AddressPlan) -> ClassicKeys:
    """The classic summary of one measurement's typed ``test_keys`` (the full view,
    ``observations.schema.TestKeysView``, carries the experiment failures it needs)."""
    obs = observe(tk)
    dns_failure = getattr(tk, "dns_experiment_failure", None)
    http_failure = getattr(tk, "http_experiment_failure", None)
    out = ClassicKeys()
    final = obs.http[-1] if obs.http else None
    probe_http_ok = final is not None and http_failure is None
    if tk.control is None:
        if probe_http_ok:
            out.accessible = True
        return out
    control = obs.control

    probe_addrs = probe_addresses(obs, url)
    consistency = _dns_consistency(obs, probe_addrs, dns_failure, plan)
    out.dns_consistency = consistency

    flags = FLAG_DNS if consistency == "inconsistent" else 0
    tcp_ok: dict[str, bool] = {}
    for t in obs.tcp:
        if not t.sni_probe:
            tcp_ok[_endpoint(t.ip, t.port)] = t.failure is None
    if (
        tcp_ok
        and not any(tcp_ok.values())
        and any(failure is None for failure in control.tcp.values())
    ):
        flags |= FLAG_TCP
    for h in obs.tls:
        if h.sni_probe or h.failure not in NETWORK_TLS_FAILURES:
            continue
        theirs = control.tls.get(_endpoint(h.ip, h.port))
        if theirs is not None and theirs[1] is None:
            flags |= FLAG_TLS
            break

    if probe_http_ok and control.http_ok and final is not None:
        if _compare_http(out, final, obs):
            flags |= FLAG_SUCCESS
            out.blocking, out.accessible = False, True
        else:
            flags |= FLAG_HTTP_DIFF
            out.blocking = "dns" if consistency == "inconsistent" else "http-diff"
            out.accessible = False
    elif probe_http_ok:
        # The control could not fetch it: nothing to compare with.
        out.blocking, out.accessible = False, True
        flags |= FLAG_SUCCESS
    elif consistency == "inconsistent":
        out.blocking, out.accessible = "dns", False
    elif not control.http_ok:
        out.blocking, out.accessible = False, False  # fails from the control too: down
    elif flags & FLAG_TCP:
        out.blocking, out.accessible = "tcp_ip", False
    else:
        flags |= FLAG_HTTP if not flags & FLAG_TLS else 0
        out.blocking, out.accessible = "http-failure", False
    out.x_blocking_flags = flags
    return out
