"""People's reports as the explorer shows them: per target of a network, the counts beside the
verdicts measured there, and the latest notes (rendered as text by the autoescaped templates).

Reports are counted, never judged: a target people report while every measurement says ``ok``
shows both, side by side, and the verdict stays the measurements'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from censorwatch.events.platforms import Platform, host_of
from censorwatch.store.base import REPORT_FAILURES, PeopleReport, ReportFilters
from censorwatch.web.views import TargetHistory, target_name

#: The windows the network page counts reports over.
DAY, MONTH = timedelta(days=1), timedelta(days=30)
#: Notes shown per target (the newest), and reports read for them at most.
NOTES_PER_TARGET, MAX_NOTES_READ = 5, 500


@dataclass
class TargetReports:
    target: str  # as stored: a platform name or a URL
    label: str  # what a reader sees: the platform's name, or the URL
    last_day: int = 0
    last_month: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # failure word -> count (30 days)
    measured: str = "not measured on this network"  # the verdicts beside the reports
    notes: list[PeopleReport] = field(default_factory=list)


def _hosts_of(target: str, hosts: Iterable[str], platforms: list[Platform]) -> list[str]:
    """The measured hosts a report's target is about."""
    if "://" in target:
        host = host_of(target, None)
        return [h for h in hosts if h == host]
    owner = next((p for p in platforms if p.name == target), None)
    return [h for h in hosts if owner is not None and owner.owns(h)]


def _measured(hosts: list[str], history: dict[str, TargetHistory]) -> str:
    if not hosts:
        return "not measured on this network"
    latest = [history[h].latest for h in hosts]
    blocked = sum(v["verdict"] == "blocked" for v in latest)
    if blocked:
        return f"blocked on {blocked} of {len(hosts)} host{'' if len(hosts) == 1 else 's'}"
    verdicts = sorted({v["verdict"] for v in latest})
    return f"latest {', '.join(verdicts)} ({len(hosts)} host{'' if len(hosts) == 1 else 's'})"


def network_reports(
    store: Any,
    asn: str,
    now: datetime,
    history: list[TargetHistory],
    platforms: list[Platform],
) -> list[TargetReports]:
    """The network's reported targets over the last 30 days, most reported first."""
    since = now - MONTH
    by_target: dict[str, TargetReports] = {}
    for c in store.people_report_counts(ReportFilters(probe_asn=asn, since=since)):
        t = by_target.setdefault(
            c.target, TargetReports(c.target, target_name(c.target, platforms))
        )
        t.last_month += c.reports
        if c.hour >= now - DAY:
            t.last_day += c.reports
    if not by_target:
        return []
    for r in store.people_reports(ReportFilters(probe_asn=asn, since=since), limit=MAX_NOTES_READ):
        t = by_target.get(r.target)
        if t is None:
            continue
        t.failures[r.failure] = t.failures.get(r.failure, 0) + 1
        if r.note and len(t.notes) < NOTES_PER_TARGET:
            t.notes.append(r)
    hosts = {h.host: h for h in history}
    for t in by_target.values():
        t.measured = _measured(_hosts_of(t.target, hosts, platforms), hosts)
        t.failures = {w: t.failures[w] for w in REPORT_FAILURES if w in t.failures}
    return sorted(by_target.values(), key=lambda t: (-t.last_day, -t.last_month, t.target))
