"""The one timeline drawing: verdicts over time, one row per network or host, as inline SVG.

The explorer's event and network pages and the evidence bundle's ``report.html`` both draw
their timelines here, so a block looks the same wherever it is shown. The geometry is computed
in Python (``layout``) and drawn by one autoescaping Jinja2 template
(``templates/timeline.svg``): every label and tooltip is escaped, and the output is a pure
function of the input (numbers formatted one way, no clock, no locale), which the report's
byte-for-byte re-rendering relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from markupsafe import Markup

from censorwatch.events.platforms import host_of
from censorwatch.model import Event
from censorwatch.times import naive_utc

#: Most severe first: a shared mark takes the colour of its worst verdict.
SEVERITY: tuple[str, ...] = ("blocked", "down", "unknown", "ok")

#: Narrowest mark (px); measurements closer than this share one mark.
MIN_MARK = 2.0

#: (when, verdict, measurement_uid, tooltip): one measurement on a row.
Dot = tuple[datetime, str, str, str]

#: ``bar``: a slim rectangle per mark (long, dense histories); ``dot``: a circle per mark
#: (few measurements, each meant to be seen on its own, as in a printed report).
MarkShape = Literal["bar", "dot"]

LABEL_WIDTH, ROW_HEIGHT, TOP, BOTTOM, RIGHT = 150, 24, 10, 34, 10
MAX_LABEL = 22
TICKS = 6


@dataclass
class Row:
    """One line of a timeline: a label, where it links, and its measurements."""

    label: str
    href: str | None
    dots: list[Dot]


@dataclass
class Band:
    """A shaded stretch: an onset or end bracket, across all rows or on one (``row``)."""

    start: datetime
    end: datetime
    css: str
    title: str
    row: int | None = None


def shown_time(when: datetime) -> str:
    """A time as the tooltips print it, always labelled UTC."""
    return naive_utc(when).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- marks and bands from records ---------------------------------------------------------------


def mark_tip(shown: str, host: str | None, verdict: str, method: str | None) -> str:
    """A mark's tooltip: "2024-02-17 08:00:10 UTC x.com: blocked (http.reset)"."""
    what = verdict + (f" ({method})" if method else "")
    return f"{shown} {host or ''}: {what}"


def dot(v: dict[str, Any]) -> Dot:
    """A verdict record as a timeline mark with a readable tooltip."""
    when = v["measurement_start_time"]
    # Stored times are already RFC 3339 UTC ("…T…Z"): reword them without a strftime per mark.
    shown = (
        when.replace("T", " ").replace("Z", " UTC")
        if when.endswith("Z")
        else shown_time(naive_utc(when))
    )
    tip = mark_tip(shown, host_of(v.get("target"), v.get("input")), v["verdict"], v.get("method"))
    return naive_utc(when), v["verdict"], v["measurement_uid"], tip


def bracket_band(
    kind: Literal["onset", "end"],
    after: str | None,
    before: str,
    *,
    where: str = "",
    row: int | None = None,
) -> Band:
    """The shaded band of one bracket: strictly after ``after``, no later than ``before``.

    An onset without ``after`` (the series starts blocked) is drawn as a line at ``before``.
    """
    since = after or ("the first measurement" if kind == "onset" else None)
    return Band(
        naive_utc(after or before),
        naive_utc(before),
        kind,
        f"{kind}{where}: after {since}, no later than {before}",
        row,
    )


def bracket_bands(event: Event, row: int | None = None) -> list[Band]:
    """An event's onset bracket, and its end bracket once it has ended."""
    where = f" on {event.asns[0]}" if row is not None and event.scope == "network" else ""
    bands = [bracket_band("onset", event.onset.after, event.onset.before, where=where, row=row)]
    if event.end is not None:
        bands.append(bracket_band("end", event.end.after, event.end.before, where=where, row=row))
    return bands


# -- geometry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BandBox:
    css: str
    x: str
    y: str
    width: str
    height: str
    title: str


@dataclass(frozen=True)
class Mark:
    """One drawn mark: x/y are a bar's corner or a dot's centre (``Layout.shape``)."""

    css: str
    href: str | None
    x: str
    y: str
    width: str
    height: str
    r: str
    tip: str


@dataclass(frozen=True)
class RowBox:
    label: str
    short: str
    href: str | None
    rule_y: str
    label_y: str
    marks: list[Mark]


@dataclass(frozen=True)
class Tick:
    x: str
    anchor: str
    label: str


@dataclass(frozen=True)
class Layout:
    """Everything the SVG template draws, positions already formatted as text."""

    width: int
    height: int
    shape: MarkShape
    plot_left: int
    plot_right: int
    axis_y: str
    tick_bottom: str
    tick_label_y: str
    bands: list[BandBox]
    rows: list[RowBox]
    ticks: list[Tick]


def _px(value: float) -> str:
    """A coordinate as text: one decimal, so the same input always gives the same bytes."""
    return f"{value:.1f}"


def _ticks(start: datetime, end: datetime, count: int = TICKS) -> list[datetime]:
    span = (end - start) / count
    return [start + span * i for i in range(count + 1)]


def layout(
    rows: list[Row],
    start: datetime,
    end: datetime,
    *,
    bands: Iterable[Band] = (),
    link: str | None = "/explorer/measurements/",
    width: int = 960,
    shape: MarkShape = "bar",
) -> Layout:
    """Where everything goes: rows top to bottom, time left to right over ``start``..``end``.

    Marks closer than ``MIN_MARK`` pixels share one mark (see ``bin_dots``); with ``link``
    each mark links to ``link`` + its measurement UID.
    """
    start, end = naive_utc(start), naive_utc(end)
    plot_w = width - LABEL_WIDTH - RIGHT
    height = TOP + ROW_HEIGHT * max(len(rows), 1) + BOTTOM
    if end <= start:
        end = start + timedelta(hours=1)
    total = (end - start).total_seconds()

    def x(when: datetime) -> float:
        if when.tzinfo is not None:
            when = naive_utc(when)
        frac = (when - start).total_seconds() / total
        return LABEL_WIDTH + max(0.0, min(1.0, frac)) * plot_w

    binned = [bin_dots(r.dots, x, MIN_MARK) for r in rows]
    counts = [len(b) for b in binned] or [0]
    mark_w = max(MIN_MARK, min(10.0, plot_w / max(max(counts), 1) * 0.8))
    radius = max(MIN_MARK, min(5.0, mark_w / 2))

    band_boxes = []
    for band in bands:
        x0, x1 = x(band.start), x(band.end)
        if band.row is None:
            y0, h = TOP - 4, ROW_HEIGHT * len(rows) + 8
        else:
            y0, h = TOP + band.row * ROW_HEIGHT + 1, ROW_HEIGHT - 2
        band_boxes.append(
            BandBox(band.css, _px(x0), str(y0), _px(max(x1 - x0, 2)), str(h), band.title)
        )

    row_boxes = []
    for i, (row, dots) in enumerate(zip(rows, binned, strict=True)):
        y = TOP + i * ROW_HEIGHT
        marks = []
        for when, verdict, uid, tip in dots:
            css = verdict if verdict in SEVERITY else "unknown"
            at = x(when)
            marks.append(
                Mark(
                    css=css,
                    href=link + uid if link is not None else None,
                    x=_px(at - mark_w / 2) if shape == "bar" else _px(at),
                    y=str(y + 4) if shape == "bar" else _px(y + ROW_HEIGHT / 2),
                    width=_px(mark_w),
                    height=str(ROW_HEIGHT - 8),
                    r=_px(radius),
                    tip=tip,
                )
            )
        short = row.label if len(row.label) <= MAX_LABEL else row.label[: MAX_LABEL - 1] + "…"
        row_boxes.append(
            RowBox(
                label=row.label,
                short=short,
                href=row.href,
                rule_y=_px(y + ROW_HEIGHT / 2),
                label_y=_px(y + ROW_HEIGHT / 2 + 4),
                marks=marks,
            )
        )

    axis_y = TOP + ROW_HEIGHT * max(len(rows), 1) + 4
    fmt = "%m-%d %H:%M" if total <= 3 * 86400 else "%Y-%m-%d"
    when_ticks = _ticks(start, end)
    ticks = [
        Tick(
            _px(x(tick)),
            "start" if i == 0 else "end" if i == len(when_ticks) - 1 else "middle",
            tick.strftime(fmt),
        )
        for i, tick in enumerate(when_ticks)
    ]
    return Layout(
        width=width,
        height=height,
        shape=shape,
        plot_left=LABEL_WIDTH,
        plot_right=width - RIGHT,
        axis_y=str(axis_y),
        tick_bottom=str(axis_y + 4),
        tick_label_y=str(axis_y + 16),
        bands=band_boxes,
        rows=row_boxes,
        ticks=ticks,
    )


def bin_dots(dots: list[Dot], x: Callable[[datetime], float], width: float) -> list[Dot]:
    """One mark per ``width`` pixels: the most severe measurement there stands for the others,
    and its tooltip counts them, so a long history stays a small page."""
    groups: list[list[Dot]] = []
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
    rank = {v: i for i, v in enumerate(SEVERITY)}
    out = []
    for group in groups:
        if len(group) == 1:
            out.append(group[0])
            continue
        worst = min(group, key=lambda d: (rank.get(d[1], 2), d[0]))
        tally = ", ".join(
            f"{sum(d[1] == v for d in group)} {v}"
            for v in SEVERITY
            if any(d[1] == v for d in group)
        )
        span = f"{shown_time(group[0][0])} – {shown_time(group[-1][0])}"
        out.append((worst[0], worst[1], worst[2], f"{len(group)} measurements {span}: {tally}"))
    return out


# -- drawing -----------------------------------------------------------------------------------


@cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("censorwatch.events", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env.get_template("timeline.svg")


def timeline_svg(
    rows: list[Row],
    start: datetime,
    end: datetime,
    *,
    bands: Iterable[Band] = (),
    link: str | None = "/explorer/measurements/",
    width: int = 960,
    shape: MarkShape = "bar",
) -> Markup:
    """Per row, one mark per measurement coloured by verdict (CSS classes ``mark v-<verdict>``,
    ``band onset|end``, ``row-label``, ``tick-label``: the page that embeds it styles them)."""
    drawn = layout(rows, start, end, bands=bands, link=link, width=width, shape=shape)
    return Markup(_template().render(t=drawn))
