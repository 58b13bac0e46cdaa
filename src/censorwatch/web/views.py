"""What the explorer shows, computed from verdict records: headlines, the matrix, timelines.

Pure functions over the store's verdict records (``Store.iter_verdicts``) and its stored event
records (``Store.stored_events``), so every page can be checked against the same data the API
serves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from censorwatch.events.platforms import Platform, host_of, platforms_of
from censorwatch.events.rollup import contains as contains
from censorwatch.events.rollup import group_events as group_events
from censorwatch.events.timeline import MIN_MARK as MIN_MARK
from censorwatch.events.timeline import SEVERITY as SEVERITY
from censorwatch.events.timeline import Band as Band
from censorwatch.events.timeline import Dot
from censorwatch.events.timeline import Row as Row
from censorwatch.events.timeline import bracket_bands as bracket_bands
from censorwatch.events.timeline import dot as dot
from censorwatch.events.timeline import timeline_svg as timeline_svg
from censorwatch.model import Event
from censorwatch.times import naive_utc

log = logging.getLogger(__name__)
T = TypeVar("T")


def show_time(value: str | datetime | None, *, seconds: bool = True) -> str:
    """A time as people read it, always labelled UTC."""
    if value is None or value == "":
        return "—"
    when = naive_utc(value)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


# -- events -------------------------------------------------------------------------------------


class StoreCache(Generic[T]):
    """A value derived from the whole store, recomputed once the store has grown, but at most
    once per ``min_interval`` seconds: a busy collector grows the store all the time.

    Once a value exists, a stale one is still served while a background thread computes the
    next (one at a time), so readers never wait for a recomputation a collector triggers; only
    the very first request for a store waits."""

    def __init__(self, compute: Callable[[Any], T], min_interval: float = 10.0) -> None:
        self._compute = compute
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._at = 0.0
        self._value: T | None = None
        self._refreshing = False

    def get(self, store: Any) -> T:
        key = (id(store), store.count())
        now = time.monotonic()
        with self._lock:
            same_store = self._key is not None and self._key[0] == key[0]
            fresh = self._key == key or now - self._at < self._min_interval
            if same_store and fresh:
                return self._value  # type: ignore[return-value]
            if same_store and not self._refreshing:
                self._refreshing = True
                threading.Thread(
                    target=self._refresh, args=(store, key), name="explorer-cache", daemon=True
                ).start()
            if same_store:
                return self._value  # type: ignore[return-value]
        value = self._compute(store)
        with self._lock:
            self._key, self._at, self._value = key, now, value
        return value

    def _refresh(self, store: Any, key: tuple[int, int]) -> None:
        try:
            value = self._compute(store)
            with self._lock:
                if self._key is not None and self._key[0] == key[0]:
                    self._key, self._at, self._value = key, time.monotonic(), value
        except Exception:  # the stale value stays; the next request tries again
            log.exception("recomputing a cached explorer view failed")
        finally:
            with self._lock:
                self._refreshing = False


def all_events(store: Any) -> list[Event] | None:
    """Every stored event, as ``GET /api/v1/events`` serves them (read, never re-detected);
    None when the store has verdicts but its events were never built."""
    from censorwatch.events.api import events_built

    events = store.stored_events()
    if not events and not events_built(store):
        return None
    return events


def ordered_events(events: Iterable[Event]) -> list[Event]:
    """Ongoing before ended; national before network; latest onset first."""
    ranked = sorted(events, key=lambda e: e.onset.before, reverse=True)
    return sorted(ranked, key=lambda e: (e.status != "ongoing", e.scope != "national"))


def target_name(target: str, platforms: Iterable[Platform]) -> str:
    """A platform's display name (``X``) or the host itself."""
    for p in platforms:
        if p.name == target:
            return p.display_name
    return target


def headline(event: Event, platforms: Iterable[Platform]) -> str:
    """The line a reader needs first: "X blocked in PK on 4 of 5 networks measured"."""
    name = target_name(event.target, platforms)
    if event.scope == "national":
        blocked = event.measurements.get("networks_blocked", len(event.asns))
        measured = event.measurements.get("networks_measured", blocked)
        return f"{name} blocked in {event.cc} on {blocked} of {measured} networks measured"
    return f"{name} blocked on {', '.join(event.asns)} ({event.cc})"


def short_label(event: Event, platforms: Iterable[Platform]) -> str:
    """A detail's name inside its parent: "x.com on AS17557", "x.com in PK"."""
    name = target_name(event.target, platforms)
    where = f"on {event.asns[0]}" if event.scope == "network" else f"in {event.cc}"
    return f"{name} {where}" + (" (ended)" if event.end is not None else "")


def methods_text(event: Event) -> str:
    return ", ".join(event.methods) if event.methods else "method not determined"


def period_text(event: Event) -> str:
    """When, in the bracket's own honest terms: the block began no later than onset.before."""
    since = show_time(event.onset.before, seconds=False)
    if event.end is None:
        return f"since {since}, ongoing"
    return f"from {since} until {show_time(event.end.before, seconds=False)}"


def event_window(event: Event, newest: datetime | None) -> tuple[datetime, datetime]:
    """The stretch of time an event page draws: its brackets with a margin either side."""
    start = naive_utc(event.onset.after or event.onset.before)
    if event.end is not None:
        end = naive_utc(event.end.before)
    else:
        end = max(newest or start, naive_utc(event.onset.before))
    pad = max((end - start) / 4, timedelta(hours=1))
    return start - pad, end + pad


# -- matching verdicts to targets --------------------------------------------------------------


def host(verdict: dict[str, Any]) -> str | None:
    return host_of(verdict.get("target"), verdict.get("input"))


def belongs(verdict: dict[str, Any], target: str, platforms: Iterable[Platform]) -> bool:
    """Whether a verdict is about ``target`` (a host, or a platform that owns the host)."""
    h = host(verdict)
    if h is None:
        return False
    return h == target or target in platforms_of(h, platforms)


def column_of(h: str, platforms: Iterable[Platform]) -> tuple[str, str]:
    """The matrix column a host falls in: (key, label); a platform's hosts share one."""
    for p in platforms:
        if p.owns(h):
            return p.name, p.display_name
    return h, h


# -- the overview matrix -------------------------------------------------------------------------


@dataclass
class HostVerdict:
    host: str
    verdict: str
    method: str | None
    uid: str
    when: str


@dataclass
class Cell:
    """The latest verdict of each host of one column on one network."""

    hosts: list[HostVerdict] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        seen = {h.verdict for h in self.hosts}
        return next((v for v in SEVERITY if v in seen), "unknown")

    @property
    def blocked(self) -> int:
        return sum(h.verdict == "blocked" for h in self.hosts)

    @property
    def methods(self) -> list[str]:
        return sorted({h.method for h in self.hosts if h.verdict == "blocked" and h.method})

    @property
    def text(self) -> str:
        if len(self.hosts) == 1:
            h = self.hosts[0]
            return f"{h.verdict} ({h.method})" if h.method and h.verdict == "blocked" else h.verdict
        if self.blocked:
            return f"{self.blocked}/{len(self.hosts)} blocked"
        return f"{self.verdict} ({len(self.hosts)})"

    @property
    def latest(self) -> HostVerdict:
        """The measurement to open from the cell: the newest one of the worst verdict."""
        worst = [h for h in self.hosts if h.verdict == self.verdict]
        return max(worst, key=lambda h: h.when)


@dataclass
class Matrix:
    columns: list[tuple[str, str]]  # (key, label)
    rows: list[tuple[str, str, dict[str, Cell]]]  # (cc, asn, cells by column key)
    since: datetime | None
    until: datetime | None
    # What a bounded view left out (``bounded``): counted, and one click away.
    hidden_rows: int = 0
    hidden_columns: int = 0


def build_matrix(verdicts: Iterable[dict[str, Any]], platforms: list[Platform]) -> Matrix:
    """Country × network rows, platform/domain columns; each cell the latest verdict per host."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    first = last = None
    for v in verdicts:
        h = host(v)
        if h is None:
            continue
        key = (v["probe_cc"], v["probe_asn"], h)
        # Verdicts arrive in time order: the last one seen is the latest.
        latest[key] = v
        when = v["measurement_start_time"]
        first = when if first is None or when < first else first
        last = when if last is None or when > last else last
    columns: dict[str, str] = {}
    cells: dict[tuple[str, str], dict[str, Cell]] = defaultdict(dict)
    for (cc, asn, h), v in latest.items():
        key, label = column_of(h, platforms)
        columns[key] = label
        cell = cells[(cc, asn)].setdefault(key, Cell())
        cell.hosts.append(
            HostVerdict(
                h, v["verdict"], v["method"], v["measurement_uid"], v["measurement_start_time"]
            )
        )
    platform_keys = [p.name for p in platforms]
    ordered = sorted(
        columns.items(),
        key=lambda kv: (kv[0] not in platform_keys, -_blocked_in(cells, kv[0]), kv[1]),
    )
    rows = [(cc, asn, cells[(cc, asn)]) for cc, asn in sorted(cells)]
    return Matrix(
        columns=ordered,
        rows=rows,
        since=naive_utc(first) if first else None,
        until=naive_utc(last) if last else None,
    )


def bounded(matrix: Matrix, max_rows: int, max_columns: int, country: str | None = None) -> Matrix:
    """The part of the matrix a page can show: at most ``max_columns`` columns (platforms, then
    the most blocked domains) and ``max_rows`` networks (those with the most blocked cells in
    those columns), shown in country order; ``country`` keeps one country's networks only.

    The full matrix grows with networks × targets (500 × 200 is a 7 MB page); what a reader
    scans for is where blocking is, and every network stays one click away."""
    rows = [r for r in matrix.rows if country is None or r[0] == country]
    columns = matrix.columns[:max_columns]
    keys = [key for key, _ in columns]

    def weight(row: tuple[str, str, dict[str, Cell]]) -> tuple[int, int]:
        cells = [row[2][k] for k in keys if k in row[2]]
        return (-sum(c.blocked > 0 for c in cells), -len(cells))

    kept = sorted(rows, key=weight)[:max_rows]
    return Matrix(
        columns=columns,
        rows=sorted(kept, key=lambda r: (r[0], r[1])),
        since=matrix.since,
        until=matrix.until,
        hidden_rows=len(rows) - len(kept),
        hidden_columns=len(matrix.columns) - len(columns),
    )


def _blocked_in(cells: dict[tuple[str, str], dict[str, Cell]], column: str) -> int:
    return sum(1 for row in cells.values() if column in row and row[column].blocked)


# -- timelines ---------------------------------------------------------------------------------
# Drawn by ``censorwatch.events.timeline``, the renderer the evidence report shares; its names
# are re-exported here for the routes.


# -- network history ---------------------------------------------------------------------------


@dataclass
class TargetHistory:
    host: str
    counts: dict[str, int]
    latest: dict[str, Any]
    last_blocked: dict[str, Any] | None
    methods: list[str]
    dots: list[Dot]


def network_history(verdicts: Iterable[dict[str, Any]]) -> list[TargetHistory]:
    """Per host measured on a network: counts, latest verdict, last block, marks over time."""
    by_host: dict[str, TargetHistory] = {}
    for v in verdicts:
        h = host(v)
        if h is None:
            continue
        hist = by_host.get(h)
        if hist is None:
            hist = by_host[h] = TargetHistory(h, dict.fromkeys(SEVERITY, 0), v, None, [], [])
        hist.counts[v["verdict"]] = hist.counts.get(v["verdict"], 0) + 1
        hist.latest = v
        if v["verdict"] == "blocked":
            hist.last_blocked = v
            if v.get("method") and v["method"] not in hist.methods:
                hist.methods.append(v["method"])
        hist.dots.append(dot(v))
    return sorted(
        by_host.values(),
        key=lambda t: (SEVERITY.index(t.latest["verdict"]) if t.latest["verdict"] in SEVERITY
                       else 9, -t.counts["blocked"], t.host),
    )  # fmt: skip
