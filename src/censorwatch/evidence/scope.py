"""What an event's bundle holds: every measurement of the event, and which ones travel in full.

An event's bundle lists **every** verdict of the event (each of its networks, from the last
normal measurement before the onset to the first normal one after the end: the measurements
its brackets rest on), each with its measurement UID, its log leaf and the SHA-256 of the
measurement, all proven present by one batch inclusion proof. The raw signed measurements go
with them while they fit the size the user allows; beyond that a stratified sample travels and
the rest stay proven by inclusion only.

The sample (policy ``censorwatch-stratified/1``, docs/evidence.md "Sample or whole") is a pure
function of the index and the byte budget, so ``verify`` draws it again and compares:

* the measurements the event's brackets cite always travel;
* strata are (network, UTC day, method, or the verdict when there is no method), in sorted
  order; within a stratum, measurements are ranked by SHA-256 of their UID;
* then, in rounds, each stratum in turn offers its next-ranked measurement, taken when it fits
  what is left of the budget, until no stratum has any left: every stratum is represented
  before any gets a second, so every network, day and method is in the sample.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from censorwatch.events.platforms import Platform
from censorwatch.events.series import series_keys
from censorwatch.times import naive_utc

SAMPLE_POLICY = "censorwatch-stratified/1"
#: The default most a bundle may weigh (``evidence export --max-size``).
DEFAULT_MAX_BYTES = 200 * 1000 * 1000
#: The columns of ``index.json``'s rows, in this order.
INDEX_COLUMNS = (
    "leaf_index",
    "measurement_uid",
    "measurement_sha256",
    "bytes",
    "probe_asn",
    "probe_cc",
    "measurement_start_time",
    "input",
    "verdict",
    "method",
)


@dataclass(frozen=True)
class IndexRow:
    """One measurement of the event as the index lists it."""

    leaf_index: int
    measurement_uid: str
    measurement_sha256: str
    bytes: int  # what carrying it costs: its canonical JSON and its verdict's
    probe_asn: str
    probe_cc: str
    measurement_start_time: str
    input: str
    verdict: str
    method: str

    def to_json(self) -> list[Any]:
        return [getattr(self, c) for c in INDEX_COLUMNS]

    @classmethod
    def from_json(cls, row: Any) -> IndexRow:
        if not isinstance(row, list) or len(row) != len(INDEX_COLUMNS):
            raise ValueError(f"an index row is a list of {len(INDEX_COLUMNS)} values")
        values = dict(zip(INDEX_COLUMNS, row, strict=True))
        for name in ("leaf_index", "bytes"):
            if type(values[name]) is not int or values[name] < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        for name in (*INDEX_COLUMNS[4:], "measurement_uid", "measurement_sha256"):
            if not isinstance(values[name], str):
                raise ValueError(f"{name} must be a string")
        return cls(**values)

    @property
    def day(self) -> str:
        return self.measurement_start_time[:10]


def _time(value: Any) -> datetime | None:
    try:
        return naive_utc(value) if isinstance(value, str) else None
    except (ValueError, OverflowError):
        return None


def in_event(event: dict[str, Any], verdict: dict[str, Any], platforms: Iterable[Platform]) -> bool:
    """True when ``verdict`` belongs to the event: its country, one of its networks, its
    target (a host or a platform), and a time from the onset bracket's start to the end
    bracket's end (to now while the event is ongoing)."""
    asns = event.get("asns") or []
    if verdict.get("probe_cc") != event.get("cc") or verdict.get("probe_asn") not in asns:
        return False
    keys = series_keys(verdict, platforms)
    if not any(key[2] == event.get("target") for key in keys):
        return False
    when = _time(verdict.get("measurement_start_time"))
    if when is None:
        return False
    after = _time((event.get("onset") or {}).get("after"))
    before = _time((event.get("end") or {}).get("before"))
    return (after is None or when >= after) and (before is None or when <= before)


def _rank(uid: str) -> bytes:
    return hashlib.sha256(uid.encode("utf-8")).digest()


def stratum(row: IndexRow) -> tuple[str, str, str]:
    return (row.probe_asn, row.day, row.method or row.verdict)


def choose_carried(rows: list[IndexRow], always: set[str], budget: int) -> set[str]:
    """The UIDs whose raw measurements travel (policy ``SAMPLE_POLICY``, module docstring):
    all of them when they fit ``budget`` bytes."""
    if sum(r.bytes for r in rows) <= budget:
        return {r.measurement_uid for r in rows}
    chosen = {r.measurement_uid for r in rows if r.measurement_uid in always}
    left = budget - sum(r.bytes for r in rows if r.measurement_uid in chosen)
    strata: dict[tuple[str, str, str], list[IndexRow]] = defaultdict(list)
    for r in rows:
        if r.measurement_uid not in chosen:
            strata[stratum(r)].append(r)
    queues = [
        sorted(group, key=lambda r: _rank(r.measurement_uid)) for _, group in sorted(strata.items())
    ]
    depth = 0
    while left > 0 and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and queue[depth].bytes <= left:
                chosen.add(queue[depth].measurement_uid)
                left -= queue[depth].bytes
        depth += 1
    return chosen
