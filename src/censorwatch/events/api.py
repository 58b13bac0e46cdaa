"""``GET /api/v1/events`` and its Atom feed: the store's stored events, with filters.

Events are read, never detected here: the collector keeps them current as it commits
(``events.stored``), and ``censorwatch events rebuild`` builds them for a store that has
verdicts from before (an old store, or an ingest). Such a store answers 409 and says so,
rather than an empty list that would read as "no blocks".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from censorwatch.events.feed import ATOM_TYPE, atom_feed, updated_of
from censorwatch.events.population import with_impact
from censorwatch.events.records import with_reports
from censorwatch.events.stored import REBUILD_HINT
from censorwatch.model import Event
from censorwatch.store.base import EventFilters
from censorwatch.store.filters import parse_asn

router = APIRouter(prefix="/api/v1", tags=["events"])


def events_built(store: Any) -> bool:
    """Whether the store's events can be read: built, or nothing stored to build them from."""
    return store.has_event_state() or not store.count()


def read_events(store: Any, query: EventFilters | None = None) -> list[Event]:
    """The stored events matching ``query``; ``HTTPException`` 409 when never built."""
    events = store.stored_events(query)
    if not events and not events_built(store):
        raise HTTPException(409, REBUILD_HINT)
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
    asn = parse_asn(q.probe_asn)
    try:
        query = EventFilters(
            cc=q.probe_cc.upper() if q.probe_cc else None,
            asn=asn,
            target=q.target.lower() if q.target is not None else None,
            scope=q.scope,
            status=q.status,
            since=_norm(q.since),
            until=_norm(q.until),
        )
    except ValueError as exc:
        raise HTTPException(400, f"since/until must be RFC 3339 times: {exc}") from exc
    store = request.app.state.store
    events = await run_in_threadpool(read_events, store, query)
    events = await run_in_threadpool(with_reports, events, store)  # people's reports, counted
    return with_impact(events, getattr(request.app.state, "population", []))


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
