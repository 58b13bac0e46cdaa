"""The explorer's pages under ``/explorer`` (and ``/`` redirecting there), on the API's store.

Routes are plain functions (FastAPI runs them in its thread pool) that read the same ``Store``
the JSON API reads, shape it with ``views``/``steps`` and render a Jinja2 template. Nothing is
loaded from another site: the CSS and JS come from ``/explorer/static``.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from censorwatch.events.platforms import Platform, load_platforms
from censorwatch.events.stored import REBUILD_HINT
from censorwatch.model import METHODS, Event
from censorwatch.store.base import REPORT_FAILURES, VERDICTS, EventFilters, Filters
from censorwatch.store.filters import FilterError, parse_asn, parse_cc, parse_filters
from censorwatch.times import naive_utc, utcnow
from censorwatch.web import locations as censor_places
from censorwatch.web import people, views
from censorwatch.web import steps as steps_mod
from censorwatch.web import workarounds as still_works

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

PAGE_SIZE = 50
#: How far back the overview matrix and a network's history look from the newest measurement.
MATRIX_WINDOW = timedelta(days=2)
#: The overview's matrix shows the networks with the most blocking (``views.bounded``); one
#: country's page shows all of its networks, up to the second bound.
OVERVIEW_ROWS, OVERVIEW_COLUMNS = 60, 24
COUNTRY_ROWS, COUNTRY_COLUMNS = 400, 60
HISTORY_WINDOW = timedelta(days=30)
#: Upper bound on verdicts one page reads, whatever the store holds.
MAX_VERDICTS = 200_000
STATIC = {
    "explorer.css": "text/css; charset=utf-8",
    "explorer.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("censorwatch.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["t"] = views.show_time
    env.filters["tm"] = lambda v: views.show_time(v, seconds=False)
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
    return env


@cache
def _platforms() -> list[Platform]:
    return load_platforms()


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def not_found(what: str) -> HTMLResponse:
    return render("not_found.html", status=404, title="Not found", what=what)


def _limited(verdicts: Any) -> Any:
    for i, v in enumerate(verdicts):
        if i >= MAX_VERDICTS:
            return
        yield v


def _newest(store: Any, f: Filters) -> datetime | None:
    rows = store.query(f, limit=1, offset=0, order="desc")
    return naive_utc(rows[0]["measurement_start_time"]) if rows else None


# -- pages -------------------------------------------------------------------------------------


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/explorer", status_code=307)


@router.get("/explorer/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    body = (resources.files("censorwatch.web") / "static" / name).read_bytes()
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=STATIC[name], headers=headers)


def _latest_matrix(store: Any) -> tuple[datetime | None, views.Matrix | None]:
    """The overview's matrix over the window before the newest measurement."""
    newest = _newest(store, Filters())
    if newest is None:
        return None, None
    verdicts = _limited(store.iter_verdicts(since=newest - MATRIX_WINDOW))
    return newest, views.build_matrix(verdicts, _platforms())


_matrix = views.StoreCache(_latest_matrix)


@router.get("/explorer")
def overview(request: Request, probe_cc: str | None = None) -> HTMLResponse:
    """Events and the latest verdicts; ``?probe_cc=PK`` narrows both to one country."""
    store = request.app.state.store
    platforms = _platforms()
    try:
        country = parse_cc(probe_cc)
    except FilterError as e:
        return render("not_found.html", status=400, title="Bad request", what=str(e))
    stored = views.all_events(store)
    events = views.ordered_events(_with_impact(request, stored or []))
    if country is not None:
        events = [e for e in events if e.cc == country]
    newest, matrix = _matrix.get(store)
    if matrix is not None:
        rows, columns = (
            (OVERVIEW_ROWS, OVERVIEW_COLUMNS)
            if country is None
            else (COUNTRY_ROWS, COUNTRY_COLUMNS)
        )
        matrix = views.bounded(matrix, rows, columns, country)
    return render(
        "overview.html",
        title="Overview" if country is None else f"Overview: {country}",
        events=_grouped(events, platforms),
        events_hint=None if stored is not None else REBUILD_HINT,
        matrix=matrix,
        country=country,
        total=store.count(),
        newest=newest,
    )


def _with_impact(request: Request, events: list[Event]) -> list[Event]:
    """National events with the users on their networks, when the app has estimates."""
    from censorwatch.events.population import with_impact

    return with_impact(events, getattr(request.app.state, "population", []))


def _events_of(request: Request, query: EventFilters | None = None) -> list[Event]:
    """The stored events (matching ``query``), with their impact and the people's reports
    around their onsets; none if never built."""
    from censorwatch.events.records import with_reports

    store = request.app.state.store
    return _with_impact(request, with_reports(store.stored_events(query), store, _platforms()))


def _event_item(
    e: Event, platforms: list[Platform], details: list[Event] | None = None
) -> dict[str, Any]:
    from censorwatch.events.population import impact_line

    return {
        "impact": impact_line(e.impact) if isinstance(e.impact, dict) else None,
        "event": e,
        "headline": views.headline(e, platforms),
        "methods": views.methods_text(e),
        "period": views.period_text(e),
        "details": [(d, views.short_label(d, platforms)) for d in details or []],
    }


def _grouped(events: list[Event], platforms: list[Platform]) -> list[dict[str, Any]]:
    ordered = views.ordered_events(events)
    return [_event_item(t, platforms, d) for t, d in views.group_events(ordered, platforms)]


def _target_verdicts(
    store: Any, event: Event, start: datetime, end: datetime, platforms: list[Platform]
) -> list[dict[str, Any]]:
    """The verdicts about an event's target in its country and window, in time order.

    The domains measured there come first from one aggregation; only the target's are read.
    """
    window = Filters(probe_cc=event.cc, since=start, until=end)
    domains = [
        r["domain"]
        for r in store.aggregate(window, "domain", None)
        if r["domain"] and views.belongs({"target": r["domain"]}, event.target, platforms)
    ]
    hosts: dict[str | None, bool] = {}  # host -> about the target (few hosts, many verdicts)
    out = []
    for d in domains:
        for v in store.iter_verdicts(probe_cc=event.cc, domain=d, since=start, until=end):
            h = views.host(v)
            if h not in hosts:
                hosts[h] = h is not None and views.belongs(v, event.target, platforms)
            if hosts[h]:
                out.append(v)
    return sorted(out, key=lambda v: (v["measurement_start_time"], v["measurement_uid"]))


@router.get("/explorer/events/{event_id}")
def event_page(request: Request, event_id: str) -> HTMLResponse:
    store = request.app.state.store
    platforms = _platforms()
    events = _events_of(request)
    event = next((e for e in events if e.event_id == event_id), None)
    if event is None:
        return not_found(f"event {event_id}")
    newest = _newest(store, Filters(probe_cc=event.cc))
    start, end = views.event_window(event, newest)
    by_asn: dict[str, list[dict[str, Any]]] = {}
    for v in _limited(_target_verdicts(store, event, start, end, platforms)):
        by_asn.setdefault(v["probe_asn"], []).append(v)
    asns = list(event.asns) + sorted(a for a in by_asn if a not in event.asns)
    rows = [
        views.Row(
            label=f"{asn}{'' if asn in event.asns else ' (not blocked)'}",
            href=f"/explorer/networks/{asn}",
            dots=[views.dot(v) for v in by_asn.get(asn, [])],
        )
        for asn in asns
    ]
    parts = [e for e in events if views.contains(event, e, platforms)]
    part_of = [e for e in events if views.contains(e, event, platforms)]
    if event.scope == "network":
        bands = views.bracket_bands(event, asns.index(event.asns[0]))
    else:
        # The national brackets span every row; each network's own brackets sit on its row.
        bands = views.bracket_bands(event)
        for part in parts:
            if part.scope == "network" and part.target == event.target:
                bands += views.bracket_bands(part, asns.index(part.asns[0]))
    evidence = []
    for uid in event.evidence:
        row = store.get(uid)
        if row is not None:
            evidence.append(row)
    return render(
        "event.html",
        title=views.headline(event, platforms),
        item=_event_item(event, platforms),
        target=views.target_name(event.target, platforms),
        event=event,
        timeline=views.timeline_svg(rows, start, end, bands=bands),
        evidence=evidence,
        parts=[_event_item(e, platforms) for e in views.ordered_events(parts)],
        part_of=[_event_item(e, platforms) for e in views.ordered_events(part_of)],
        record=event.to_record(),
        workarounds=still_works.of_event(event),
        places=censor_places.of_event(event),
    )


def _form_filters(params: dict[str, str]) -> tuple[Filters, str | None]:
    """The list's filters from the query string; a bad value yields an error to show."""
    try:
        return parse_filters({k: params.get(k) for k in FORM_FIELDS}), None
    except FilterError as exc:
        return Filters(), str(exc)


FORM_FIELDS = ("probe_cc", "probe_asn", "domain", "verdict", "method", "since", "until")


@router.get("/explorer/measurements")
def measurements(request: Request) -> HTMLResponse:
    store = request.app.state.store
    params = {k: request.query_params.get(k, "") for k in FORM_FIELDS}
    f, error = _form_filters(params)
    try:
        page = max(1, min(int(request.query_params.get("page", "1")), 1_000_000))
    except ValueError:
        page = 1
    rows: list[dict[str, Any]] = []
    count = 0
    if error is None:
        count = store.count(f)
        rows = store.query(f, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, math.ceil(count / PAGE_SIZE))
    kept = {k: v for k, v in params.items() if v}

    def page_url(n: int) -> str:
        return "/explorer/measurements?" + urlencode({**kept, "page": n})

    api_query = urlencode({**kept, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE})
    return render(
        "measurements.html",
        status=400 if error else 200,
        title="Measurements",
        params=params,
        error=error,
        rows=rows,
        count=count,
        page=page,
        pages=pages,
        prev_url=page_url(page - 1) if page > 1 else None,
        next_url=page_url(page + 1) if page < pages else None,
        api_url="/api/v1/measurements?" + api_query,
        verdicts=VERDICTS,
        methods=METHODS,
    )


@router.get("/explorer/measurements/{measurement_uid}")
def measurement(request: Request, measurement_uid: str) -> HTMLResponse:
    store = request.app.state.store
    row = store.get(measurement_uid) if len(measurement_uid) <= 128 else None
    if row is None:
        return not_found(f"measurement {measurement_uid}")
    try:
        raw = request.app.state.pipeline.raw(measurement_uid)
    except Exception:  # a missing or damaged archive segment must not hide the verdict
        log.warning("raw measurement %s unreadable", measurement_uid, exc_info=True)
        raw = None
    platforms = _platforms()
    events = [e for e in _events_of(request) if measurement_uid in e.evidence]
    return render(
        "measurement.html",
        title=f"{row['input'] or row['domain'] or measurement_uid} on {row['probe_asn']}",
        m=row,
        evidence=json.loads(row["evidence"]),
        layers=json.loads(row["layers"]),
        steps=steps_mod.steps(raw) if raw else None,
        raw_available=raw is not None,
        raw_url="/api/v1/raw_measurement?" + urlencode({"measurement_uid": measurement_uid}),
        events=_grouped(events, platforms),
        workarounds=still_works.of_row(row),
        located=censor_places.of_row(row),
    )


@router.get("/explorer/networks/{asn}")
def network(request: Request, asn: str) -> HTMLResponse:
    store = request.app.state.store
    try:
        asn = parse_asn(asn) or ""
    except FilterError:
        return not_found(f"network {asn}")
    newest = _newest(store, Filters(probe_asn=asn))
    if newest is None:
        return not_found(f"network {asn}")
    start = newest - HISTORY_WINDOW
    verdicts = list(_limited(store.iter_verdicts(probe_asn=asn, since=start)))
    history = views.network_history(verdicts)
    first = min((d[0] for t in history for d in t.dots), default=start)
    rows = [
        views.Row(
            label=t.host,
            href="/explorer/measurements?" + urlencode({"probe_asn": asn, "domain": t.host}),
            dots=t.dots,
        )
        for t in history
    ]
    countries = sorted({v["probe_cc"] for v in verdicts})
    platforms = _platforms()
    events = _events_of(request, EventFilters(asn=asn))
    return render(
        "network.html",
        title=f"Network {asn}",
        asn=asn,
        countries=countries,
        history=history,
        timeline=views.timeline_svg(rows, first, newest + timedelta(minutes=1)),
        events=_grouped(events, platforms),
        workarounds=still_works.of_network(
            views.ordered_events(events), lambda t: views.target_name(t, platforms)
        ),
        since=first,
        newest=newest,
        total=store.count(Filters(probe_asn=asn)),
        reports=people.network_reports(store, asn, naive_utc(utcnow()), history, platforms),
    )


@router.get("/explorer/report")
def report_form(sent: str | None = None, target: str | None = None) -> HTMLResponse:
    """The plain form people report a target with; it posts to ``POST /api/v1/reports``
    (no script, no cookie: with nothing a session could ride on, there is no CSRF to guard)."""
    from censorwatch.collector.people_reports import MAX_NOTE_BYTES, MAX_TARGET_CHARS

    return render(
        "report.html",
        title="Report a block",
        sent=sent == "1",
        target=(target or "")[:MAX_TARGET_CHARS],
        platforms=_platforms(),
        failures=REPORT_FAILURES,
        max_note=MAX_NOTE_BYTES,
        max_target=MAX_TARGET_CHARS,
    )
