"""Build the HTTP application: one FastAPI app that includes each stage's router.

A stage adds endpoints by exposing a ``router`` and being listed in ``ROUTERS`` here, the one
place that knows every stage; a caller may pass ``extra_routers``. Routes reach shared objects
through ``request.app.state``:
``store`` (the ``Store``), ``pipeline`` (raw lookups, ``on_accepted`` hooks), ``collector``
(None for a read-only API) and ``metrics``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from censorwatch.api import aggregation, measurements, ops
from censorwatch.collector import routes as collector_routes
from censorwatch.collector.metrics import Metrics
from censorwatch.collector.pipeline import Pipeline
from censorwatch.collector.service import Collector
from censorwatch.events import api as events_api
from censorwatch.web import routes as explorer_routes

ROUTERS: list[Any] = [
    collector_routes.router,
    measurements.router,
    aggregation.router,
    ops.router,
    events_api.router,
    explorer_routes.router,
]


def create_app(
    pipeline: Pipeline,
    collector: Collector | None = None,
    *,
    extra_routers: Iterable[Any] = (),
) -> FastAPI:
    """The app over ``pipeline``'s store and archive; ``collector`` enables submissions."""

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
    )
    app.state.pipeline = pipeline
    app.state.store = pipeline.store
    app.state.collector = collector
    app.state.metrics = collector.metrics if collector is not None else Metrics()
    for router in ROUTERS:
        app.include_router(router)
    for router in extra_routers:
        app.include_router(router)
    return app
