"""Network events → the stable event records, and the grouping into national events.

Network events of one target in one country are *simultaneous* when their spans (onset to end,
or to now while ongoing) overlap or lie less than ``national_gap`` seconds apart. A group that
covers at least ``min_networks`` networks is a national event: "X blocked in PK on 4 of 5
networks measured". Its onset bracket is the bracket of the earliest network onset
(after = earliest ``after``, before = earliest ``before``), its end that of the latest end.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

from censorwatch.events.detector import DetectorParams, NetworkEvent
from censorwatch.model import Bracket, Event
from censorwatch.times import parse_time

#: (cc, target) → [(asn, first_seen, last_seen)] for the networks that measured a target.
Coverage = dict[tuple[str, str], list[tuple[str, str, str]]]


def event_id(scope: str, cc: str, asns: str, target: str, onset_before: str) -> str:
    """Stable across runs: the same block on the same series always gets the same id."""
    key = f"{scope}|{cc}|{asns}|{target}|{onset_before}".encode()
    return "evt_" + hashlib.sha256(key).hexdigest()[:20]


def _methods(counts: dict[str, int]) -> list[str]:
    return [m for m, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def network_record(ev: NetworkEvent) -> Event:
    measurements = dict(ev.counts)
    measurements.update(
        rounds=ev.rounds, onset_unknown=ev.onset_unknown, end_unknown=ev.end_unknown
    )
    measurements.update(
        vantages=ev.vantages,
        vantages_blocked=ev.vantages_blocked,
        onset_silence_s=ev.onset_silence,
        end_silence_s=ev.end_silence,
    )
    end = Bracket(after=ev.end_after, before=ev.end_before) if ev.end_before else None
    return Event(
        event_id=event_id("network", ev.cc, ev.asn, ev.target, ev.onset_before),
        scope="network",
        cc=ev.cc,
        asns=[ev.asn],
        target=ev.target,
        methods=_methods(ev.methods),
        onset=Bracket(after=ev.onset_after, before=ev.onset_before),
        end=end,
        status="ended" if end else "ongoing",
        confidence=ev.confidence,
        measurements=measurements,
        evidence=_dedupe([*ev.bracket_uids, *ev.blocked_uids]),
    )


def _span_end(ev: NetworkEvent) -> float:
    return parse_time(ev.end_after or ev.last_blocked).timestamp() if ev.ended else float("inf")


def national_records(
    events: Iterable[NetworkEvent], coverage: Coverage, params: DetectorParams
) -> list[Event]:
    by_target: dict[tuple[str, str], list[NetworkEvent]] = defaultdict(list)
    for ev in events:
        by_target[(ev.cc, ev.target)].append(ev)
    out: list[Event] = []
    for (cc, target), evs in sorted(by_target.items()):
        evs.sort(key=lambda e: e.onset_before)
        groups: list[list[NetworkEvent]] = []
        reach = float("-inf")
        for ev in evs:
            start = parse_time(ev.onset_before).timestamp()
            if groups and start <= reach + params.national_gap:
                groups[-1].append(ev)
            else:
                groups.append([ev])
                reach = float("-inf")
            reach = max(reach, _span_end(ev))
        for group in groups:
            if len({e.asn for e in group}) >= params.min_networks:
                out.append(_national(cc, target, group, coverage.get((cc, target), [])))
    return out


def _national(
    cc: str, target: str, group: list[NetworkEvent], coverage: list[tuple[str, str, str]]
) -> Event:
    asns = sorted({e.asn for e in group}, key=lambda a: (len(a), a))
    # Every time here is in the canonical spelling (times.rfc3339, kept so on load): string
    # order is time order, so min and max pick the earliest and latest.
    afters = [e.onset_after for e in group]
    onset = Bracket(
        after=None if None in afters else min(a for a in afters if a is not None),
        before=min(e.onset_before for e in group),
    )
    end = None
    if all(e.ended for e in group):
        end = Bracket(
            after=max(e.end_after or e.onset_before for e in group),
            before=max(e.end_before or "" for e in group),
        )
    methods: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for e in group:
        for m, n in e.methods.items():
            methods[m] += n
        for k, n in e.counts.items():
            counts[k] += n
        counts["rounds"] += e.rounds
        counts["vantages"] += e.vantages
        counts["vantages_blocked"] += e.vantages_blocked
    span_end = end.before if end else "9999"
    measured = {
        asn for asn, first, last in coverage if first <= span_end and last >= onset.before
    } | set(asns)
    counts["networks_blocked"] = len(asns)
    counts["networks_measured"] = len(measured)
    best = {}
    for e in group:
        best[e.asn] = max(best.get(e.asn, 0.0), e.confidence)
    return Event(
        event_id=event_id("national", cc, "", target, onset.before),
        scope="national",
        cc=cc,
        asns=asns,
        target=target,
        methods=_methods(methods),
        onset=onset,
        end=end,
        status="ended" if end else "ongoing",
        confidence=round(sum(best.values()) / len(best), 3),
        measurements=dict(counts),
        evidence=_dedupe(u for e in group for u in e.bracket_uids),
    )
