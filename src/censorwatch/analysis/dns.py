"""The DNS step of one hop: did the lookup fail, or was its answer the censor's?

In order: a lookup that returned nothing (judged against the control and encrypted
resolvers); an answer a fingerprint attributes to a censor; private (bogon) answers; and the
consistency of the answer with the control's (address overlap, AS overlap, a valid certificate
for the name, the page fetched from it matching the control's, or handshakes to the control's
own addresses failing just the same, which leaves the verdict to TLS). docs/verdicts.md.
"""

from __future__ import annotations

from censorwatch.analysis import confidence as C
from censorwatch.analysis.context import WebAnalysis
from censorwatch.analysis.outcome import (
    CERT_FAILURES,
    LOCAL_FAILURES,
    NO_ANSWER_FAILURES,
    NXDOMAIN_FAILURES,
    failure_kind,
    fmt,
)
from censorwatch.analysis.page import content_diff
from censorwatch.observations.builder import DnsObs


def check_dns(a: WebAnalysis, depth: int, host: str) -> bool:
    """Judge the hop's lookup; True when that decided the verdict."""
    queries = a.primary_queries(host, depth)
    if not queries and depth == 0:
        queries = a.primary_queries(host, None)
    if not queries:
        return False
    addrs, asn_hint = _answers(queries)
    ctrl_knows = a.ctrl.available and depth == 0  # the control looked up the input's host only
    if not addrs:
        return _judge_lookup_failure(a, depth, host, queries, ctrl_knows)
    if _censor_answer(a, host, addrs, ctrl_knows):
        return True
    _note_validated_addresses(a, host, addrs)
    bogons = [ip for ip in addrs if a.is_bogon(ip) and ip not in a.validated]
    if bogons:
        return _judge_bogons(a, depth, host, bogons, ctrl_knows)
    injected = _injected_answers(a, host, addrs)
    if not ctrl_knows:
        return _judge_without_control(a, host, addrs, asn_hint, injected)
    return _judge_against_control(a, host, addrs, asn_hint, injected)


def lookup_failure_method(failure: str) -> tuple[str, float]:
    """The method and base confidence of a lookup that failed where the name resolves."""
    if failure in NXDOMAIN_FAILURES:
        return "dns.nxdomain", C.DNS_NXDOMAIN
    return "dns.failure", C.DNS_FAILURE


def _answers(queries: list[DnsObs]) -> tuple[list[str], dict[str, int]]:
    """The addresses of the hop's queries (first-seen order, no repeats) and their AS hints."""
    if len(queries) == 1:
        return list(dict.fromkeys(queries[0].addrs)), queries[0].asns  # hints: read only
    addrs = list(dict.fromkeys(a for q in queries for a in q.addrs))
    asn_hint: dict[str, int] = {}
    for q in queries:
        asn_hint.update(q.asns)
    return addrs, asn_hint


def _lookup_failure(queries: list[DnsObs]) -> str:
    """The failure to report: the first that is not a mere "no answer", else the first."""
    failures = [q.failure for q in queries if q.failure]
    for f in failures:
        if f not in NO_ANSWER_FAILURES:
            return f
    return failures[0] if failures else "dns_no_answer"


def _judge_lookup_failure(
    a: WebAnalysis, depth: int, host: str, queries: list[DnsObs], ctrl_knows: bool
) -> bool:
    out, ctrl = a.out, a.ctrl
    failure = _lookup_failure(queries)
    ev = f"dns {host}: {failure}"
    ctrl_failed = ctrl_knows and (
        ctrl.dns_failure is not None
        or not ctrl.dns_addrs
        or ctrl.http_failure == "dns_lookup_error"
    )
    if ctrl_failed or (depth > 0 and ctrl.available and not ctrl.http_ok):
        out.layers["dns"] = "down"
        if ctrl_failed:
            no_addresses = "" if ctrl.dns_addrs else ", no addresses"
            ctrl_ev = f"control: dns {fmt(ctrl.dns_failure)}{no_addresses}"
        else:  # a redirect's host: the control's fetch of the chain is what failed too
            ctrl_ev = f"control: http {fmt(ctrl.http_failure)}"
        out.done("down", C.DNS_DOWN, ev, ctrl_ev)
        return True
    reference = a.reference_addrs(host)
    if ctrl_knows or (depth > 0 and ctrl.http_ok):
        ctrl_ev = (
            f"control: dns {', '.join(ctrl.dns_addrs[:3])}"
            if ctrl_knows
            else "control: reached the final page"
        )
        extra = [f"doh: {', '.join(reference[:3])}"] if reference else []
        method, conf = lookup_failure_method(failure)
        bonus = C.DNS_ENCRYPTED_AGREES_BONUS if reference else 0
        out.blocked(method, min(C.DNS_FAILURE_MAX, conf + bonus), ev, ctrl_ev, *extra)
        return True
    if reference:
        method, conf = lookup_failure_method(failure)
        out.blocked(
            method,
            conf - C.DNS_NO_CONTROL_PENALTY,
            ev,
            f"doh: {', '.join(reference[:3])}",
            "no control measurement",
        )
        return True
    if failure in LOCAL_FAILURES or not a.probe_network_works():
        out.done(
            "unknown",
            C.NONE,
            ev,
            "the probe's own network failed: no step succeeded and the control was not reached",
        )
        return True
    out.done("unknown", C.NONE, ev, "no control measurement to compare with")
    return True


def _censor_answer(a: WebAnalysis, host: str, addrs: list[str], ctrl_knows: bool) -> bool:
    """An address a DNS fingerprint attributes to a censor (unless the control got it too)."""
    seen_by_control = set(a.ctrl.dns_addrs) if ctrl_knows else set()
    for ip in addrs:
        name = None if ip in seen_by_control else a.fps.match_dns(ip, a.cc)
        if name:
            a.out.fingerprint = name
            method = "dns.bogon" if a.is_bogon(ip) else "dns.forged"
            a.out.blocked(
                method, C.FINGERPRINT_MATCH, f"dns {host}: {ip} (known censor answer {name})"
            )
            return True
    return False


def _note_validated_addresses(a: WebAnalysis, host: str, addrs: list[str]) -> None:
    """Addresses proven genuine: a valid certificate for the name from the probe's own
    handshake, or from the control's handshake to the same address."""
    verified = a.verified_addresses(host)
    if verified:
        a.validated.update(ip for ip in addrs if ip in verified)
    if a.ctrl.tls:  # (no control handshakes: nothing to look up)
        for ip in addrs:
            if a.ctrl_tls_ok(ip, 443, host):
                a.validated.add(ip)


def _judge_bogons(
    a: WebAnalysis, depth: int, host: str, bogons: list[str], ctrl_knows: bool
) -> bool:
    out, ctrl = a.out, a.ctrl
    ctrl_addrs = ctrl.dns_addrs if ctrl_knows else []
    ev = f"dns {host}: {', '.join(bogons[:3])} (bogon)"
    if ctrl_addrs and all(a.is_bogon(x) and not a.ctrl_tls_ok(x, 443, host) for x in ctrl_addrs):
        out.layers["dns"] = "down"
        out.done(
            "down",
            C.DNS_BOGON_DOWN,
            ev,
            f"control: dns {', '.join(ctrl_addrs[:3])}"
            " (bogon too: the site's own DNS points nowhere)",
        )
        return True
    if ctrl_addrs or (depth > 0 and ctrl.http_ok):
        resolved = ", ".join(ctrl_addrs[:3]) or "resolved"
        out.blocked("dns.bogon", C.DNS_BOGON, ev, f"control: dns {resolved}")
        return True
    reference = [x for x in a.reference_addrs(host) if not a.is_bogon(x)]
    if reference:
        out.blocked("dns.bogon", C.DNS_BOGON_ENCRYPTED, ev, f"doh: {', '.join(reference[:3])}")
        return True
    out.done(
        "unknown",
        C.NONE,
        ev,
        "no control to tell a block from a site that points at a private address",
    )
    return True


def _injected_answers(a: WebAnalysis, host: str, addrs: list[str]) -> list[str]:
    """Extra UDP answers that differ from the first: a forged answer raced the real one."""
    extra: list[str] = []
    for d in a.obs.duplicates:
        if (d.hostname and d.hostname != host) or d.differs is False:
            continue
        other = [x for x in d.addrs if x not in addrs]
        if other:
            extra.append(
                f"dns {host}: a second answer {', '.join(other[:3])} arrived after "
                f"{', '.join(addrs[:3])} (injected response)"
            )
    return extra[:2]


def _judge_without_control(
    a: WebAnalysis, host: str, addrs: list[str], asn_hint: dict[str, int], injected: list[str]
) -> bool:
    """No control for this hop: an injected answer, or an encrypted resolver's second opinion
    (at depth > 0 the control only saw the final page)."""
    out = a.out
    out.layers["dns"] = "ok"
    answer = f"dns {host}: {', '.join(addrs[:3])}"
    if injected:
        out.blocked("dns.forged", C.DNS_INJECTED_NO_CONTROL, answer, *injected)
        return True
    reference = a.reference_addrs(host)
    if reference and not (set(addrs) & (set(reference) | a.validated)):
        ref_asns = {n for n in (a.asn(ip, {}) for ip in reference) if n}
        own_asns = {n for n in (a.asn(ip, asn_hint) for ip in addrs) if n}
        if not (ref_asns & own_asns):
            out.blocked(
                "dns.forged",
                C.DNS_FORGED_ENCRYPTED,
                answer,
                f"doh: {', '.join(reference[:3])}; no address or AS overlap",
            )
            return True
    return False


def _judge_against_control(
    a: WebAnalysis, host: str, addrs: list[str], asn_hint: dict[str, int], injected: list[str]
) -> bool:
    """Consistency with the control: address overlap, a valid certificate, or AS overlap."""
    out = a.out
    ctrl_addrs = a.ctrl.dns_addrs
    if set(addrs) & set(ctrl_addrs):
        out.layers["dns"] = "ok"
        if injected and not (set(addrs) & a.validated):
            # The first answer matched, but a second, different answer raced it.
            out.evidence.extend(injected)
        return False
    probe_asns = {n for n in (a.asn(ip, asn_hint) for ip in addrs) if n}
    ctrl_asns = {n for n in (a.asn(ip, {}) for ip in ctrl_addrs) if n}
    if a.validated & set(addrs):
        ip = sorted(a.validated & set(addrs))[0]
        out.layers["dns"] = "ok"
        a.dns_inconsistent = [
            f"dns {host}: {', '.join(addrs[:3])} differs from control "
            f"({', '.join(ctrl_addrs[:3]) or 'none'}) but {ip} has a valid certificate "
            f"for {host}"
        ]
        return False
    if probe_asns & ctrl_asns:
        out.layers["dns"] = "ok"
        a.dns_inconsistent = [
            f"dns {host}: {', '.join(addrs[:3])} differs from control but is in the same AS "
            f"(AS{sorted(probe_asns & ctrl_asns)[0]})"
        ]
        return False
    return _judge_inconsistent(a, host, addrs, probe_asns, ctrl_asns, injected)


def _judge_inconsistent(
    a: WebAnalysis,
    host: str,
    addrs: list[str],
    probe_asns: set[int],
    ctrl_asns: set[int],
    injected: list[str],
) -> bool:
    """No address or AS in common with the control: forged, unless the page proves otherwise."""
    out, ctrl = a.out, a.ctrl
    ctrl_addrs = ctrl.dns_addrs
    ev = [f"dns {host}: {', '.join(addrs[:3])}"]
    if ctrl.dns_failure or not ctrl_addrs:
        ev.append(f"control: dns {fmt(ctrl.dns_failure)} (the name does not resolve)")
        out.blocked("dns.forged", C.DNS_FORGED_CONTROL_FAILED, *ev, *injected)
        return True
    as_pair = (
        f" (AS{sorted(probe_asns)[0]} vs AS{sorted(ctrl_asns)[0]})"
        if probe_asns and ctrl_asns
        else ""
    )
    ev.append(f"control: dns {', '.join(ctrl_addrs[:3])}; no address or AS overlap{as_pair}")
    bad_cert = [
        t
        for t in a.obs.tls
        if t.ip in addrs and t.server_name == host and t.failure in CERT_FAILURES
    ]
    if bad_cert:
        ev.append(
            f"tls_handshake {bad_cert[0].ip}:{bad_cert[0].port} sni={host}: {bad_cert[0].failure}"
        )
    if injected:
        out.blocked("dns.forged", C.DNS_FORGED_INJECTED, *ev, *injected)
        return True
    if _page_matches_control_via(a, addrs):
        out.layers["dns"] = "ok"
        a.dns_inconsistent = [*ev, "but the page fetched from it matches the control's"]
        return False
    if _tls_fails_at_every_address(a, host, addrs, ctrl_addrs):
        # A CDN answer beside the origin's (ooni/probe#2517): the handshakes to the control's
        # own addresses fail just the same, so a corrected answer would not help.
        out.layers["dns"] = "ok"
        a.dns_inconsistent = [
            *ev,
            "but the TLS handshakes to the control's addresses fail the same way: "
            "the answer is not what fails",
        ]
        return False
    out.blocked("dns.forged", C.DNS_FORGED_BAD_CERT if bad_cert else C.DNS_FORGED, *ev)
    return True


def _tls_fails_at_every_address(
    a: WebAnalysis, host: str, addrs: list[str], ctrl_addrs: list[str]
) -> bool:
    """Did the probe connect to both its own answer and the control's addresses, and did every
    handshake with the name fail, the same way on both sets? Then the answer is not what
    fails: the TLS step decides, with the control's addresses counted (recorded in
    ``a.same_failure_addrs``). Only an https input says so: on plain HTTP the page decides."""
    if a.scheme != "https":
        return False
    own, theirs = set(addrs), set(ctrl_addrs) - set(addrs)
    hands = [
        h
        for h in a.tls_at(0)
        if h.server_name == host and not h.sni_probe and h.port == a.port and h.ip in own | theirs
    ]
    own_hands = [h for h in hands if h.ip in own]
    their_hands = [h for h in hands if h.ip in theirs]
    if not own_hands or not their_hands or any(h.failure is None for h in hands):
        return False
    own_kinds = {failure_kind(h.failure or "") for h in own_hands}
    if own_kinds != {failure_kind(h.failure or "") for h in their_hands}:
        return False
    connected = {
        t.ip for t in a.tcp_at(0) if t.port == a.port and t.failure is None and not t.sni_probe
    }
    if not (connected & own and connected & theirs):
        return False
    a.same_failure_addrs = {h.ip for h in their_hands}
    return True


def _page_matches_control_via(a: WebAnalysis, addrs: list[str]) -> bool:
    """The plain-HTTP page fetched through these addresses is the control's page."""
    final = a.final_response()
    if final is None or final.scheme != "http" or not a.ctrl.http_ok:
        return False
    connected = any(t.failure is None and t.ip in addrs for t in a.obs.tcp)
    return connected and content_diff(a, final) is None and final.status == a.ctrl.http_status
