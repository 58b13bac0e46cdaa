"""Build the HTTP application: one FastAPI app that includes each stage's router.

A stage adds endpoints by exposing a ``router`` and being listed in ``ROUTERS`` here, the one
place that knows every stage; a caller may pass ``extra_routers``. Routes reach shared objects
through ``request.app.state``:
``store`` (the ``Store``), ``pipeline`` (raw lookups, ``on_accepted`` hooks), ``collector``
(None for a read-only API) and ``metrics``.

The interactive API viewers (``/docs``, ``/redoc``) are off: FastAPI loads them from a CDN,
and nothing this app serves may pull code from another site. ``/openapi.json`` stays. Every
response carries a strict ``Content-Security-Policy`` unless its route set its own (the
explorer's pages allow their own static files).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from censorwatch.api import aggregation, measurements, ops
from censorwatch.collector import checkin, people_reports
from censorwatch.collector import routes as collector_routes
from censorwatch.collector.client_address import trusted_proxies
from censorwatch.collector.metrics import Metrics
from censorwatch.collector.pipeline import Pipeline
from censorwatch.collector.service import Collector
from censorwatch.events import api as events_api
from censorwatch.web import routes as explorer_routes

ROUTERS: list[Any] = [
    collector_routes.router,
    checkin.router,
    people_reports.router,
    measurements.router,
    aggregation.router,
    ops.router,
    events_api.router,
    explorer_routes.router,
]


#: For responses that load nothing (JSON, plain text, errors): nothing may run or be framed.
DEFAULT_SECURITY_HEADERS: dict[bytes, bytes] = {
    b"content-security-policy": b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    b"x-content-type-options": b"nosniff",
}


class SecurityHeaders:
    """ASGI middleware: adds ``DEFAULT_SECURITY_HEADERS`` that a response does not set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in DEFAULT_SECURITY_HEADERS.items() if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    pipeline: Pipeline,
    collector: Collector | None = None,
    *,
    extra_routers: Iterable[Any] = (),
    population: list[Any] | None = None,
    report_policy: people_reports.ReportPolicy | None = None,
) -> FastAPI:
    """The app over ``pipeline``'s store and archive; ``collector`` enables submissions (and
    people's reports, under ``report_policy``'s limits)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if collector is not None:
            collector.start()
        try:
            yield
        finally:
            if collector is not None:
                collector.stop()

    from censorwatch import __version__

    app = FastAPI(
        title="censorwatch",
        version=__version__,
        summary="Measurements of internet censorship, their verdicts, and aggregates.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(SecurityHeaders)
    app.state.pipeline = pipeline
    app.state.store = pipeline.store
    app.state.collector = collector
    app.state.population = population or []  # events.population.Estimates
    app.state.metrics = collector.metrics if collector is not None else Metrics()
    # Read once: a bad CENSORWATCH_TRUSTED_PROXIES stops the start, it is not ignored.
    app.state.trusted_proxies = trusted_proxies()
    app.state.people_reports = people_reports.PeopleReports(pipeline.store, report_policy)
    app.state.checkin_priorities = app.state.people_reports.priorities
    for router in ROUTERS:
        app.include_router(router)
    for router in extra_routers:
        app.include_router(router)
    return app
