"""``/api/v1/measurements`` and ``/api/v1/raw_measurement``, in OONI's shapes."""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from censorwatch.api.params import filters
from censorwatch.store.base import Filters, MeasurementRow
from censorwatch.times import rfc3339

router = APIRouter(prefix="/api/v1", tags=["measurements"])


def result(row: MeasurementRow, base: str) -> dict[str, Any]:
    """One OONI-style result row with the verdict fields next to it."""
    return {
        "measurement_uid": row.measurement_uid,
        "report_id": row.report_id,
        "input": row.input,
        "domain": row.domain,
        "target": row.target,
        "probe_cc": row.probe_cc,
        "probe_asn": row.probe_asn,
        "test_name": row.test_name,
        "measurement_start_time": rfc3339(row.measurement_start_time),
        "anomaly": row.verdict == "blocked",
        "confirmed": row.confirmed,
        "failure": row.verdict == "unknown",
        "verdict": row.verdict,
        "method": row.method,
        "confidence": row.confidence,
        "fingerprint": row.fingerprint,
        "evidence": row.evidence,
        "layers": row.layers,
        "signature": row.signature,
        "source": row.source,
        "measurement_url": f"{base}api/v1/raw_measurement?measurement_uid={row.measurement_uid}",
    }


@router.get("/measurements", summary="Search measurements and their verdicts")
async def list_measurements(
    request: Request,
    f: Filters = Depends(filters),
    limit: int = Query(100, ge=1, le=10000),
    offset: int = Query(0, ge=0, le=100_000_000),
    order: str = Query("desc", pattern="^(asc|desc)$"),
) -> JSONResponse:
    store = request.app.state.store
    started = time.perf_counter()
    rows = await run_in_threadpool(store.rows, f, limit=limit, offset=offset, order=order)
    count = await run_in_threadpool(store.count, f)
    base = str(request.base_url)
    next_url = None
    if offset + limit < count:
        next_url = str(request.url.include_query_params(offset=offset + limit, limit=limit))
    metadata = {
        "count": count,
        "current_page": offset // limit + 1,
        "limit": limit,
        "offset": offset,
        "pages": math.ceil(count / limit),
        "next_url": next_url,
        "query_time": round(time.perf_counter() - started, 4),
    }
    return JSONResponse({"metadata": metadata, "results": [result(r, base) for r in rows]})


@router.get("/raw_measurement", summary="The stored measurement, as submitted (scrubbed)")
async def raw_measurement(
    request: Request, measurement_uid: str = Query(..., min_length=1, max_length=128)
) -> Response:
    """Served as the bytes the archive holds (canonical JSON), without decoding them: the
    cost of a request is the size of the measurement, whatever its shape."""
    pipeline = request.app.state.pipeline
    raw = await run_in_threadpool(pipeline.raw_bytes, measurement_uid)
    if raw is None:
        return JSONResponse({"error": "measurement not found"}, status_code=404)
    return Response(raw, media_type="application/json")
