"""The verdict for one web_connectivity measurement: follow the probe's path to the page.

The probe's path is DNS -> TCP -> TLS -> HTTP, once per hop of the redirect chain. The first
step that broke is where a block can be; the control (the same steps from an uncensored
vantage) tells a block from a site that is down everywhere. When nothing broke, the final page
is checked against blockpage fingerprints and compared with the control's. docs/verdicts.md
explains every rule and confidence.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import msgspec

from censorwatch.analysis.blockpage import BLOCKPAGE_STATUSES, blockpage_reason
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.netinfo import AddressPlan
from censorwatch.observations.builder import (
    PLAIN_DNS_ENGINES,
    SYSTEM_ENGINES,
    DnsObs,
    HttpObs,
    Observations,
    TlsObs,
    url_parts,
)

NXDOMAIN_FAILURES = frozenset({"dns_nxdomain_error", "android_dns_cache_no_data"})
NO_ANSWER_FAILURES = frozenset({"dns_no_answer", "dns_no_answer_error"})
RESET_FAILURES = frozenset(
    {"connection_reset", "connection_refused", "eof_error", "connection_aborted"}
)
TIMEOUT_FAILURES = frozenset({"generic_timeout_error", "i/o timeout"})
CERT_FAILURES = frozenset(
    {"ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate"}
)
# Failures that only the remote server causes: the network is not to blame.
SERVER_FAULTS = frozenset(
    {
        "http_invalid_redirect_location_host",
        "http_invalid_redirect_url",
        "stopped_after_10_redirects",
        "unknown_failure: stopped after too many redirects",
        "http_request_failed",
    }
)
# Failures that say the probe's own network is broken, not a particular target.
LOCAL_FAILURES = frozenset({"network_unreachable", "network_down", "interrupted"})

#: The target must move data this many times slower than the reference host to be "throttled".
THROTTLE_RATIO = 0.25
#: ... and the comparison only counts when both transfers carried at least this much.
THROTTLE_MIN_BYTES = 16 * 1024
#: ... and the target's transfer lasted at least this long: a transfer that finishes in a
#: fraction of a second is fast whatever the ratio says (its rate is mostly scheduling noise).
THROTTLE_MIN_SECONDS = 1.0

UNCOMMON_HEADER_IGNORE = frozenset(
    {
        "date",
        "content-type",
        "server",
        "cache-control",
        "vary",
        "set-cookie",
        "location",
        "expires",
        "x-powered-by",
        "content-encoding",
        "last-modified",
        "accept-ranges",
        "pragma",
        "x-frame-options",
        "etag",
        "x-content-type-options",
        "age",
        "via",
        "p3p",
        "x-xss-protection",
        "content-language",
        "cf-ray",
        "strict-transport-security",
        "link",
        "x-varnish",
        "content-length",
        "connection",
        "transfer-encoding",
        "alt-svc",
        "keep-alive",
        "expect-ct",
        "nel",
        "report-to",
        "referrer-policy",
    }
)


def _no_layers() -> dict[str, str | None]:
    return {"dns": None, "tcp": None, "tls": None, "http": None}


class Outcome(msgspec.Struct, gc=False):
    verdict: str = "unknown"
    method: str | None = None
    confidence: float = 0.0
    fingerprint: str | None = None
    evidence: list[str] = msgspec.field(default_factory=list)
    layers: dict[str, str | None] = msgspec.field(default_factory=_no_layers)

    def blocked(self, method: str, confidence: float, *evidence: str) -> Outcome:
        self.verdict, self.method, self.confidence = "blocked", method, confidence
        self.evidence.extend(evidence)
        layer = method.split(".", 1)[0]
        if layer == "throttled":
            layer = "http"
        if layer in self.layers:
            self.layers[layer] = "blocked"
        return self

    def done(self, verdict: str, confidence: float, *evidence: str) -> Outcome:
        self.verdict, self.method, self.confidence = verdict, None, confidence
        self.evidence.extend(evidence)
        return self


def _fmt(failure: str | None) -> str:
    return failure or "ok"


class _Analysis:
    """One pass over one measurement's observations."""

    __slots__ = (
        "_by_host",
        "_known_fp",
        "_primary",
        "_tls_context",
        "cc",
        "ctrl",
        "depth_tagged",
        "dns_inconsistent",
        "fps",
        "host",
        "is_bogon",
        "obs",
        "out",
        "plan",
        "port",
        "scheme",
        "validated",
    )

    def __init__(
        self,
        obs: Observations,
        url: str,
        cc: str | None,
        fingerprints: Fingerprints,
        plan: AddressPlan,
    ) -> None:
        self.obs = obs
        self.ctrl = obs.control
        self.cc = cc
        self.fps = fingerprints
        self.plan = plan
        self.out = Outcome()
        self.scheme, self.host, self.port = url_parts(url)
        self.is_bogon = _bogon_checker(plan)
        self._by_host: dict[str, list[DnsObs]] | None = None
        self._primary: dict[tuple[str, int | None], list[DnsObs]] = {}
        # OONI 0.5 tags every step with its redirect depth; other probes tag only requests.
        self.depth_tagged = obs.depth_tagged
        self.validated: set[str] = set()  # addresses proven genuine by a valid TLS handshake
        self.dns_inconsistent: list[str] = []
        self._tls_context: list[str] | None = None
        self._known_fp: str | None = None  # a known false-positive page on the way

    # -- helpers -------------------------------------------------------------------------

    def queries_for(self, host: str) -> list[DnsObs]:
        by_host = self._by_host
        if by_host is None:
            by_host = self._by_host = {}
            for q in self.obs.queries:
                by_host.setdefault(q.hostname, []).append(q)
        return by_host.get(host, [])

    def primary_queries(self, host: str, depth: int | None) -> list[DnsObs]:
        """The queries a browser's lookup would have made: the system resolver's."""
        key = (host, depth)
        cached = self._primary.get(key)
        if cached is None:
            cached = self._primary[key] = self._primary_queries(host, depth)
        return cached

    def _primary_queries(self, host: str, depth: int | None) -> list[DnsObs]:
        qs = self.queries_for(host)
        if depth is not None:
            qs = [q for q in qs if q.depth == depth] or qs
        chosen = [q for q in qs if q.classic]
        if chosen:
            return chosen
        chosen = [q for q in qs if q.engine in SYSTEM_ENGINES]
        if not chosen:
            chosen = [q for q in qs if q.engine in PLAIN_DNS_ENGINES]
        return chosen or [q for q in qs if q.engine not in ("doh", "dot")]

    def reference_addrs(self, host: str) -> list[str]:
        """Answers from encrypted resolvers (DoH/DoT): a second opinion the censor can't edit."""
        return [
            a
            for q in self.queries_for(host)
            if q.engine in ("doh", "dot") and q.failure is None
            for a in q.addrs
        ]

    def ctrl_tls_ok(self, ip: str, port: int, host: str) -> bool | None:
        entry = self.ctrl.tls.get(f"{ip}:{port}") or self.ctrl.tls.get(f"[{ip}]:{port}")
        if entry is None:
            return None
        sni, failure = entry
        if sni and sni != host:
            return None
        return failure is None

    def asn(self, ip: str, hint: dict[str, int]) -> int | None:
        if ip in hint:
            return hint[ip]
        if ip in self.ctrl.asns:
            return self.ctrl.asns[ip]
        info = self.plan.lookup(ip)
        return info.asn if info else None

    def probe_network_works(self) -> bool:
        """Did anything reach the outside? Then a failure is about the target, not the probe."""
        if self.ctrl.available:
            return True
        if any(q.failure is None and q.addrs for q in self.obs.queries):
            return True
        return any(t.failure is None for t in self.obs.tcp)

    # -- the path -----------------------------------------------------------------------

    def run(self) -> Outcome:
        out = self.out
        if not self.host:
            return out.done("unknown", 0.0, "input is not a URL with a host name")
        hops = self.hops()
        for depth, host, scheme, port in hops:
            # Layers describe the hop the verdict was decided on.
            out.layers = dict.fromkeys(out.layers)
            self._tls_context = None
            if self.check_dns(depth, host) or self.check_transport(depth, host, scheme, port):
                return self._with_context()
            if self.check_http_hop(depth, host):
                return self._with_context()
        return self._with_context(self.check_content())

    def _with_context(self, out: Outcome | None = None) -> Outcome:
        out = out or self.out
        if out.verdict == "blocked" and out.method and not out.method.startswith("dns."):
            out.evidence.extend(e for e in self.dns_inconsistent if e not in out.evidence)
        return out

    def hops(self) -> list[tuple[int, str, str, int]]:
        """(depth, host, scheme, port) for the input and every redirect the probe followed."""
        hops = [(0, self.host, self.scheme, self.port)]
        seen_depths = {0}
        for h in self.obs.http:
            if h.depth in seen_depths or not h.host:
                continue
            scheme, host, port = url_parts(h.url)
            hops.append((h.depth, host, scheme, port))
            seen_depths.add(h.depth)
        # Hops that failed before any request was recorded (DNS/TCP/TLS at depth > 0).
        for q in self.obs.queries:
            if q.depth not in seen_depths and q.hostname:
                tls = [t for t in self.obs.tcp if t.depth == q.depth]
                ports = {t.port for t in tls} or {0}
                port = 443 if 443 in ports and 80 not in ports else min(ports)
                scheme = "https" if port == 443 else "http"
                hops.append((q.depth, q.hostname, scheme, port))
                seen_depths.add(q.depth)
        hops.sort(key=lambda h: h[0])
        return hops

    # DNS ----------------------------------------------------------------------------------

    def check_dns(self, depth: int, host: str) -> bool:
        out, ctrl = self.out, self.ctrl
        queries = self.primary_queries(host, depth)
        if not queries and depth == 0:
            queries = self.primary_queries(host, None)
        if not queries:
            return False
        if len(queries) == 1:
            addrs = list(dict.fromkeys(queries[0].addrs))
            asn_hint = queries[0].asns  # read only
        else:
            addrs = list(dict.fromkeys(a for q in queries for a in q.addrs))
            asn_hint = {}
            for q in queries:
                asn_hint.update(q.asns)
        where = f"dns {host}"
        ctrl_knows = ctrl.available and depth == 0
        if not addrs:
            failure = self._dns_failure(queries)
            ev = f"{where}: {failure}"
            ctrl_failed = ctrl_knows and (
                ctrl.dns_failure is not None
                or not ctrl.dns_addrs
                or ctrl.http_failure == "dns_lookup_error"
            )
            if ctrl_failed or (depth > 0 and ctrl.available and not ctrl.http_ok):
                out.layers["dns"] = "down"
                return bool(
                    out.done(
                        "down",
                        0.85,
                        ev,
                        f"control: dns {_fmt(ctrl.dns_failure)}"
                        + ("" if ctrl.dns_addrs else ", no addresses"),
                    )
                )
            reference = self.reference_addrs(host)
            if ctrl_knows or (depth > 0 and ctrl.http_ok):
                ctrl_ev = (
                    f"control: dns {', '.join(ctrl.dns_addrs[:3])}"
                    if ctrl_knows
                    else "control: reached the final page"
                )
                extra = [f"doh: {', '.join(reference[:3])}"] if reference else []
                method, conf = self._dns_failure_method(failure)
                out.blocked(
                    method, min(0.95, conf + (0.05 if reference else 0)), ev, ctrl_ev, *extra
                )
                return True
            if reference:
                method, conf = self._dns_failure_method(failure)
                out.blocked(
                    method,
                    conf - 0.2,
                    ev,
                    f"doh: {', '.join(reference[:3])}",
                    "no control measurement",
                )
                return True
            if failure in LOCAL_FAILURES or not self.probe_network_works():
                return bool(
                    out.done(
                        "unknown",
                        0.0,
                        ev,
                        "the probe's own network failed: "
                        "no step succeeded and the control was not reached",
                    )
                )
            return bool(out.done("unknown", 0.0, ev, "no control measurement to compare with"))

        # The resolver answered: is the answer the censor's? (Not if the control got it too.)
        seen_by_control = set(ctrl.dns_addrs) if ctrl_knows else set()
        for ip in addrs:
            name = None if ip in seen_by_control else self.fps.match_dns(ip, self.cc)
            if name:
                out.fingerprint = name
                method = "dns.bogon" if self.is_bogon(ip) else "dns.forged"
                out.blocked(method, 0.99, f"{where}: {ip} (known censor answer {name})")
                return True
        # Addresses proven genuine: a valid certificate for the name from the probe's own
        # handshake, or from the control's handshake to the same address.
        for t in self.obs.tls:
            if (
                t.failure is None
                and t.server_name == host
                and not t.sni_probe
                and not t.no_tls_verify
                and t.ip in addrs
            ):
                self.validated.add(t.ip)
        for ip in addrs:
            if self.ctrl_tls_ok(ip, 443, host):
                self.validated.add(ip)
        bogons = [ip for ip in addrs if self.is_bogon(ip) and ip not in self.validated]
        ctrl_addrs = ctrl.dns_addrs if ctrl_knows else []
        if bogons:
            ev = f"{where}: {', '.join(bogons[:3])} (bogon)"
            if ctrl_addrs and all(
                self.is_bogon(a) and not self.ctrl_tls_ok(a, 443, host) for a in ctrl_addrs
            ):
                out.layers["dns"] = "down"
                return bool(
                    out.done(
                        "down",
                        0.7,
                        ev,
                        f"control: dns {', '.join(ctrl_addrs[:3])}"
                        " (bogon too: the site's own DNS points nowhere)",
                    )
                )
            if ctrl_addrs or (depth > 0 and ctrl.http_ok):
                out.blocked(
                    "dns.bogon", 0.95, ev, f"control: dns {', '.join(ctrl_addrs[:3]) or 'resolved'}"
                )
                return True
            reference = [a for a in self.reference_addrs(host) if not self.is_bogon(a)]
            if reference:
                out.blocked("dns.bogon", 0.8, ev, f"doh: {', '.join(reference[:3])}")
                return True
            return bool(
                out.done(
                    "unknown",
                    0.0,
                    ev,
                    "no control to tell a block from a site that points at a private address",
                )
            )

        # Consistency: address overlap, AS overlap, or a valid certificate for the name.
        forged_dups = self._injected_answers(host, addrs)
        if not ctrl_knows:
            out.layers["dns"] = "ok"
            if forged_dups:
                out.blocked("dns.forged", 0.85, f"{where}: {', '.join(addrs[:3])}", *forged_dups)
                return True
            # No control for this hop: an encrypted resolver's answer is the next best
            # reference (at depth > 0 the control only saw the final page).
            reference = self.reference_addrs(host)
            if reference and not (set(addrs) & (set(reference) | self.validated)):
                ref_asns = {a for a in (self.asn(ip, {}) for ip in reference) if a}
                own_asns = {a for a in (self.asn(ip, asn_hint) for ip in addrs) if a}
                if not (ref_asns & own_asns):
                    out.blocked(
                        "dns.forged",
                        0.7,
                        f"{where}: {', '.join(addrs[:3])}",
                        f"doh: {', '.join(reference[:3])}; no address or AS overlap",
                    )
                    return True
            return False
        common = set(addrs) & set(ctrl_addrs)
        if common:
            out.layers["dns"] = "ok"
            if forged_dups and not (set(addrs) & self.validated):
                # The first answer matched, but a second, different answer raced it.
                out.evidence.extend(forged_dups)
            return False
        probe_asns = {a for a in (self.asn(ip, asn_hint) for ip in addrs) if a}
        ctrl_asns = {a for a in (self.asn(ip, {}) for ip in ctrl_addrs) if a}
        if self.validated & set(addrs):
            ip = sorted(self.validated & set(addrs))[0]
            out.layers["dns"] = "ok"
            self.dns_inconsistent = [
                f"{where}: {', '.join(addrs[:3])} differs from control "
                f"({', '.join(ctrl_addrs[:3]) or 'none'}) but {ip} has a valid certificate "
                f"for {host}"
            ]
            return False
        if probe_asns & ctrl_asns:
            out.layers["dns"] = "ok"
            self.dns_inconsistent = [
                f"{where}: {', '.join(addrs[:3])} differs from control but is in the same AS "
                f"(AS{sorted(probe_asns & ctrl_asns)[0]})"
            ]
            return False
        ev = [f"{where}: {', '.join(addrs[:3])}"]
        if ctrl.dns_failure or not ctrl_addrs:
            ev.append(f"control: dns {_fmt(ctrl.dns_failure)} (the name does not resolve)")
            out.blocked("dns.forged", 0.85, *ev, *forged_dups)
            return True
        ev.append(
            f"control: dns {', '.join(ctrl_addrs[:3])}; no address or AS overlap"
            + (
                f" (AS{sorted(probe_asns)[0]} vs AS{sorted(ctrl_asns)[0]})"
                if probe_asns and ctrl_asns
                else ""
            )
        )
        bad_cert = [
            t
            for t in self.obs.tls
            if t.ip in addrs and t.server_name == host and t.failure in CERT_FAILURES
        ]
        if bad_cert:
            ev.append(
                f"tls_handshake {bad_cert[0].ip}:{bad_cert[0].port} sni={host}: "
                f"{bad_cert[0].failure}"
            )
        if forged_dups:
            out.blocked("dns.forged", 0.95, *ev, *forged_dups)
            return True
        if self._http_matches_control_via(addrs):
            out.layers["dns"] = "ok"
            self.dns_inconsistent = [*ev, "but the page fetched from it matches the control's"]
            return False
        out.blocked("dns.forged", 0.8 if not bad_cert else 0.9, *ev)
        return True

    @staticmethod
    def _dns_failure(queries: list[DnsObs]) -> str:
        failures = [q.failure for q in queries if q.failure]
        for f in failures:
            if f not in NO_ANSWER_FAILURES:
                return f
        return failures[0] if failures else "dns_no_answer"

    @staticmethod
    def _dns_failure_method(failure: str) -> tuple[str, float]:
        if failure in NXDOMAIN_FAILURES:
            return "dns.nxdomain", 0.9
        return "dns.failure", 0.8

    def _injected_answers(self, host: str, addrs: list[str]) -> list[str]:
        """Extra UDP answers that differ from the first: a forged answer raced the real one."""
        extra: list[str] = []
        for d in self.obs.duplicates:
            if (d.hostname and d.hostname != host) or d.differs is False:
                continue
            other = [a for a in d.addrs if a not in addrs]
            if other:
                extra.append(
                    f"dns {host}: a second answer {', '.join(other[:3])} arrived after "
                    f"{', '.join(addrs[:3])} (injected response)"
                )
        return extra[:2]

    def _http_matches_control_via(self, addrs: list[str]) -> bool:
        final = self.final_response()
        if final is None or final.scheme != "http" or not self.ctrl.http_ok:
            return False
        connected = any(t.failure is None and t.ip in addrs for t in self.obs.tcp)
        return (
            connected and self.content_diff(final) is None and final.status == self.ctrl.http_status
        )

    # TCP and TLS --------------------------------------------------------------------------

    def _probe_addrs(self, depth: int, host: str) -> set[str]:
        return {a for q in self.primary_queries(host, depth) for a in q.addrs}

    def check_transport(self, depth: int, host: str, scheme: str, port: int) -> bool:
        out, ctrl = self.out, self.ctrl
        addrs = self._probe_addrs(depth, host)
        tagged = self.depth_tagged
        tcps = [
            t
            for t in self.obs.tcp
            if t.port == port and not t.sni_probe and (not tagged or t.depth == depth)
        ]
        conns = [t for t in tcps if (not addrs or t.ip in addrs) and (t.classic or not addrs)]
        if not conns:
            conns = [t for t in tcps if not addrs or t.ip in addrs]
        if conns:
            good = [t for t in conns if t.failure is None]
            if not good:
                t = conns[0]
                ev = f"tcp_connect {t.ip}:{t.port}: {t.failure}"
                ctrl_fail = (
                    [ctrl.tcp.get(f"{c.ip}:{c.port}", "?") for c in conns] if depth == 0 else []
                )
                if ctrl_fail and all(f not in (None, "?") for f in ctrl_fail):
                    out.layers["tcp"] = "down"
                    return bool(out.done("down", 0.85, ev, f"control: tcp {ctrl_fail[0]}"))
                ctrl_ok = any(f is None for f in ctrl_fail) or ctrl.http_ok
                if ctrl_ok:
                    ctrl_ev = (
                        "control: tcp ok"
                        if any(f is None for f in ctrl_fail)
                        else "control: reached the page"
                    )
                    if t.failure in TIMEOUT_FAILURES:
                        out.blocked("tcp.timeout", 0.8, ev, ctrl_ev)
                    elif t.failure in RESET_FAILURES:
                        out.blocked("tcp.reset", 0.85, ev, ctrl_ev)
                    elif t.failure in LOCAL_FAILURES:
                        return bool(out.done("unknown", 0.0, ev, "the probe's own network failed"))
                    else:
                        out.blocked(
                            "tcp.timeout" if "timeout" in str(t.failure) else "tcp.reset",
                            0.6,
                            ev,
                            ctrl_ev,
                        )
                    return True
                if ctrl.available and not ctrl.http_ok:
                    out.layers["tcp"] = "down"
                    return bool(
                        out.done("down", 0.6, ev, f"control: http {_fmt(ctrl.http_failure)}")
                    )
                return bool(out.done("unknown", 0.0, ev, "no control measurement to compare"))
            out.layers["tcp"] = out.layers["tcp"] or "ok"

        hands = [
            h
            for h in self.obs.tls
            if (not tagged or h.depth == depth)
            and h.server_name == host
            and not h.sni_probe
            and (not addrs or h.ip in addrs)
            and h.port == (443 if scheme == "http" else port)
        ]
        if not hands:
            return False
        good = [h for h in hands if h.failure is None]
        if good:
            out.layers["tls"] = out.layers["tls"] or "ok"
            return False
        if scheme != "https":
            # A plain-HTTP page: the TLS result is context, the HTTP step decides.
            out.layers["tls"] = "blocked" if ctrl.http_ok else "unknown"
            self._tls_context = self._tls_failure_evidence(hands[0], host)
            return False
        return self._judge_tls_failure(depth, host, hands)

    def _tls_failure_evidence(self, h: TlsObs, host: str) -> list[str]:
        return [f"tls_handshake {h.ip}:{h.port} sni={host}: {h.failure}"]

    def _judge_tls_failure(self, depth: int, host: str, hands: list[TlsObs]) -> bool:
        out, ctrl = self.out, self.ctrl
        h = hands[0]
        ev = self._tls_failure_evidence(h, host)
        ctrl_state = self.ctrl_tls_ok(h.ip, h.port, host) if depth == 0 else None
        if ctrl_state is None and depth == 0:
            states = [self.ctrl_tls_ok(x.ip, x.port, host) for x in hands]
            states += [f is None for key, (sni, f) in ctrl.tls.items() if sni == host]
            ctrl_state = (
                any(s for s in states if s is not None)
                if any(s is not None for s in states)
                else None
            )
        if ctrl_state is None and (depth > 0 or not ctrl.tls):
            ctrl_state = True if ctrl.http_ok else (False if ctrl.available else None)
        if ctrl_state is False:
            entry = ctrl.tls.get(f"{h.ip}:{h.port}")
            cfail = entry[1] if entry else ctrl.http_failure
            out.layers["tls"] = "down"
            return bool(
                out.done(
                    "down", 0.8, *ev, f"control: tls {_fmt(cfail)} (the server fails for everyone)"
                )
            )
        # SNI probes: the same address without SNI or with an innocuous name.
        probes = [x for x in self.obs.tls if x.ip == h.ip and x.sni_probe]
        probe_ok = [x for x in probes if x.failure is None or x.failure in CERT_FAILURES]
        probe_bad = [x for x in probes if x not in probe_ok]
        if probe_ok:
            ev.append(
                f"tls_handshake {h.ip}:{h.port} sni={probe_ok[0].sni_probe}: "
                f"{probe_ok[0].failure or 'ok'} (the address works: SNI filtering)"
            )
        elif probe_bad:
            ev.append(
                f"tls_handshake {h.ip}:{h.port} sni={probe_bad[0].sni_probe}: "
                f"{probe_bad[0].failure} (fails without the name too: the address "
                "itself is filtered)"
            )
        if ctrl_state is None:
            if not probe_ok:
                if not self.probe_network_works():
                    return bool(out.done("unknown", 0.0, *ev, "the probe's own network failed"))
                return bool(out.done("unknown", 0.0, *ev, "no control measurement"))
            ctrl_ev = "control: none (SNI probe decides)"
        elif depth == 0 and ctrl.tls:
            ctrl_ev = "control: tls ok"
        else:
            ctrl_ev = "control: reached the final page"
        ev.append(ctrl_ev)
        bonus = 0.05 if probe_ok else (-0.05 if probe_bad else 0.0)
        if ctrl_state is None:
            bonus -= 0.1
        f = h.failure or ""
        if f in CERT_FAILURES:
            out.blocked("tls.mitm", 0.9 + bonus, *ev)
        elif f in TIMEOUT_FAILURES or "timeout" in f:
            out.blocked("tls.timeout", 0.85 + bonus, *ev)
        elif f in RESET_FAILURES or f == "ssl_failed_handshake":
            out.blocked("tls.reset", 0.9 + bonus, *ev)
        elif f in LOCAL_FAILURES:
            return bool(out.done("unknown", 0.0, *ev, "the probe's own network failed"))
        else:
            out.blocked("tls.reset", 0.6 + bonus, *ev)
        return True

    # HTTP ---------------------------------------------------------------------------------

    def check_http_hop(self, depth: int, host: str) -> bool:
        """A failed request at this hop, or a censor's redirect/blockpage in its response."""
        out, ctrl = self.out, self.ctrl
        reqs = [h for h in self.obs.http if h.depth == depth]
        if not reqs:
            return False
        h = reqs[0]
        if h.scheme == "http" and (h.body or h.headers):
            match = self.fps.classify_normalized(h.body or "", h.headers, self.cc)
            if match.blockpage:
                out.fingerprint = match.name
                out.layers["http"] = "blocked"
                where = f"http {h.url}: status {h.status}"
                out.blocked(
                    "http.blockpage",
                    0.99,
                    f"{where}, blockpage fingerprint {match.name}",
                    *self._control_page_ev(),
                )
                return True
            if match.blockpage is False:
                self._known_fp = match.name
            elif self.ctrl.http_ok and h.status in BLOCKPAGE_STATUSES:
                # No fingerprint knows the page: does it say in words that it is a block page?
                title = _title(h.body or "")
                reason = blockpage_reason(h.body, h.status, title, self.ctrl.http_title)
                if reason:
                    out.layers["http"] = "blocked"
                    out.blocked(
                        "http.blockpage",
                        0.85,
                        f"http {h.url}: status {h.status}, title {title!r}, reads as a block "
                        f"page ({reason}); no known fingerprint",
                        *self._control_page_ev(),
                    )
                    return True
        if h.failure is None:
            out.layers["http"] = "ok"
            return False
        f = h.failure
        ev = [f"http_request {h.url}: {f}" + (f" after status {h.status}" if h.status else "")]
        if f in SERVER_FAULTS or f.startswith("unknown_failure: stopped after"):
            if ctrl.available and not ctrl.http_ok:
                out.layers["http"] = "down"
                return bool(
                    out.done(
                        "down",
                        0.75,
                        *ev,
                        f"control: http "
                        f"{_fmt(ctrl.http_failure)} (the site is broken for "
                        "everyone)",
                    )
                )
            out.layers["http"] = "ok"
            return bool(
                out.done(
                    "ok",
                    0.5,
                    *ev,
                    "a server fault (its redirect is unusable), not interference",
                    *self._control_page_ev(),
                )
            )
        if f.startswith("dns_") or f == "android_dns_cache_no_data":
            # The probe resolved a redirect's host inside the HTTP step and that failed.
            if ctrl.available and not ctrl.http_ok:
                out.layers["dns"] = "down"
                return bool(out.done("down", 0.7, *ev, f"control: http {_fmt(ctrl.http_failure)}"))
            if not ctrl.http_ok:
                return bool(out.done("unknown", 0.0, *ev, "no control measurement to compare"))
            method, conf = self._dns_failure_method(f)
            out.blocked(method, conf - 0.05, *ev, *self._control_page_ev())
            return True
        started = h.status > 0 or h.truncated or (h.body_length > 0)
        if ctrl.available and not ctrl.http_ok:
            out.layers["http"] = "down"
            return bool(out.done("down", 0.7, *ev, f"control: http {_fmt(ctrl.http_failure)}"))
        if not ctrl.http_ok:
            return bool(out.done("unknown", 0.0, *ev, "no control measurement to compare"))
        ctrl_ev = self._control_page_ev()
        ev.extend(self._tls_context or [])
        if started and (f in TIMEOUT_FAILURES or "timeout" in f):
            out.blocked(
                "throttled",
                0.7,
                *ev,
                "the response started but the body did not arrive in time",
                *ctrl_ev,
            )
        elif f in TIMEOUT_FAILURES or "timeout" in f:
            out.blocked("http.timeout", 0.75, *ev, *ctrl_ev)
        elif f in RESET_FAILURES:
            out.blocked("http.reset", 0.9, *ev, *ctrl_ev)
        elif f in CERT_FAILURES or f.startswith("ssl_"):
            out.blocked("tls.mitm" if f in CERT_FAILURES else "tls.reset", 0.7, *ev, *ctrl_ev)
        elif f in LOCAL_FAILURES:
            return bool(out.done("unknown", 0.0, *ev, "the probe's own network failed"))
        else:
            out.blocked("http.reset", 0.5, *ev, *ctrl_ev)
        return True

    def _control_page_ev(self) -> list[str]:
        c = self.ctrl
        if not c.http_ok:
            return []
        title = f", title {c.http_title!r}" if c.http_title else ""
        return [f"control: http status {c.http_status}, {c.http_body_length} bytes{title}"]

    def final_response(self) -> HttpObs | None:
        return self.obs.http[-1] if self.obs.http else None

    def content_diff(self, h: HttpObs) -> list[str] | None:
        """Strong evidence that the page differs from the control's, or None."""
        c = self.ctrl
        if not c.http_ok or h.status <= 0:
            return None
        diffs: list[str] = []
        status_diff = h.status != c.http_status
        if status_diff:
            diffs.append(f"status {h.status} vs control {c.http_status}")
        proportion = None
        if (
            not h.truncated
            and h.body_length >= 0
            and c.http_body_length > 0
            and (h.body_length < c.http_body_length or h.body_length > 0)
        ):
            big = max(h.body_length, c.http_body_length)
            proportion = min(h.body_length, c.http_body_length) / big if big else 1.0
            if proportion < 0.7:
                diffs.append(f"body {h.body_length} vs control {c.http_body_length} bytes")
        title = _title(h.body or "")
        title_diff = bool(title and c.http_title and title.lower() != c.http_title.lower())
        if title_diff:
            diffs.append(f"title {title!r} vs control {c.http_title!r}")
        strong = (
            status_diff
            and (title_diff or (proportion is not None and proportion < 0.7))
            and not (300 <= h.status < 400 and 300 <= c.http_status < 400)
        ) or (not status_diff and proportion is not None and proportion < 0.3 and title_diff)
        if not strong:
            return None
        uncommon = {k for k in h.headers if k not in UNCOMMON_HEADER_IGNORE}
        ctrl_uncommon = {k for k in c.http_headers if k not in UNCOMMON_HEADER_IGNORE}
        if c.http_headers and uncommon != ctrl_uncommon:
            diffs.append("uncommon headers differ")
        return diffs

    def check_content(self) -> Outcome:
        out, ctrl = self.out, self.ctrl
        final = self.final_response()
        if self.check_throughput():
            return out
        if final is not None:
            authentic = final.scheme == "https" and out.layers["tls"] == "ok"
            if not authentic and final.scheme == "http":
                if self._known_fp:
                    out.layers["http"] = "ok"
                    return out.done(
                        "ok",
                        0.7,
                        f"http {final.url}: status {final.status}, "
                        f"a known non-censorship page ({self._known_fp})",
                        *self.dns_inconsistent,
                    )
                diff = self.content_diff(final)
                if diff:
                    out.layers["http"] = "blocked"
                    return out.blocked(
                        "http.diff",
                        0.7,
                        f"http {final.url}: " + "; ".join(diff),
                        *self.dns_inconsistent,
                    )
        if self.check_quic():
            return out
        if final is None and not self.obs.tls and not self.obs.tcp:
            if ctrl.available and not ctrl.http_ok:
                return out.done(
                    "down",
                    0.6,
                    f"control: http {_fmt(ctrl.http_failure)}",
                    "the probe made no connection",
                )
            return out.done("unknown", 0.0, "the measurement holds no connection attempt")
        if final is None and out.layers["tls"] != "ok" and out.layers["tcp"] != "ok":
            return out.done("unknown", 0.0, "no HTTP request and no completed handshake")
        ev = []
        if final is not None:
            ev.append(
                f"http {final.url}: status {final.status}"
                + (f", {final.body_length} bytes" if final.body_length >= 0 else "")
            )
        elif out.layers["tls"] == "ok":
            ev.append(f"tls_handshake to {self.host}: ok")
        ev.extend(self.dns_inconsistent)
        if ctrl.available:
            ev.extend(self._control_page_ev() or [f"control: http {_fmt(ctrl.http_failure)}"])
            confidence = 0.9 if out.layers["tls"] == "ok" else 0.8
        else:
            ev.append(f"control: {ctrl.failure or 'none'}")
            confidence = 0.75 if out.layers["tls"] == "ok" else 0.6
        return out.done("ok", confidence, *ev)

    def check_throughput(self) -> bool:
        tp = self.obs.throughput
        target = reference = None
        if tp:
            target, reference = _rate(tp.get("target")), _rate(tp.get("reference"))
        if target is None or reference is None:
            target = target or _events_rate(self.obs.network_events, "target")
            reference = reference or _events_rate(self.obs.network_events, "reference")
        if target is None or reference is None:
            return False
        (tb, ts, tbps), (rb, rs, rbps) = target, reference
        if rb < THROTTLE_MIN_BYTES or rbps <= 0:
            return False
        if tb < THROTTLE_MIN_BYTES:
            # Next to nothing arrived before the time budget ran out while the reference
            # host delivered: the harshest throttling (the page itself may still load).
            entry = tp.get("target") if tp else None
            failure = entry.get("failure") if isinstance(entry, dict) else None
            if ts >= THROTTLE_MIN_SECONDS and isinstance(failure, str) and "timeout" in failure:
                self.out.blocked(
                    "throttled",
                    0.7,
                    f"throughput: target {tb} bytes in {ts:.1f} s ({failure}) vs reference "
                    f"{rbps / 1e6:.2f} Mbit/s ({rb} bytes in {rs:.1f} s)",
                )
                return True
            return False
        ratio = tbps / rbps
        ev = (
            f"throughput: target {tbps / 1e6:.2f} Mbit/s ({tb} bytes in {ts:.1f} s) vs "
            f"reference {rbps / 1e6:.2f} Mbit/s ({rb} bytes in {rs:.1f} s), ratio {ratio:.2f}"
        )
        if ratio < THROTTLE_RATIO and ts >= THROTTLE_MIN_SECONDS:
            self.out.blocked("throttled", 0.9 if ratio < THROTTLE_RATIO / 2 else 0.75, ev)
            return True
        self.out.evidence.append(ev)
        return False

    def check_quic(self) -> bool:
        """QUIC handshakes all failed where the server is known to speak QUIC."""
        quic = [q for q in self.obs.quic if q.server_name in ("", self.host)]
        if not quic or any(q.failure is None for q in quic):
            return False
        q = quic[0]
        speaks_h3 = (
            self.ctrl.quic_ok
            or any("h3" in v for h in self.obs.http for v in h.headers.get("alt-svc", ()))
            or "h3" in self.ctrl.http_headers.get("alt-svc", "")
        )
        ev = f"quic_handshake {q.ip}:{q.port} sni={self.host}: {q.failure}"
        if not speaks_h3:
            self.out.evidence.append(f"{ev} (the server is not known to speak QUIC)")
            return False
        if self.out.layers["tls"] == "ok" or self.ctrl.http_ok:
            control = "control: quic ok" if self.ctrl.quic_ok else "server advertises HTTP/3"
            self.out.blocked(
                "quic.blocked",
                0.75 if self.ctrl.quic_ok else 0.7,
                ev,
                "tls over tcp to the same host: ok",
                control,
            )
            return True
        return False


# id(plan) -> (a weak reference to the plan, its memoising checker). Keyed by id rather than
# by a WeakKeyDictionary: the lookup happens once per measurement and must be cheap.
_BOGON_CHECKERS: dict[int, tuple[weakref.ref[AddressPlan], Callable[[str], bool]]] = {}


def _bogon_checker(plan: AddressPlan) -> Callable[[str], bool]:
    """``plan.is_bogon`` with a per-plan memory (the same answers recur across measurements)."""
    entry = _BOGON_CHECKERS.get(id(plan))
    if entry is not None and entry[0]() is plan:
        return entry[1]
    plan_ref = weakref.ref(plan)
    cache: dict[str, bool] = {}

    def is_bogon(ip: str) -> bool:
        known = cache.get(ip)
        if known is None:
            current = plan_ref()
            known = current.is_bogon(ip) if current is not None else False
            if len(cache) < 65536:
                cache[ip] = known
        return known

    if len(_BOGON_CHECKERS) >= 64:
        for key, (ref, _) in list(_BOGON_CHECKERS.items()):
            if ref() is None:
                del _BOGON_CHECKERS[key]
    _BOGON_CHECKERS[id(plan)] = (plan_ref, is_bogon)
    return is_bogon


def _rate(entry: object) -> tuple[int, float, float] | None:
    if not isinstance(entry, dict):
        return None
    nbytes, seconds, bps = entry.get("bytes"), entry.get("seconds"), entry.get("bps")
    if not isinstance(nbytes, int | float) or not isinstance(seconds, int | float):
        return None
    if seconds <= 0:
        return None
    if not isinstance(bps, int | float) or bps <= 0:
        bps = nbytes * 8 / seconds
    return int(nbytes), float(seconds), float(bps)


def _events_rate(events: list[dict], which: str) -> tuple[int, float, float] | None:
    points = []
    for e in events:
        if e.get("operation") != "bytes_received_cumulative":
            continue
        tags = e.get("tags")
        if not (isinstance(tags, list) and any(isinstance(t, str) and which in t for t in tags)):
            continue
        n, t = e.get("num_bytes"), e.get("t")
        if isinstance(n, int | float) and isinstance(t, int | float):
            points.append((float(t), int(n)))
    if len(points) < 2:
        return None
    points.sort()
    (t0, _), (t1, n1) = points[0], points[-1]
    seconds = t1 - t0 if t1 > t0 else 0.0
    if seconds <= 0:
        return None
    return n1, seconds, n1 * 8 / seconds


def _title(body: str) -> str:
    lower = body[:8192].lower()
    start = lower.find("<title")
    if start < 0:
        return ""
    start = lower.find(">", start)
    end = lower.find("</title", start)
    if start < 0 or end < 0:
        return ""
    return " ".join(body[start + 1 : end].split())[:200]


def analyze_web(
    obs: Observations,
    url: str,
    cc: str | None,
    fingerprints: Fingerprints,
    plan: AddressPlan,
) -> Outcome:
    return _Analysis(obs, url, cc, fingerprints, plan).run()
