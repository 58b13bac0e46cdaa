"""``/api/v1/aggregation``: verdict counts grouped by up to two axes, as JSON or CSV.

Parameters and counts are OONI's (``axis_x``, ``axis_y``, ``time_grain`` with ``auto``,
``format``, ``download``; ``anomaly_count confirmed_count failure_count``) next to ours (one
``<verdict>_count`` per verdict and ``method_counts``, and ``report_count``: people's reports,
when the axes are ones reports have; in CSV the column after the verdict counts).
"""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from censorwatch.api.params import filters
from censorwatch.events.platforms import Platform, host_of, load_platforms
from censorwatch.model import METHODS
from censorwatch.store.base import AXES, TIME_GRAINS, VERDICTS, Filters, ReportCount, ReportFilters
from censorwatch.times import rfc3339

router = APIRouter(prefix="/api/v1", tags=["aggregation"])

#: OONI's axes; ``category_code`` is accepted by OONI but not stored here (a 400).
AXIS_PATTERN = "^(" + "|".join((*AXES, "category_code")) + ")$"
GRAIN_PATTERN = "^(" + "|".join((*TIME_GRAINS, "auto")) + ")$"
#: The longest range ``auto`` answers by the hour (OONI's threshold); longer ones by the day.
AUTO_HOURLY = timedelta(days=7)
COUNT_COLUMNS = (
    "measurement_count",
    *(f"{v}_count" for v in VERDICTS),
    "anomaly_count",
    "confirmed_count",
    "failure_count",
)


def resolve_grain(time_grain: str, f: Filters) -> str:
    """``auto`` is ``hour`` for a range of at most a week, else ``day``; others as given."""
    if time_grain != "auto":
        return time_grain
    if f.since is not None and f.until is not None and f.until - f.since <= AUTO_HOURLY:
        return "hour"
    return "day"


def to_csv(rows: list[dict[str, Any]], axes: list[str]) -> str:
    """One line per bucket; per-method counts become ``<method>_count`` columns, and people's
    reports a ``report_count`` column when they were counted."""
    methods = list(METHODS)
    for row in rows:
        methods.extend(m for m in row["method_counts"] if m not in methods)
    counts = [*COUNT_COLUMNS, *(["report_count"] if any("report_count" in r for r in rows) else [])]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*axes, *counts, *(f"{m}_count" for m in methods)])
    for row in rows:
        writer.writerow(
            [
                *(row[a] if row[a] is not None else "" for a in axes),
                *(row.get(c, 0) for c in counts),
                *(row["method_counts"].get(m, 0) for m in methods),
            ]
        )
    return out.getvalue()


#: Axes people's reports can be counted by (they have a place, a time and a target, nothing
#: that a verdict, a method or a test name would group).
REPORT_AXES = ("probe_cc", "probe_asn", "measurement_start_day", "domain")


def _grain_label(hour: datetime, grain: str) -> str:
    """A report's hour as the bucket label the store gives that grain."""
    if grain == "hour":
        return rfc3339(hour)
    day = hour.replace(hour=0)
    if grain == "week":
        day -= timedelta(days=day.weekday())
    elif grain == "month":
        day = day.replace(day=1)
    elif grain == "year":
        day = day.replace(month=1, day=1)
    return day.strftime("%Y-%m-%d")


def _about(target: str, domain: str | None, platforms: list[Platform]) -> bool:
    """Whether a report's target (a URL or a platform name) is about a measured domain."""
    if domain is None:
        return False
    if "://" in target:
        return host_of(target, None) == domain
    return any(p.name == target and p.owns(domain) for p in platforms)


def add_report_counts(
    rows: list[dict[str, Any]], axes: list[str], grain: str, f: Filters, store: Any
) -> None:
    """Add ``report_count`` to each bucket: people's reports in its country, network, time and
    domain (a platform's reports count for each of its domains) under the filters of place and
    time; the filters that describe measurements (verdict, method, test...) do not narrow them."""

    def listed(value: str | tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else (value,) if isinstance(value, str) else value

    query = ReportFilters(
        probe_cc=listed(f.probe_cc),
        probe_asn=listed(f.probe_asn),
        since=None if f.since is None else f.since.replace(minute=0, second=0, microsecond=0),
        until=f.until,
    )
    counts = store.people_report_counts(query)
    platforms = load_platforms()
    wanted = listed(f.domain)
    if wanted is not None:
        counts = [c for c in counts if any(_about(c.target, d, platforms) for d in wanted)]
    keyed: dict[tuple[str, ...], list[ReportCount]] = {}
    place = [a for a in axes if a != "domain"]
    for c in counts:
        values = {
            "probe_cc": c.probe_cc,
            "probe_asn": c.probe_asn,
            "measurement_start_day": _grain_label(c.hour, grain),
        }
        keyed.setdefault(tuple(values[a] for a in place), []).append(c)
    buckets = rows if axes else rows[:1]
    for bucket in buckets:
        found = keyed.get(tuple(str(bucket[a]) for a in place), [])
        if "domain" in axes:
            found = [c for c in found if _about(c.target, bucket["domain"], platforms)]
        bucket["report_count"] = sum(c.reports for c in found)


@router.get("/aggregation", summary="Verdict counts by country, network, day, domain, method")
async def aggregation(
    request: Request,
    f: Filters = Depends(filters),
    axis_x: str | None = Query(None, pattern=AXIS_PATTERN),
    axis_y: str | None = Query(None, pattern=AXIS_PATTERN),
    time_grain: str = Query("auto", pattern=GRAIN_PATTERN),
    format: str = Query("JSON", pattern="^(JSON|CSV|json|csv)$"),
    download: Annotated[bool, Query(description="Answer as a file to save")] = False,
) -> Response:
    if axis_x is not None and axis_x == axis_y:
        raise HTTPException(400, "axis_x and axis_y must differ")
    if "category_code" in (axis_x, axis_y):
        raise HTTPException(
            400, "axis category_code is not supported: the store does not keep categories"
        )
    axes = [a for a in (axis_x, axis_y) if a]
    grain = resolve_grain(time_grain, f)
    store = request.app.state.store
    started = time.perf_counter()
    rows = await run_in_threadpool(store.aggregate, f, axis_x, axis_y, grain)
    if set(axes) <= set(REPORT_AXES):
        await run_in_threadpool(add_report_counts, rows, axes, grain, f, store)
    elapsed = round(time.perf_counter() - started, 4)
    csv_wanted = format.upper() == "CSV"
    headers = {}
    if download:
        name = "censorwatch-aggregation." + ("csv" if csv_wanted else "json")
        headers["Content-Disposition"] = f"attachment; filename={name}"
    if csv_wanted:
        return Response(to_csv(rows, axes), media_type="text/csv; charset=utf-8", headers=headers)
    body: dict[str, Any] = {
        "v": 0,
        "dimension_count": len(axes),
        "db_stats": {"query_time": elapsed, "elapsed_seconds": elapsed, "row_count": len(rows)},
    }
    if axes:
        body["result"] = rows
    else:
        empty = {c: 0 for c in COUNT_COLUMNS} | {"method_counts": {}}
        body["result"] = rows[0] if rows else empty
    return Response(msgspec.json.encode(body), media_type="application/json", headers=headers)
