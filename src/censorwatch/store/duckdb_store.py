"""The embedded backend: one DuckDB file, nothing else to install.

Every query is built from the shared filters with bound parameters, and uses SQL that ClickHouse
also understands (``date_trunc``, ``SUM(CASE ...)``), so the ClickHouse backend can reuse it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from censorwatch.model import METHODS
from censorwatch.store import schema
from censorwatch.store.base import (
    AXES,
    COLUMNS,
    TIME_GRAINS,
    VERDICTS,
    ArchiveLocation,
    Filters,
    MeasurementRow,
)

#: Columns the API and export publish (the archive pointers stay internal).
PUBLIC_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if c not in ("archive_segment", "archive_offset")
)
_EQUALITY = (
    "report_id",
    "probe_cc",
    "probe_asn",
    "input",
    "domain",
    "test_name",
    "verdict",
    "method",
    "signature",
)
_INSERT = (
    f"INSERT INTO measurements ({', '.join(COLUMNS)}) "
    f"SELECT * FROM (SELECT {', '.join(f'unnest(${i + 1})' for i in range(len(COLUMNS)))}) "
    "ON CONFLICT DO NOTHING RETURNING measurement_uid"
)


def where_clause(filters: Filters) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` text and its bound parameters for the shared filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column in _EQUALITY:
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.confirmed is not None:
        clauses.append("confirmed = ?")
        params.append(filters.confirmed)
    if filters.since is not None:
        clauses.append("measurement_start_time >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("measurement_start_time < ?")
        params.append(filters.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def axis_expression(axis: str, time_grain: str) -> str:
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; expected one of {', '.join(AXES)}")
    if axis == "measurement_start_day":
        if time_grain not in TIME_GRAINS:
            raise ValueError(f"unknown time_grain {time_grain!r}")
        return f"date_trunc('{time_grain}', measurement_start_time)"
    return axis


def verdict_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the stable verdict record (``censorwatch.model.Verdict.to_record``)."""
    return {
        "measurement_uid": row["measurement_uid"],
        "report_id": row["report_id"],
        "input": row["input"],
        "target": row["target"],
        "probe_cc": row["probe_cc"],
        "probe_asn": row["probe_asn"],
        "measurement_start_time": rfc3339_naive(row["measurement_start_time"]),
        "verdict": row["verdict"],
        "method": row["method"],
        "confidence": row["confidence"],
        "confirmed": row["confirmed"],
        "fingerprint": row["fingerprint"],
        "evidence": json.loads(row["evidence"]),
        "layers": json.loads(row["layers"]),
    }


def rfc3339_naive(value: datetime) -> str:
    return value.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DuckDBStore:
    """The ``Store`` on a DuckDB file. Safe to share between threads (one cursor per call)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        import duckdb

        self.path = str(path)
        self._con = duckdb.connect(self.path, read_only=read_only)
        self._write_lock = threading.Lock()
        if not read_only:
            for ddl in schema.ALL:
                self._con.execute(ddl)
            # One checkpoint row, present from the start, so commits only UPDATE it.
            self._con.execute(
                "INSERT INTO archive_checkpoint SELECT 'archive', '', 0 "
                "WHERE NOT EXISTS (SELECT 1 FROM archive_checkpoint WHERE name = 'archive')"
            )

    # -- writing ---------------------------------------------------------------------------
    def add(
        self, rows: Sequence[MeasurementRow], checkpoint: ArchiveLocation | None = None
    ) -> list[str]:
        columns: list[list[Any]] = [[] for _ in COLUMNS]
        for row in rows:
            for i, value in enumerate(row.as_tuple()):
                columns[i].append(value)
        with self._write_lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                new: list[str] = []
                if rows:
                    cur.execute(_INSERT, columns)
                    new = [r[0] for r in cur.fetchall()]
                if checkpoint is not None:
                    cur.execute(
                        'UPDATE archive_checkpoint SET segment = ?, "offset" = ? '
                        "WHERE name = 'archive'",
                        [checkpoint.segment, checkpoint.offset],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()
        return new

    def mark_ingested(self, source_key: str, size: int, measurements: int) -> None:
        with self._write_lock:
            self._con.cursor().execute(
                "INSERT INTO ingested_sources VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [source_key, size, measurements, datetime.now(UTC).replace(tzinfo=None)],
            )

    # -- reading ---------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._con.cursor()
        try:
            cur.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            cur.close()

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._con.cursor()
        try:
            row = cur.execute(sql, list(params)).fetchone()
            return row[0] if row else None
        finally:
            cur.close()

    def existing(self, uids: Sequence[str]) -> set[str]:
        if not uids:
            return set()
        cur = self._con.cursor()
        try:
            cur.execute(
                "SELECT measurement_uid FROM measurements "
                "WHERE measurement_uid IN (SELECT unnest(?))",
                [list(uids)],
            )
            return {r[0] for r in cur.fetchall()}
        finally:
            cur.close()

    def location(self, measurement_uid: str) -> ArchiveLocation | None:
        rows = self._rows(
            "SELECT archive_segment, archive_offset FROM measurements WHERE measurement_uid = ?",
            [measurement_uid],
        )
        if not rows:
            return None
        return ArchiveLocation(rows[0]["archive_segment"], rows[0]["archive_offset"])

    def get(self, measurement_uid: str) -> dict[str, Any] | None:
        rows = self._rows(
            f"SELECT {', '.join(PUBLIC_COLUMNS)} FROM measurements WHERE measurement_uid = ?",
            [measurement_uid],
        )
        return rows[0] if rows else None

    def query(
        self, filters: Filters, *, limit: int, offset: int, order: str = "desc"
    ) -> list[dict[str, Any]]:
        direction = "ASC" if order.lower() == "asc" else "DESC"
        where, params = where_clause(filters)
        sql = (
            f"SELECT {', '.join(PUBLIC_COLUMNS)} FROM measurements{where} "
            f"ORDER BY measurement_start_time {direction}, measurement_uid {direction} "
            "LIMIT ? OFFSET ?"
        )
        return self._rows(sql, [*params, int(limit), int(offset)])

    def count(self, filters: Filters | None = None) -> int:
        where, params = where_clause(filters or Filters())
        return int(self._scalar(f"SELECT count(*) FROM measurements{where}", params))

    def aggregate(
        self,
        filters: Filters,
        axis_x: str | None,
        axis_y: str | None,
        time_grain: str = "day",
    ) -> list[dict[str, Any]]:
        """Counts per verdict and per method, grouped by up to two axes.

        One scan with conditional sums (``SUM(CASE ...)``, which every SQL engine reads), so
        the database returns one finished row per bucket and Python only renames fields.
        """
        axes = [a for a in (axis_x, axis_y) if a]
        if len(set(axes)) != len(axes):
            raise ValueError("axis_x and axis_y must differ")
        exprs = [axis_expression(a, time_grain) for a in axes]
        conditions = [f"verdict = '{v}'" for v in VERDICTS]
        conditions.append("confirmed")
        conditions += [f"method = '{m}'" for m in METHODS]
        # BIGINT: DuckDB would sum into 128-bit integers, which are slow to hand to Python.
        sums = [f"CAST(SUM(CASE WHEN {c} THEN 1 ELSE 0 END) AS BIGINT)" for c in conditions]
        where, params = where_clause(filters)
        select = [*(f"{e} AS a{i}" for i, e in enumerate(exprs)), "count(*)", *sums]
        sql = f"SELECT {', '.join(select)} FROM measurements{where}"
        if axes:
            order = ", ".join(f"a{i}" for i in range(len(axes)))
            sql += f" GROUP BY {order} ORDER BY {order} NULLS LAST"
        cur = self._con.cursor()
        try:
            raw = cur.execute(sql, params).fetchall()
        finally:
            cur.close()
        keys = [*axes, "measurement_count", *(f"{v}_count" for v in VERDICTS), "confirmed_count"]
        first_method = len(keys)
        day = "measurement_start_day" if "measurement_start_day" in axes else None
        labels: dict[Any, Any] = {}
        out = []
        for rec in raw:
            if not axes and not rec[0]:
                break
            bucket = dict(zip(keys, rec, strict=False))
            if day is not None:
                value = bucket[day]
                label = labels.get(value)
                if label is None:
                    label = labels[value] = _axis_value(day, value, time_grain)
                bucket[day] = label
            bucket["anomaly_count"] = bucket["blocked_count"]
            bucket["method_counts"] = {
                m: n for m, n in zip(METHODS, rec[first_method:], strict=True) if n
            }
            out.append(bucket)
        return out

    def iter_verdicts(self, **filters: Any) -> Iterator[dict[str, Any]]:
        where, params = where_clause(Filters(**filters))
        cur = self._con.cursor()
        try:
            cur.execute(
                f"SELECT {', '.join(PUBLIC_COLUMNS)} FROM measurements{where} "
                "ORDER BY measurement_start_time, measurement_uid",
                params,
            )
            names = [d[0] for d in cur.description]
            while chunk := cur.fetchmany(2048):
                for r in chunk:
                    yield verdict_record(dict(zip(names, r, strict=True)))
        finally:
            cur.close()

    def export(self, path: str, fmt: str, filters: Filters) -> int:
        """Write matching rows to ``path`` with DuckDB's COPY; returns the number written."""
        if fmt not in ("csv", "parquet"):
            raise ValueError("format must be csv or parquet")
        where, params = where_clause(filters)
        target = str(path).replace("'", "''")
        options = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT PARQUET"
        cur = self._con.cursor()
        try:
            cur.execute(
                f"COPY (SELECT {', '.join(PUBLIC_COLUMNS)} FROM measurements{where} "
                f"ORDER BY measurement_start_time, measurement_uid) TO '{target}' ({options})",
                params,
            )
            row = cur.fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def optimize(self) -> int:
        """Rewrite the table clustered by country, network and time; returns the row count.

        DuckDB skips row groups whose min/max exclude a filter, so once rows of one country sit
        together a per-country query reads a fiftieth of the table instead of all of it. Rows
        added later land at the end, unclustered, until the next run.
        """
        with self._write_lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                cur.execute("ALTER TABLE measurements RENAME TO measurements_unclustered")
                cur.execute(schema.MEASUREMENTS)
                cur.execute(
                    "INSERT INTO measurements SELECT * FROM measurements_unclustered "
                    "ORDER BY probe_cc, probe_asn, measurement_start_time"
                )
                cur.execute("DROP TABLE measurements_unclustered")
                cur.execute("COMMIT")
                cur.execute("CHECKPOINT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()
        return self.count()

    def checkpoint(self) -> ArchiveLocation | None:
        rows = self._rows(
            "SELECT segment, \"offset\" FROM archive_checkpoint WHERE name = 'archive'"
        )
        if not rows or not rows[0]["segment"]:
            return None
        return ArchiveLocation(rows[0]["segment"], rows[0]["offset"])

    def ingested(self, source_key: str) -> bool:
        return bool(
            self._scalar("SELECT count(*) FROM ingested_sources WHERE source_key = ?", [source_key])
        )

    def uids(self) -> list[str]:
        cur = self._con.cursor()
        try:
            return [
                r[0] for r in cur.execute("SELECT measurement_uid FROM measurements").fetchall()
            ]
        finally:
            cur.close()

    def close(self) -> None:
        self._con.close()


def _axis_value(axis: str, value: Any, grain: str) -> Any:
    if axis == "measurement_start_day" and isinstance(value, datetime):
        if grain == "hour":
            return rfc3339_naive(value)
        return value.strftime("%Y-%m-%d")
    return value
