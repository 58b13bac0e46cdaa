"""Build the HTTP application: one FastAPI app that includes each stage's router.

A stage adds endpoints by listing its module in ``ROUTERS`` (the module exposes ``router``),
or a caller passes ``extra_routers``. Routes reach shared objects through ``request.app.state``:
``store`` (the ``Store``), ``pipeline`` (raw lookups, ``on_accepted`` hooks), ``collector``
(None for a read-only API) and ``metrics``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from censorwatch.collector.metrics import Metrics
from censorwatch.collector.pipeline import Pipeline
from censorwatch.collector.service import Collector

ROUTERS: list[str] = [
    "censorwatch.collector.routes",
    "censorwatch.api.measurements",
    "censorwatch.api.aggregation",
    "censorwatch.api.ops",
    "censorwatch.events.api",
    "censorwatch.web.routes",
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
    for name in ROUTERS:
        app.include_router(importlib.import_module(name).router)
    for router in extra_routers:
        app.include_router(router)
    return app
