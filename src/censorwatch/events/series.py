"""Verdicts → time series: one series per (cc, asn, target), cut into measurement rounds.

A target is a host (``x.com``) or a platform (``x``) that groups hosts. Each verdict becomes an
observation whose *state* is ``blocked``, ``ok`` or ``unknown``: ``down`` and ``unknown``
verdicts are not evidence that the target is reachable, so they never count as ``ok``.

A *round* is one pass of a probe over a series' inputs: consecutive observations from the same
report that do not repeat an input and span at most ``max_round_span`` seconds. A round's state
is decided by its measurements: blocked when at least as many are blocked as ok, ok when more
are ok, unknown when none is either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from censorwatch.events.locations import place_of
from censorwatch.events.platforms import Platform, host_of, platforms_of
from censorwatch.events.workarounds import family_statuses
from censorwatch.times import parse_time

SeriesKey = tuple[str, str, str]  # (cc, asn, target)

BLOCKED, OK, UNKNOWN = "blocked", "ok", "unknown"

#: Blocking methods that random loss, an overloaded path or a flaky server cannot produce: a
#: stray verdict with one of them is far less likely than a stray timeout or failure.
STRONG_METHODS = frozenset(
    {
        "dns.nxdomain",
        "dns.bogon",
        "dns.forged",
        "tcp.reset",
        "tls.reset",
        "tls.mitm",
        "http.blockpage",
        "http.reset",
    }
)


@dataclass(frozen=True, slots=True)
class Observation:
    """One verdict, reduced to what change detection needs."""

    time: datetime
    uid: str
    state: str  # blocked | ok | unknown
    kind: str  # the verdict: ok | blocked | down | unknown
    method: str | None
    confidence: float
    report_id: str
    input: str
    #: A blocked measurement's circumvention summary by technique family (family -> status,
    #: ``events.workarounds``); None for the others. Last, with a default: states saved
    #: before it existed still load.
    workarounds: dict[str, str] | None = None
    #: The place a blocked measurement's localization named (``events.locations``); None
    #: for the others and for measurements not localized.
    locate: dict[str, Any] | None = None


@dataclass(slots=True)
class Round:
    observations: list[Observation] = field(default_factory=list)
    # Set by the detector: this round follows a silence long enough to be a gap in the data.
    gap: bool = False

    @property
    def start(self) -> datetime:
        return self.observations[0].time

    @property
    def state(self) -> str:
        blocked = sum(o.state == BLOCKED for o in self.observations)
        ok = sum(o.state == OK for o in self.observations)
        if blocked and blocked >= ok:
            return BLOCKED
        if ok:
            return OK
        return UNKNOWN

    def of_state(self, state: str) -> list[Observation]:
        return [o for o in self.observations if o.state == state]


def observation_from_verdict(record: dict[str, Any]) -> Observation | None:
    """The observation for one verdict record, or None when it lacks a time or a network."""
    try:
        when = parse_time(str(record["measurement_start_time"]))
    except (KeyError, ValueError):
        return None
    kind = str(record.get("verdict") or "unknown")
    state = {"blocked": BLOCKED, "ok": OK}.get(kind, UNKNOWN)
    confidence = record.get("confidence")
    return Observation(
        time=when,
        uid=str(record.get("measurement_uid") or ""),
        state=state,
        kind=kind if kind in ("ok", "blocked", "down") else "unknown",
        method=record.get("method") if state == BLOCKED else None,
        confidence=float(confidence) if isinstance(confidence, int | float) else 0.0,
        report_id=str(record.get("report_id") or ""),
        input=str(record.get("input") or record.get("target") or ""),
        workarounds=family_statuses(record.get("workarounds")) if state == BLOCKED else None,
        locate=place_of(record.get("locate")) if state == BLOCKED else None,
    )


def series_keys(record: dict[str, Any], platforms: Iterable[Platform]) -> list[SeriesKey]:
    """The series one verdict belongs to: its host's, and each platform's that owns the host."""
    cc = str(record.get("probe_cc") or "").upper()
    asn = str(record.get("probe_asn") or "")
    if asn and not asn.upper().startswith("AS"):
        asn = f"AS{asn}"
    asn = asn.upper()
    host = host_of(record.get("target"), record.get("input"))
    if not cc or not asn or not host:
        return []
    return [(cc, asn, host)] + [(cc, asn, name) for name in platforms_of(host, platforms)]


def split_rounds(observations: Iterable[Observation], max_round_span: float) -> Iterator[Round]:
    """Cut one series' time-ordered observations into rounds."""
    current = Round()
    inputs: set[str] = set()
    for obs in observations:
        if current.observations:
            first = current.observations[0]
            if (
                obs.report_id != first.report_id
                or obs.input in inputs
                or (obs.time - first.time).total_seconds() > max_round_span
            ):
                yield current
                current, inputs = Round(), set()
        current.observations.append(obs)
        inputs.add(obs.input)
    if current.observations:
        yield current
