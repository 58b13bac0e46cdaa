"""The TCP and TLS steps of one hop: connects that failed, handshakes that failed, and why.

A TCP failure is judged against the control's connects to the same addresses; a TLS failure
against the control's handshake and the probe's SNI probes (the same address without the name
or with an innocuous one), which tell SNI filtering from a filtered address. On a plain-HTTP
hop a failed handshake is only context: the HTTP step decides. docs/verdicts.md.
"""

from __future__ import annotations

from censorwatch.analysis import confidence as C
from censorwatch.analysis.context import WebAnalysis
from censorwatch.analysis.outcome import (
    CERT_FAILURES,
    LOCAL_FAILURES,
    RESET_FAILURES,
    TIMEOUT_FAILURES,
    fmt,
)
from censorwatch.observations.builder import TcpObs, TlsObs


def check_transport(a: WebAnalysis, depth: int, host: str, scheme: str, port: int) -> bool:
    """Judge the hop's connects, then its handshakes; True when that decided the verdict."""
    addrs = a.probe_addrs(depth, host)
    return check_tcp(a, depth, addrs, port) or check_tls(a, depth, host, addrs, scheme, port)


def check_tcp(a: WebAnalysis, depth: int, addrs: set[str], port: int) -> bool:
    conns = _connects(a, depth, addrs, port)
    if not conns:
        return False
    if any(t.failure is None for t in conns):
        a.out.layers["tcp"] = a.out.layers["tcp"] or "ok"
        return False
    return _judge_tcp_failure(a, depth, conns)


def _connects(a: WebAnalysis, depth: int, addrs: set[str], port: int) -> list[TcpObs]:
    """The hop's connects to the resolved addresses (the classic ones first choice)."""
    tcps = [t for t in a.tcp_at(depth) if t.port == port and not t.sni_probe]
    conns = [t for t in tcps if (not addrs or t.ip in addrs) and (t.classic or not addrs)]
    if not conns:
        conns = [t for t in tcps if not addrs or t.ip in addrs]
    return conns


def _judge_tcp_failure(a: WebAnalysis, depth: int, conns: list[TcpObs]) -> bool:
    out, ctrl = a.out, a.ctrl
    t = conns[0]
    ev = f"tcp_connect {t.ip}:{t.port}: {t.failure}"
    ctrl_fail = [ctrl.tcp.get(f"{c.ip}:{c.port}", "?") for c in conns] if depth == 0 else []
    if ctrl_fail and all(f not in (None, "?") for f in ctrl_fail):
        out.layers["tcp"] = "down"
        out.done("down", C.TCP_DOWN, ev, f"control: tcp {ctrl_fail[0]}")
        return True
    ctrl_connected = any(f is None for f in ctrl_fail)
    if ctrl_connected or ctrl.http_ok:
        ctrl_ev = "control: tcp ok" if ctrl_connected else "control: reached the page"
        if t.failure in TIMEOUT_FAILURES:
            out.blocked("tcp.timeout", C.TCP_TIMEOUT, ev, ctrl_ev)
        elif t.failure in RESET_FAILURES:
            out.blocked("tcp.reset", C.TCP_RESET, ev, ctrl_ev)
        elif t.failure in LOCAL_FAILURES:
            out.done("unknown", C.NONE, ev, "the probe's own network failed")
        else:
            method = "tcp.timeout" if "timeout" in str(t.failure) else "tcp.reset"
            out.blocked(method, C.TCP_OTHER, ev, ctrl_ev)
        return True
    if ctrl.available and not ctrl.http_ok:
        out.layers["tcp"] = "down"
        out.done("down", C.TCP_DOWN_CONTROL_HTTP, ev, f"control: http {fmt(ctrl.http_failure)}")
        return True
    out.done("unknown", C.NONE, ev, "no control measurement to compare")
    return True


def check_tls(
    a: WebAnalysis, depth: int, host: str, addrs: set[str], scheme: str, port: int
) -> bool:
    tls_port = 443 if scheme == "http" else port
    hands = [
        h
        for h in a.tls_at(depth)
        if h.server_name == host
        and not h.sni_probe
        and (not addrs or h.ip in addrs)
        and h.port == tls_port
    ]
    if not hands:
        return False
    if any(h.failure is None for h in hands):
        a.out.layers["tls"] = a.out.layers["tls"] or "ok"
        return False
    if scheme != "https":
        # A plain-HTTP page: the TLS result is context, the HTTP step decides.
        a.out.layers["tls"] = "blocked" if a.ctrl.http_ok else "unknown"
        a.tls_context = [_handshake_evidence(hands[0], host)]
        return False
    return _judge_tls_failure(a, depth, host, hands)


def _handshake_evidence(h: TlsObs, host: str) -> str:
    return f"tls_handshake {h.ip}:{h.port} sni={host}: {h.failure}"


def _control_handshake_state(
    a: WebAnalysis, depth: int, host: str, hands: list[TlsObs]
) -> bool | None:
    """Did the control's handshake work (True), fail (False), or was it not tried (None)?"""
    ctrl = a.ctrl
    h = hands[0]
    if depth == 0 and any(a.ctrl_tls_ok(ip, h.port, host) for ip in a.same_failure_addrs):
        # The probe failed at the control's own addresses too, where the control succeeded.
        return True
    state = a.ctrl_tls_ok(h.ip, h.port, host) if depth == 0 else None
    if state is None and depth == 0:
        states = [a.ctrl_tls_ok(x.ip, x.port, host) for x in hands]
        states += [f is None for key, (sni, f) in ctrl.tls.items() if sni == host]
        known = [s for s in states if s is not None]
        state = any(known) if known else None
    if state is None and (depth > 0 or not ctrl.tls):
        state = True if ctrl.http_ok else (False if ctrl.available else None)
    return state


def _same_failure_evidence(a: WebAnalysis, depth: int, host: str, port: int) -> list[str]:
    """The probe's failed handshake to an address of the control's answer, when the DNS step
    left the verdict to TLS because those fail like the probe's own."""
    if depth != 0 or not a.same_failure_addrs:
        return []
    for t in a.tls_at(0):
        if t.ip in a.same_failure_addrs and t.server_name == host and t.port == port:
            return [_handshake_evidence(t, host) + " (an address of the control's answer)"]
    return []


def _sni_probe_evidence(a: WebAnalysis, h: TlsObs) -> tuple[list[str], float]:
    """What the SNI probes to the same address say, and the confidence bonus that follows."""
    probes = [x for x in a.obs.tls if x.ip == h.ip and x.sni_probe]
    probe_ok = [x for x in probes if x.failure is None or x.failure in CERT_FAILURES]
    probe_bad = [x for x in probes if x not in probe_ok]
    if probe_ok:
        return [
            f"tls_handshake {h.ip}:{h.port} sni={probe_ok[0].sni_probe}: "
            f"{probe_ok[0].failure or 'ok'} (the address works: SNI filtering)"
        ], C.SNI_PROBE_WORKS_BONUS
    if probe_bad:
        return [
            f"tls_handshake {h.ip}:{h.port} sni={probe_bad[0].sni_probe}: "
            f"{probe_bad[0].failure} (fails without the name too: the address "
            "itself is filtered)"
        ], C.SNI_PROBE_FAILS_BONUS
    return [], 0.0


def _judge_tls_failure(a: WebAnalysis, depth: int, host: str, hands: list[TlsObs]) -> bool:
    out, ctrl = a.out, a.ctrl
    h = hands[0]
    ev = [_handshake_evidence(h, host), *_same_failure_evidence(a, depth, host, h.port)]
    ctrl_state = _control_handshake_state(a, depth, host, hands)
    if ctrl_state is False:
        entry = ctrl.tls.get(f"{h.ip}:{h.port}")
        cfail = entry[1] if entry else ctrl.http_failure
        out.layers["tls"] = "down"
        out.done(
            "down", C.TLS_DOWN, *ev, f"control: tls {fmt(cfail)} (the server fails for everyone)"
        )
        return True
    probe_ev, bonus = _sni_probe_evidence(a, h)
    ev.extend(probe_ev)
    sni_probe_works = bonus > 0
    if ctrl_state is None:
        if not sni_probe_works:
            if not a.probe_network_works():
                out.done("unknown", C.NONE, *ev, "the probe's own network failed")
                return True
            out.done("unknown", C.NONE, *ev, "no control measurement")
            return True
        ctrl_ev = "control: none (SNI probe decides)"
        bonus -= C.TLS_NO_CONTROL_PENALTY
    elif depth == 0 and ctrl.tls:
        ctrl_ev = "control: tls ok"
    else:
        ctrl_ev = "control: reached the final page"
    ev.append(ctrl_ev)
    f = h.failure or ""
    if f in CERT_FAILURES:
        out.blocked("tls.mitm", C.TLS_MITM + bonus, *ev)
    elif f in TIMEOUT_FAILURES or "timeout" in f:
        out.blocked("tls.timeout", C.TLS_TIMEOUT + bonus, *ev)
    elif f in RESET_FAILURES or f == "ssl_failed_handshake":
        out.blocked("tls.reset", C.TLS_RESET + bonus, *ev)
    elif f in LOCAL_FAILURES:
        out.done("unknown", C.NONE, *ev, "the probe's own network failed")
    else:
        out.blocked("tls.reset", C.TLS_OTHER + bonus, *ev)
    return True
