"""``/api/v1/aggregation``: verdict counts grouped by up to two axes, as JSON or CSV."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from censorwatch.api.params import filters
from censorwatch.model import METHODS
from censorwatch.store.base import VERDICTS, Filters

router = APIRouter(prefix="/api/v1", tags=["aggregation"])

AXIS_PATTERN = "^(measurement_start_day|probe_cc|probe_asn|domain|method|test_name)$"
COUNT_COLUMNS = (
    "measurement_count",
    *(f"{v}_count" for v in VERDICTS),
    "anomaly_count",
    "confirmed_count",
)


def to_csv(rows: list[dict[str, Any]], axes: list[str]) -> str:
    """One line per bucket; per-method counts become ``<method>_count`` columns."""
    methods = list(METHODS)
    for row in rows:
        methods.extend(m for m in row["method_counts"] if m not in methods)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*axes, *COUNT_COLUMNS, *(f"{m}_count" for m in methods)])
    for row in rows:
        writer.writerow(
            [
                *(row[a] if row[a] is not None else "" for a in axes),
                *(row[c] for c in COUNT_COLUMNS),
                *(row["method_counts"].get(m, 0) for m in methods),
            ]
        )
    return out.getvalue()


@router.get("/aggregation", summary="Verdict counts by country, network, day, domain, method")
async def aggregation(
    request: Request,
    f: Filters = Depends(filters),
    axis_x: str | None = Query(None, pattern=AXIS_PATTERN),
    axis_y: str | None = Query(None, pattern=AXIS_PATTERN),
    time_grain: str = Query("day", pattern="^(hour|day|week|month)$"),
    format: str = Query("JSON", pattern="^(JSON|CSV|json|csv)$"),
) -> Response:
    if axis_x is not None and axis_x == axis_y:
        raise HTTPException(400, "axis_x and axis_y must differ")
    axes = [a for a in (axis_x, axis_y) if a]
    store = request.app.state.store
    started = time.perf_counter()
    rows = await run_in_threadpool(store.aggregate, f, axis_x, axis_y, time_grain)
    elapsed = time.perf_counter() - started
    if format.upper() == "CSV":
        return Response(to_csv(rows, axes), media_type="text/csv; charset=utf-8")
    body: dict[str, Any] = {
        "v": 0,
        "dimension_count": len(axes),
        "db_stats": {"query_time": round(elapsed, 4), "row_count": len(rows)},
    }
    if axes:
        body["result"] = rows
    else:
        empty = {c: 0 for c in COUNT_COLUMNS} | {"method_counts": {}}
        body["result"] = rows[0] if rows else empty
    return Response(msgspec.json.encode(body), media_type="application/json")
