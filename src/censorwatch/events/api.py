"""``GET /api/v1/events`` and its Atom feed: block events computed from the store's verdicts,
with filters."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from censorwatch.events.feed import ATOM_TYPE, atom_feed, updated_of
from censorwatch.events.population import with_impact
from censorwatch.events.tracker import detect_events
from censorwatch.model import Event
from censorwatch.store.filters import parse_asn

router = APIRouter(prefix="/api/v1", tags=["events"])

_cache_lock = threading.Lock()
_cache: dict[tuple[int, int, str | None], list[Event]] = {}


def _events(store: Any, cc: str | None) -> list[Event]:
    """Events over the stored verdicts (of one country when ``cc`` is given); recomputed only
    when the store has grown."""
    size = store.count()
    key = (id(store), size, cc)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    filters = {"probe_cc": cc} if cc else {}
    events = detect_events(store.iter_verdicts(**filters))
    with _cache_lock:
        _cache.clear()
        _cache[key] = events
    return events


@dataclass(frozen=True)
class EventQuery:
    """The filters of ``/api/v1/events`` and its Atom feed (one definition for both)."""

    probe_cc: str | None = Query(None, pattern="^[A-Za-z]{2}$")
    probe_asn: str | None = Query(None, pattern="^(AS)?[0-9]{1,10}$")
    target: str | None = Query(None, max_length=253)
    scope: str | None = Query(None, pattern="^(network|national)$")
    status: str | None = Query(None, pattern="^(ongoing|ended)$")
    since: str | None = Query(None, description="events still active at or after (RFC 3339)")
    until: str | None = Query(None, description="events that began before (RFC 3339)")
    limit: int = Query(1000, ge=1, le=100_000)


async def _select(request: Request, q: EventQuery) -> list[Event]:
    try:
        since_n, until_n = _norm(q.since), _norm(q.until)
    except ValueError as exc:
        raise HTTPException(400, f"since/until must be RFC 3339 times: {exc}") from exc
    cc = q.probe_cc.upper() if q.probe_cc else None
    events = await run_in_threadpool(_events, request.app.state.store, cc)
    events = with_impact(events, getattr(request.app.state, "population", []))
    asn = parse_asn(q.probe_asn)
    return [
        e
        for e in events
        if (asn is None or asn in e.asns)
        and (q.target is None or e.target == q.target.lower())
        and (q.scope is None or e.scope == q.scope)
        and (q.status is None or e.status == q.status)
        and (since_n is None or e.end is None or e.end.before >= since_n)
        and (until_n is None or e.onset.before < until_n)
    ]


@router.get("/events", summary="Block events per network and national, with onset and end")
async def list_events(request: Request, q: EventQuery = Depends()) -> JSONResponse:
    started = time.perf_counter()
    picked = await _select(request, q)
    metadata = {
        "count": len(picked),
        "limit": q.limit,
        "query_time": round(time.perf_counter() - started, 4),
    }
    return JSONResponse(
        {"metadata": metadata, "results": [e.to_record() for e in picked[: q.limit]]}
    )


@router.get(
    "/events.atom",
    summary="The same events as an Atom feed (RFC 4287), with the same filters",
    response_class=Response,
    responses={200: {"content": {ATOM_TYPE: {}}}},
)
async def events_feed(request: Request, q: EventQuery = Depends()) -> Response:
    picked = await _select(request, q)
    picked.sort(key=updated_of, reverse=True)
    body = atom_feed(picked[: q.limit], str(request.url), str(request.base_url))
    return Response(body, media_type=ATOM_TYPE)


def _norm(value: str | None) -> str | None:
    """RFC 3339 in the events' own spelling, so that string order is time order."""
    if value is None:
        return None
    from censorwatch.times import canonical_time

    return canonical_time(value)
