"""What the explorer shows, computed from verdict records: headlines, the matrix, timelines.

Pure functions over the store's verdict records (``Store.iter_verdicts``) and event records, so
every page can be checked against the same data the API serves.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from markupsafe import Markup, escape

from censorwatch.events.platforms import Platform, host_of, platforms_of
from censorwatch.model import Event

T = TypeVar("T")

#: Most severe first: a cell or a row takes the colour of its worst verdict.
SEVERITY: tuple[str, ...] = ("blocked", "down", "unknown", "ok")


def parse_rfc3339(value: str | datetime) -> datetime:
    """A stored time (``2024-02-17T20:00:10Z`` or a naive UTC datetime) as naive UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    text = value.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def show_time(value: str | datetime | None, *, seconds: bool = True) -> str:
    """A time as people read it, always labelled UTC."""
    if value is None or value == "":
        return "—"
    when = parse_rfc3339(value)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


# -- events -------------------------------------------------------------------------------------


class StoreCache(Generic[T]):
    """A value derived from the whole store, recomputed once the store has grown, but at most
    once per ``min_interval`` seconds: a busy collector grows the store all the time."""

    def __init__(self, compute: Callable[[Any], T], min_interval: float = 10.0) -> None:
        self._compute = compute
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._at = 0.0
        self._value: T | None = None

    def get(self, store: Any) -> T:
        key = (id(store), store.count())
        now = time.monotonic()
        with self._lock:
            same_store = self._key is not None and self._key[0] == key[0]
            fresh = self._key == key or now - self._at < self._min_interval
            if same_store and fresh:
                return self._value  # type: ignore[return-value]
        value = self._compute(store)
        with self._lock:
            self._key, self._at, self._value = key, now, value
        return value


def all_events(store: Any) -> list[Event]:
    """Events over every stored verdict, as ``GET /api/v1/events`` computes them."""
    from censorwatch.events.tracker import detect_events

    return detect_events(store.iter_verdicts())


def ordered_events(events: Iterable[Event]) -> list[Event]:
    """Ongoing before ended; national before network; latest onset first."""
    ranked = sorted(events, key=lambda e: e.onset.before, reverse=True)
    return sorted(ranked, key=lambda e: (e.status != "ongoing", e.scope != "national"))


def _overlaps(a: Event, b: Event) -> bool:
    a_end = a.end.before if a.end else "9999"
    b_end = b.end.before if b.end else "9999"
    return a.onset.before <= b_end and b.onset.before <= a_end


def _covers(target: str, host: str, platforms: Iterable[Platform]) -> bool:
    """Whether ``target`` is ``host`` itself or a platform that owns it."""
    return target == host or any(p.name == target and p.owns(host) for p in platforms)


def contains(outer: Event, inner: Event, platforms: Iterable[Platform]) -> bool:
    """Whether ``inner`` is a detail of ``outer``: one of its hosts, or one of its networks."""
    if outer.event_id == inner.event_id or outer.cc != inner.cc or not _overlaps(outer, inner):
        return False
    if not set(inner.asns) <= set(outer.asns):
        return False
    if outer.scope == inner.scope:
        return outer.target != inner.target and _covers(outer.target, inner.target, platforms)
    return outer.scope == "national" and _covers(outer.target, inner.target, platforms)


def group_events(events: list[Event], platforms: list[Platform]) -> list[tuple[Event, list[Event]]]:
    """Top-level events (in the given order), each with the events that are its details.

    "X blocked in PK on 2 networks" stands for "x.com blocked on AS17557" and the rest, so a
    reader sees each block once and can open its parts.
    """
    tops = [e for e in events if not any(contains(o, e, platforms) for o in events)]
    return [(t, [e for e in events if contains(t, e, platforms)]) for t in tops]


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
    start = parse_rfc3339(event.onset.after or event.onset.before)
    if event.end is not None:
        end = parse_rfc3339(event.end.before)
    else:
        end = max(newest or start, parse_rfc3339(event.onset.before))
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
        since=parse_rfc3339(first) if first else None,
        until=parse_rfc3339(last) if last else None,
    )


def _blocked_in(cells: dict[tuple[str, str], dict[str, Cell]], column: str) -> int:
    return sum(1 for row in cells.values() if column in row and row[column].blocked)


# -- timelines (inline SVG) ----------------------------------------------------------------------


@dataclass
class Row:
    """One line of a timeline: a label, where it links, and its measurements."""

    label: str
    href: str | None
    dots: list[tuple[datetime, str, str, str]]  # (when, verdict, measurement_uid, tooltip)


@dataclass
class Band:
    """A shaded stretch: an onset or end bracket, across all rows or on one (``row``)."""

    start: datetime
    end: datetime
    css: str
    title: str
    row: int | None = None


def bracket_bands(event: Event, row: int | None = None) -> list[Band]:
    """An event's onset bracket, and its end bracket once it has ended."""
    where = f" on {event.asns[0]}" if row is not None and event.scope == "network" else ""
    bands = [
        Band(
            parse_rfc3339(event.onset.after or event.onset.before),
            parse_rfc3339(event.onset.before),
            "onset",
            f"onset{where}: after {event.onset.after or 'the first measurement'}, "
            f"no later than {event.onset.before}",
            row,
        )
    ]
    if event.end is not None:
        bands.append(
            Band(
                parse_rfc3339(event.end.after),
                parse_rfc3339(event.end.before),
                "end",
                f"end{where}: after {event.end.after}, no later than {event.end.before}",
                row,
            )
        )
    return bands


def _ticks(start: datetime, end: datetime, count: int = 6) -> list[datetime]:
    span = (end - start) / count
    return [start + span * i for i in range(count + 1)]


def timeline_svg(
    rows: list[Row],
    start: datetime,
    end: datetime,
    *,
    bands: Iterable[Band] = (),
    link: str = "/explorer/measurements/",
    width: int = 960,
) -> Markup:
    """Per row, one mark per measurement coloured by verdict over ``start``..``end``.

    Every text is escaped here; each mark links to its measurement and names it in a tooltip.
    """
    label_w, row_h, top, bottom = 150, 24, 10, 34
    plot_w = width - label_w - 10
    height = top + row_h * max(len(rows), 1) + bottom
    if end <= start:
        end = start + timedelta(hours=1)
    total = (end - start).total_seconds()

    def x(when: datetime) -> float:
        frac = (when - start).total_seconds() / total
        return label_w + max(0.0, min(1.0, frac)) * plot_w

    binned = [_bin(r.dots, x, MIN_MARK) for r in rows]
    counts = [len(b) for b in binned] or [0]
    mark_w = max(MIN_MARK, min(10.0, plot_w / max(max(counts), 1) * 0.8))
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="timeline of measurements by verdict" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for band in bands:
        x0, x1 = x(band.start), x(band.end)
        if band.row is None:
            y0, h = top - 4, row_h * len(rows) + 8
        else:
            y0, h = top + band.row * row_h + 1, row_h - 2
        out.append(
            f'<rect class="band {escape(band.css)}" x="{x0:.1f}" y="{y0}" '
            f'width="{max(x1 - x0, 2):.1f}" height="{h}">'
            f"<title>{escape(band.title)}</title></rect>"
        )
    for i, (row, dots) in enumerate(zip(rows, binned, strict=True)):
        y = top + i * row_h
        out.append(
            f'<line class="row-rule" x1="{label_w}" x2="{width - 10}" '
            f'y1="{y + row_h / 2}" y2="{y + row_h / 2}"/>'
        )
        short = row.label if len(row.label) <= 22 else row.label[:21] + "…"
        text = (
            f'<text class="row-label" x="{label_w - 8}" y="{y + row_h / 2 + 4}">'
            f"<title>{escape(row.label)}</title>{escape(short)}</text>"
        )
        if row.href:
            text = f'<a href="{escape(row.href)}">{text}</a>'
        out.append(text)
        for when, verdict, uid, tip in dots:
            css = verdict if verdict in SEVERITY else "unknown"
            out.append(
                f'<a href="{escape(link + uid)}"><rect class="mark v-{css}" '
                f'x="{x(when) - mark_w / 2:.1f}" y="{y + 4}" width="{mark_w:.1f}" '
                f'height="{row_h - 8}"><title>{escape(tip)}</title></rect></a>'
            )
    axis_y = top + row_h * max(len(rows), 1) + 4
    out.append(f'<line class="axis" x1="{label_w}" x2="{width - 10}" y1="{axis_y}" y2="{axis_y}"/>')
    fmt = "%m-%d %H:%M" if total <= 3 * 86400 else "%Y-%m-%d"
    ticks = _ticks(start, end)
    for i, tick in enumerate(ticks):
        tx = x(tick)
        anchor = "start" if i == 0 else "end" if i == len(ticks) - 1 else "middle"
        out.append(
            f'<line class="tick" x1="{tx:.1f}" x2="{tx:.1f}" y1="{axis_y}" y2="{axis_y + 4}"/>'
            f'<text class="tick-label" x="{tx:.1f}" y="{axis_y + 16}" text-anchor="{anchor}">'
            f"{escape(tick.strftime(fmt))}</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))


#: Narrowest mark (px); measurements closer than this share one mark.
MIN_MARK = 2.0


def _bin(
    dots: list[tuple[datetime, str, str, str]], x: Callable[[datetime], float], width: float
) -> list[tuple[datetime, str, str, str]]:
    """One mark per ``width`` pixels: the most severe measurement there stands for the others,
    and its tooltip counts them, so a long history stays a small page."""
    groups: list[list[tuple[datetime, str, str, str]]] = []
    first_x = 0.0
    for d in sorted(dots, key=lambda d: d[0]):
        here = x(d[0])
        if groups and here - first_x < width:
            groups[-1].append(d)
        else:
            groups.append([d])
            first_x = here
    if len(groups) == len(dots):
        return dots
    out = []
    for group in groups:
        if len(group) == 1:
            out.append(group[0])
            continue
        rank = {v: i for i, v in enumerate(SEVERITY)}
        worst = min(group, key=lambda d: (rank.get(d[1], 2), d[0]))
        tally = ", ".join(
            f"{sum(d[1] == v for d in group)} {v}"
            for v in SEVERITY
            if any(d[1] == v for d in group)
        )
        span = f"{show_time(group[0][0])} – {show_time(group[-1][0])}"
        out.append((worst[0], worst[1], worst[2], f"{len(group)} measurements {span}: {tally}"))
    return out


def dot(v: dict[str, Any]) -> tuple[datetime, str, str, str]:
    """A verdict record as a timeline mark with a readable tooltip."""
    what = v["verdict"] + (f" ({v['method']})" if v.get("method") else "")
    when = v["measurement_start_time"]
    # Stored times are already RFC 3339 UTC ("…T…Z"): reword them without a strftime per mark.
    shown = when.replace("T", " ").replace("Z", " UTC") if when.endswith("Z") else show_time(when)
    tip = f"{shown} {host(v) or ''}: {what}"
    return parse_rfc3339(when), v["verdict"], v["measurement_uid"], tip


# -- network history ---------------------------------------------------------------------------


@dataclass
class TargetHistory:
    host: str
    counts: dict[str, int]
    latest: dict[str, Any]
    last_blocked: dict[str, Any] | None
    methods: list[str]
    dots: list[tuple[datetime, str, str, str]]


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
