"""``/health`` for load balancers and ``/metrics`` for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness and a summary of what is stored")
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        count = await run_in_threadpool(state.store.count)
    except Exception as exc:
        return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
    collector = state.collector
    writing = collector is not None and collector.writer.running
    body = {
        "status": "ok" if collector is None or writing else "degraded",
        "measurements": count,
        "accepting_submissions": writing,
    }
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics.stored.set(await run_in_threadpool(state.store.count))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
