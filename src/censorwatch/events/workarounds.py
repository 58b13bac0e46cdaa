"""What still gets through, per event: the circumvention summaries of its blocked measurements,
counted.

A measurement's summary (``Verdict.workarounds``, analysis/workarounds.py) judges each
technique the probe tried. An event counts, per technique *family* (``doh`` for every DoH
operator, ``front`` for every front), how many of its blocked measurements found it working,
failing or not tried: in one measurement a family works when any of its techniques worked,
fails when none worked and one failed, and is not tried otherwise. Over the event, a family
**works** when it worked in at least half the measurements that tried it; the counts say how
sure that is. National events keep the counts per network too (the explorer's matrix).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from censorwatch.analysis.workarounds import FAILS, LABELS, NOT_TRIED, WORKS, family

#: family -> {"works": n, "fails": n, "not tried": n} (measurements).
Tally = dict[str, dict[str, int]]

STATUSES: tuple[str, ...] = (WORKS, FAILS, NOT_TRIED)

#: The families in the probe's order (the explorer's columns follow it).
ORDER: tuple[str, ...] = tuple(LABELS)

#: Short words for the event's sentence (an alert is read on a phone).
SHORT = {
    "real_addresses": "the real addresses",
    "doh": "DoH",
    "dot": "DoT",
    "udp": "another UDP resolver",
    "tls_over_tcp": "TLS over TCP",
    "no_sni": "TLS without SNI",
    "decoy_sni": "a decoy SNI",
    "split_sni_tcp": "SNI split over TCP segments",
    "split_sni_record": "SNI split over TLS records",
    "ech": "ECH",
    "http3": "HTTP/3",
    "plain_http": "plain HTTP",
    "other_port": "another port",
    "front": "a front",
}

#: How each blocking method reads in the sentence.
METHOD_WORDS = {
    "dns.nxdomain": "DNS NXDOMAIN",
    "dns.bogon": "bogon DNS answers",
    "dns.forged": "forged DNS answers",
    "dns.failure": "DNS failure",
    "tcp.timeout": "dropped TCP connections",
    "tcp.reset": "TCP reset",
    "tls.reset": "TLS reset",
    "tls.timeout": "dropped TLS handshakes",
    "tls.mitm": "TLS interception",
    "http.blockpage": "an HTTP block page",
    "http.reset": "HTTP reset",
    "http.timeout": "dropped HTTP requests",
    "http.diff": "an altered HTTP page",
    "quic.blocked": "QUIC blocking",
    "throttled": "throttling",
}


def _rank(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def family_statuses(summary: Any) -> dict[str, str] | None:
    """One measurement's summary (technique -> {status, reason}) as family -> status; None
    when it has none (or only values of the wrong shape)."""
    if not isinstance(summary, Mapping):
        return None
    out: dict[str, str] = {}
    for technique, result in summary.items():
        status = result.get("status") if isinstance(result, Mapping) else None
        if status not in STATUSES:
            continue
        name = family(str(technique))
        before = out.get(name)
        if before == WORKS or (before == FAILS and status == NOT_TRIED):
            continue
        out[name] = status
    return out or None


def add(tally: Tally, statuses: Mapping[str, str]) -> None:
    """Count one measurement's family statuses into ``tally`` (in place)."""
    for name, status in statuses.items():
        counts = tally.setdefault(name, {s: 0 for s in STATUSES})
        counts[status] = counts.get(status, 0) + 1


def merged(tallies: Iterable[Tally]) -> Tally:
    """The sum of several tallies, families in the probe's order."""
    out: Tally = {}
    for tally in tallies:
        for name, counts in tally.items():
            into = out.setdefault(name, {s: 0 for s in STATUSES})
            for status, n in counts.items():
                into[status] = into.get(status, 0) + n
    return ordered(out)


def ordered(tally: Tally) -> Tally:
    return {name: dict(tally[name]) for name in sorted(tally, key=_rank)}


def overall(counts: Mapping[str, int]) -> str:
    """The family's status over an event: works when it worked in at least half of the
    measurements that tried it, fails when it was tried otherwise, else not tried."""
    works, fails = counts.get(WORKS, 0), counts.get(FAILS, 0)
    if works + fails == 0:
        return NOT_TRIED
    return WORKS if works >= fails else FAILS


def _with_counts(name: str, counts: Mapping[str, int], status: str) -> str:
    """``DoH``, or ``DoH (3 of 4)`` when the measurements that tried it did not all agree."""
    tried = counts.get(WORKS, 0) + counts.get(FAILS, 0)
    agreeing = counts.get(status, 0)
    words = SHORT.get(name, LABELS.get(name, name))
    return words if agreeing == tried else f"{words} ({agreeing} of {tried})"


def headline(tally: Tally) -> str:
    """``works: DoH, TLS without SNI; fails: another UDP resolver`` (not-tried families are
    left to the matrix); empty when nothing was tried."""
    parts = []
    for status in (WORKS, FAILS):
        names = [
            _with_counts(name, counts, status)
            for name, counts in ordered(tally).items()
            if overall(counts) == status
        ]
        if names:
            parts.append(f"{status}: {', '.join(names)}")
    return "; ".join(parts)


def sentence(target: str, where: str, methods: list[str], since: str, tally: Tally) -> str:
    """``x.com blocked on AS17557 by TLS reset since …; works: DoH, HTTP/3; fails: another UDP
    resolver``; empty when no blocked measurement of the event carried a summary."""
    if not tally:
        return ""
    how = ", ".join(METHOD_WORDS.get(m, m) for m in methods) or "an unknown method"
    text = f"{target} blocked {where} by {how} since {since}"
    what = headline(tally)
    return f"{text}; {what}" if what else f"{text}; no way around it was tried"
