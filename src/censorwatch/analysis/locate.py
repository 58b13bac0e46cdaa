"""Where the censor sits: the hop of a TTL-limited trigger's path where it first fares
differently from an innocuous control.

The probe (``probe/locate.py``) sends the offending packet — the DNS query for the name, the
ClientHello with the SNI, the HTTP request with the Host — and a control packet that differs
only in the name, with TTL 1, 2, 3 …, and records per TTL what came back to each
(``test_keys.x_locate``, docs/probe.md). This module reads those records and decides, purely:
the first TTL at which the trigger's outcome differs from the control's (a forged answer, a
reset, or silence where the control hears the router's time-exceeded) is the censor's hop;
the router that answers at that TTL names its address and AS; the AS, compared with the
probe's own and its country, places it. Rerunnable on any stored measurement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from censorwatch.observations.schema import LocateHop, LocateRun, TestKeys

# What one probe got back (the probe's vocabulary, docs/probe.md).
TIME_EXCEEDED = "time_exceeded"  # ICMP time-exceeded: the packet died at a router
UNREACHABLE = "unreachable"  # ICMP destination unreachable (a UDP path probe at the end host)
ANSWER = "answer"  # data came back: a DNS response, a TLS or HTTP response, a block page
RESET = "reset"  # a TCP RST
CLOSED = "closed"  # the connection was closed without data
TIMEOUT = "timeout"  # nothing in time
ERROR = "error"  # the probe itself failed (e.g. could not connect)

#: What a side's probes add up to, strongest first: an answer or a reset outweighs an ICMP
#: error from the same TTL (an on-path injector lets the packet go on to expire).
_STRENGTH = (ANSWER, RESET, CLOSED, "icmp", ERROR, TIMEOUT)

# Where the hop is (``placement``), and in words.
OWN_ISP = "own_isp"
NATIONAL_GATEWAY = "national_gateway"
BEYOND_BORDER = "beyond_border"
DESTINATION = "destination"
UNKNOWN = "unknown"
NONE_FOUND = "none"
NOT_RUN = "not_run"
PLACEMENT_WORDS = {
    OWN_ISP: "in the probe's own ISP",
    NATIONAL_GATEWAY: "at a national gateway",
    BEYOND_BORDER: "beyond the border",
    DESTINATION: "at the destination (or a censor the TTL cannot tell from it)",
    UNKNOWN: "at a hop whose network is not known",
    NONE_FOUND: "none found",
    NOT_RUN: "not run",
}

#: Which trigger speaks for a verdict's method (its layer).
TRIGGER_FOR_LAYER = {"dns": "dns", "tls": "tls", "http": "http"}


@dataclass(frozen=True)
class Located:
    """The decision of one localization."""

    trigger: str
    placement: str
    hop: int | None = None
    address: str | None = None
    asn: str | None = None
    as_org_name: str | None = None
    cc: str | None = None
    evidence: str | None = None  # what the trigger got at that hop (answer, reset, timeout)
    confirmed: bool = False  # the next judged hop differed too
    destination_hop: int | None = None  # where the control first reached the end host
    not_run: str | None = None

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def side(outcomes: list[Any] | None) -> str:
    """What a side's probes at one TTL add up to (``icmp`` for either ICMP error)."""
    kinds = {TIME_EXCEEDED: "icmp", UNREACHABLE: "icmp"}
    seen = {kinds.get(o, o) for o in outcomes or [] if isinstance(o, str)}
    for kind in _STRENGTH:
        if kind in seen:
            return kind
    return TIMEOUT


def _judged(hop: LocateHop) -> bool:
    """A TTL where the control heard something: only there can the trigger differ."""
    return side(hop.control) not in (TIMEOUT, ERROR)


def _reached(hop: LocateHop) -> bool:
    """The control (or the path probe) got its answer from the end host at this TTL."""
    return side(hop.control) in (ANSWER, CLOSED) or hop.path == UNREACHABLE


def placement(hop: LocateHop, probe_asn: str, probe_cc: str) -> str:
    """Own ISP (the probe's AS), national gateway (another AS of the probe's country) or
    beyond the border (an AS of another or no known country)."""
    if hop.asn is None:
        return UNKNOWN
    if f"AS{hop.asn}" == probe_asn.upper():
        return OWN_ISP
    if hop.cc and probe_cc and hop.cc.upper() == probe_cc.upper():
        return NATIONAL_GATEWAY
    return BEYOND_BORDER


def decide(run: LocateRun, probe_asn: str, probe_cc: str) -> Located:
    trigger = run.trigger or ""
    if run.not_run:
        return Located(trigger, NOT_RUN, not_run=run.not_run)
    hops = sorted((h for h in run.hops or [] if h is not None and h.ttl), key=lambda h: h.ttl)
    destination = next((h.ttl for h in hops if _reached(h)), None)
    judged = [h for h in hops if _judged(h)]
    for i, hop in enumerate(judged):
        got = side(hop.trigger)
        if got == side(hop.control):
            continue
        later = judged[i + 1 : i + 2]
        confirmed = bool(later) and side(later[0].trigger) != side(later[0].control)
        at_end = destination is not None and hop.ttl >= destination
        return Located(
            trigger,
            DESTINATION if at_end else placement(hop, probe_asn, probe_cc),
            hop=hop.ttl,
            address=hop.address,
            asn=f"AS{hop.asn}" if hop.asn is not None else None,
            as_org_name=hop.as_org_name or None,
            cc=hop.cc or None,
            evidence=got,
            confirmed=confirmed,
            destination_hop=destination,
        )
    return Located(trigger, NONE_FOUND, destination_hop=destination)


def primary(runs: list[Located], method: str | None) -> Located | None:
    """The localization that speaks for the verdict: the one whose trigger is the blocked
    layer's, else the first that found a hop, else the first."""
    if not runs:
        return None
    wanted = TRIGGER_FOR_LAYER.get((method or "").split(".", 1)[0])
    for run in runs:
        if wanted and run.trigger == wanted:
            return run
    return next((r for r in runs if r.hop is not None), runs[0])


def of_test_keys(
    tk: TestKeys | None, probe_asn: str, probe_cc: str, method: str | None
) -> dict[str, Any] | None:
    """The verdict record's ``locate`` field, from a measurement's typed ``test_keys``."""
    if tk is None or not tk.x_locate:
        return None
    runs = [decide(r, probe_asn, probe_cc) for r in tk.x_locate if r is not None]
    chosen = primary(runs, method)
    return chosen.record() if chosen is not None else None


def words(located: dict[str, Any] | None) -> str:
    """One line: ``hop 3 (198.19.1.1, AS65537): at a national gateway``."""
    if not located:
        return ""
    where = PLACEMENT_WORDS.get(located.get("placement", ""), located.get("placement", ""))
    if located.get("not_run"):
        return f"{located.get('trigger', '')} localization not run: {located['not_run']}"
    if located.get("hop") is None:
        return f"censor's hop: {where}"
    who = ", ".join(str(x) for x in (located.get("address"), located.get("asn")) if x)
    return f"censor at hop {located['hop']}" + (f" ({who})" if who else "") + f": {where}"
