"""OONI's collector protocol over HTTP: open a report, submit measurements, close it."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from censorwatch.collector.service import Collector, Unavailable
from censorwatch.collector.validate import Invalid, read_body

router = APIRouter(tags=["collector"])

_OPEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["test_name", "probe_cc", "probe_asn"],
    "properties": {
        "test_name": {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"},
        "probe_cc": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "probe_asn": {"type": "string", "pattern": "^AS[0-9]{1,10}$"},
        "format": {"type": "string", "enum": ["json"]},
        "software_name": {"type": "string"},
        "software_version": {"type": "string"},
        "test_version": {"type": "string"},
        "test_start_time": {"type": "string"},
        "data_format_version": {"type": "string"},
    },
}
_SUBMIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "content"],
    "properties": {
        "format": {"type": "string", "enum": ["json"]},
        "content": {
            "type": "object",
            "description": "An OONI data-format measurement.",
            "required": ["test_name", "probe_cc", "probe_asn", "measurement_start_time"],
        },
    },
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _collector(request: Request) -> Collector:
    collector = request.app.state.collector
    if collector is None:
        raise Unavailable("this server does not accept submissions")
    return collector


def _refuse(request: Request, exc: Invalid | Unavailable) -> JSONResponse:
    collector = request.app.state.collector
    status = exc.status if isinstance(exc, Invalid) else 503
    if collector is not None:
        collector.metrics.rejections.labels(str(status)).inc()
        collector.metrics.submissions.labels("rejected" if status < 500 else "failed").inc()
    return _error(status, str(exc))


@router.post(
    "/report",
    summary="Open a report (OONI collector protocol)",
    openapi_extra=_json_body(_OPEN_SCHEMA),
    responses={400: {"description": "malformed request"}},
)
async def open_report(request: Request) -> JSONResponse:
    try:
        collector = _collector(request)
        body = await read_body(request, 64 * 1024)
        return JSONResponse(collector.open_report(body))
    except (Invalid, Unavailable) as exc:
        return _refuse(request, exc)


@router.post(
    "/report/{report_id}",
    summary="Submit one measurement to an open report",
    openapi_extra=_json_body(_SUBMIT_SCHEMA),
    responses={
        400: {"description": "invalid measurement"},
        404: {"description": "unknown report"},
        413: {"description": "body too large"},
        503: {"description": "storage unavailable; retry later"},
    },
)
async def submit(report_id: str, request: Request) -> JSONResponse:
    try:
        collector = _collector(request)
        collector.report(report_id)  # refuse unknown reports before reading the body
        body = await read_body(request, collector.max_body)
        client = request.client.host if request.client else None
        pending = await run_in_threadpool(collector.prepare, report_id, body, client)
        outcome = await asyncio.wrap_future(collector.submit(pending))
    except (Invalid, Unavailable) as exc:
        return _refuse(request, exc)
    collector.metrics.submissions.labels("stored" if outcome.stored else "duplicate").inc()
    return JSONResponse({"measurement_uid": outcome.measurement_uid})


@router.post(
    "/report/{report_id}/close",
    summary="Close a report",
    responses={404: {"description": "unknown report"}},
)
async def close_report(report_id: str, request: Request) -> JSONResponse:
    """Reports are self-certifying, so closing only confirms the report is ours."""
    try:
        _collector(request).report(report_id)
    except (Invalid, Unavailable) as exc:
        return _refuse(request, exc)
    return JSONResponse({})
