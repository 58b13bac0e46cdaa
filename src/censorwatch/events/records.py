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
from datetime import datetime, timedelta

import msgspec

from censorwatch.events import locations, workarounds
from censorwatch.events.detector import DetectorParams, NetworkEvent
from censorwatch.events.platforms import Platform, host_of, load_platforms
from censorwatch.model import Bracket, Event
from censorwatch.store.base import ReportCount, ReportFilters, Store
from censorwatch.times import naive_utc, parse_time

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
    methods = _methods(ev.methods)
    event = Event(
        event_id=event_id("network", ev.cc, ev.asn, ev.target, ev.onset_before),
        scope="network",
        cc=ev.cc,
        asns=[ev.asn],
        target=ev.target,
        methods=methods,
        onset=Bracket(after=ev.onset_after, before=ev.onset_before),
        end=end,
        status="ended" if end else "ongoing",
        confidence=ev.confidence,
        measurements=measurements,
        evidence=_dedupe([*ev.bracket_uids, *ev.blocked_uids]),
    )
    if ev.workarounds:
        event.workarounds = workarounds.ordered(ev.workarounds)
        event.workarounds_summary = workarounds.sentence(
            ev.target, f"on {ev.asn}", methods, ev.onset_before, ev.workarounds
        )
    if ev.locations:
        event.censor_location = locations.ranked(ev.locations)
        event.censor_location_summary = locations.words(event.censor_location)
    return event


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
    event = Event(
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
    by_network = {
        asn: tally
        for asn in asns
        if (tally := workarounds.merged(e.workarounds for e in group if e.asn == asn))
    }
    if by_network:
        total = workarounds.merged(by_network.values())
        event.workarounds = total
        event.workarounds_by_network = by_network
        where = f"in {cc} on {len(asns)} networks ({', '.join(asns)})"
        event.workarounds_summary = workarounds.sentence(
            target, where, event.methods, onset.before, total
        )
    places = {
        asn: locations.ranked(found)
        for asn in asns
        if (found := locations.merged(e.locations for e in group if e.asn == asn))
    }
    if places:
        event.censor_location = locations.ranked(
            locations.merged(e.locations for e in group if e.locations)
        )
        event.censor_location_by_network = places
        event.censor_location_summary = "; ".join(
            f"{asn}: {locations.words(ranking)}" for asn, ranking in places.items()
        )
    return event


# -- people's reports around an onset -----------------------------------------------------------

#: How long before an onset bracket opens people's reports count as having preceded it.
REPORTS_BEFORE = timedelta(hours=24)


def _report_about(report_target: str, event_target: str, platforms: list[Platform]) -> bool:
    """Whether a report's target (a platform name or a URL) is about the event's target (a
    host or a platform name): the same, or one owns the other."""
    if report_target == event_target:
        return True
    owner = {p.name: p for p in platforms}
    host = host_of(report_target, None) if "://" in report_target else None
    if host is not None:
        return host == event_target or (event_target in owner and owner[event_target].owns(host))
    return report_target in owner and owner[report_target].owns(event_target)


def _hour(text: str) -> datetime:
    return naive_utc(text).replace(minute=0, second=0, microsecond=0)


def with_reports(
    events: list[Event], store: Store, platforms: list[Platform] | None = None
) -> list[Event]:
    """The events, each carrying how many people's reports from its networks preceded its
    onset (the 24 h before the bracket opens, at ``onset.after``, or ``onset.before`` when
    nothing precedes it) and accompanied it (from that hour to ``onset.before``). Reports are
    kept by the hour, so the hour a time falls in stands for it. One read per country."""
    if not events:
        return events
    platforms = load_platforms() if platforms is None else platforms
    spans: dict[str, tuple[datetime, datetime]] = {}
    for ev in events:
        start = _hour(ev.onset.after or ev.onset.before) - REPORTS_BEFORE
        end = _hour(ev.onset.before) + timedelta(hours=1)
        low, high = spans.get(ev.cc, (start, end))
        spans[ev.cc] = (min(low, start), max(high, end))
    counts: dict[str, list[ReportCount]] = {
        cc: store.people_report_counts(ReportFilters(probe_cc=cc, since=low, until=high))
        for cc, (low, high) in spans.items()
    }
    out = []
    for ev in events:
        opens = _hour(ev.onset.after or ev.onset.before)
        last = _hour(ev.onset.before)
        before = during = 0
        for c in counts[ev.cc]:
            if c.probe_asn not in ev.asns or not _report_about(c.target, ev.target, platforms):
                continue
            if opens - REPORTS_BEFORE <= c.hour < opens:
                before += c.reports
            elif opens <= c.hour <= last:
                during += c.reports
        if before or during:
            ev = msgspec.structs.replace(
                ev, reports={"before_onset_24h": before, "during_onset": during}
            )
        out.append(ev)
    return out
