"""Throttling and QUIC: the two checks made once the page itself loaded.

Throughput compares the target's transfer rate with a reference host's measured on the same
network at the same time (``x_throughput``, or the probe's ``bytes_received_cumulative``
network events). QUIC is blocked when every handshake failed where the server is known to
speak HTTP/3. docs/verdicts.md.
"""

from __future__ import annotations

from censorwatch.analysis import confidence as C
from censorwatch.analysis.context import WebAnalysis

#: The target must move data this many times slower than the reference host to be "throttled".
THROTTLE_RATIO = 0.25
#: ... and the comparison only counts when both transfers carried at least this much.
THROTTLE_MIN_BYTES = 16 * 1024
#: ... and the target's transfer lasted at least this long: a transfer that finishes in a
#: fraction of a second is fast whatever the ratio says (its rate is mostly scheduling noise).
THROTTLE_MIN_SECONDS = 1.0

Rate = tuple[int, float, float]  # bytes, seconds, bits per second


def check_throughput(a: WebAnalysis) -> bool:
    """The target's transfer was throttled next to the reference host's; True if blocked."""
    tp = a.obs.throughput
    target = reference = None
    if tp:
        target, reference = _rate(tp.get("target")), _rate(tp.get("reference"))
    if target is None or reference is None:
        target = target or _events_rate(a.obs.network_events, "target")
        reference = reference or _events_rate(a.obs.network_events, "reference")
    if target is None or reference is None:
        return False
    (tb, ts, tbps), (rb, rs, rbps) = target, reference
    if rb < THROTTLE_MIN_BYTES or rbps <= 0:
        return False
    if tb < THROTTLE_MIN_BYTES:
        return _judge_starved(a, tp, target, reference)
    ratio = tbps / rbps
    ev = (
        f"throughput: target {tbps / 1e6:.2f} Mbit/s ({tb} bytes in {ts:.1f} s) vs "
        f"reference {rbps / 1e6:.2f} Mbit/s ({rb} bytes in {rs:.1f} s), ratio {ratio:.2f}"
    )
    if ratio < THROTTLE_RATIO and ts >= THROTTLE_MIN_SECONDS:
        severe = ratio < THROTTLE_RATIO / 2
        a.out.blocked("throttled", C.THROTTLED_SEVERE if severe else C.THROTTLED, ev)
        return True
    a.out.evidence.append(ev)
    return False


def _judge_starved(a: WebAnalysis, tp: dict | None, target: Rate, reference: Rate) -> bool:
    """Next to nothing arrived before the time budget ran out while the reference host
    delivered: the harshest throttling (the page itself may still load)."""
    (tb, ts, _), (rb, rs, rbps) = target, reference
    entry = tp.get("target") if tp else None
    failure = entry.get("failure") if isinstance(entry, dict) else None
    if ts >= THROTTLE_MIN_SECONDS and isinstance(failure, str) and "timeout" in failure:
        a.out.blocked(
            "throttled",
            C.THROTTLED_STARVED,
            f"throughput: target {tb} bytes in {ts:.1f} s ({failure}) vs reference "
            f"{rbps / 1e6:.2f} Mbit/s ({rb} bytes in {rs:.1f} s)",
        )
        return True
    return False


def check_quic(a: WebAnalysis) -> bool:
    """QUIC handshakes all failed where the server is known to speak QUIC."""
    quic = [q for q in a.obs.quic if q.server_name in ("", a.host)]
    if not quic or any(q.failure is None for q in quic):
        return False
    q = quic[0]
    ctrl = a.ctrl
    speaks_h3 = (
        ctrl.quic_ok
        or any("h3" in v for h in a.obs.http for v in h.headers.get("alt-svc", ()))
        or "h3" in ctrl.http_headers.get("alt-svc", "")
    )
    ev = f"quic_handshake {q.ip}:{q.port} sni={a.host}: {q.failure}"
    if not speaks_h3:
        a.out.evidence.append(f"{ev} (the server is not known to speak QUIC)")
        return False
    if a.out.layers["tls"] == "ok" or ctrl.http_ok:
        control = "control: quic ok" if ctrl.quic_ok else "server advertises HTTP/3"
        a.out.blocked(
            "quic.blocked",
            C.QUIC_BLOCKED_CONTROL if ctrl.quic_ok else C.QUIC_BLOCKED_ADVERTISED,
            ev,
            "tls over tcp to the same host: ok",
            control,
        )
        return True
    return False


def _rate(entry: object) -> Rate | None:
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


def _events_rate(events: list[dict], which: str) -> Rate | None:
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
