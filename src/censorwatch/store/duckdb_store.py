"""The embedded backend: one DuckDB file, nothing else to install (``duckdb:///path``).

Every query is built from the shared filters with bound parameters, and uses SQL that ClickHouse
also understands (``date_trunc``, ``SUM(CASE ...)``). A UID is stored once because ``add``
looks up the batch's UIDs and inserts only the new ones, under the write lock of the one
process DuckDB lets write a file (no key, no ``ON CONFLICT``); the checkpoint is written by a
second statement after the rows, as the ``Store`` contract allows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.model import METHODS, Event
from censorwatch.store import schema
from censorwatch.store.base import (
    COLUMNS,
    EXPORT_FORMATS,
    ORDER_COLUMNS,
    PUBLIC_COLUMNS,
    VERDICTS,
    ArchiveLocation,
    EventFilters,
    Filters,
    MeasurementRow,
    PeopleReport,
    ReportCount,
    ReportFilters,
    Store,
    axis_expression,
)
from censorwatch.times import rfc3339

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
_ALL = ", ".join(COLUMNS)
_INSERT = f"INSERT INTO measurements ({_ALL}) SELECT " + ", ".join(
    f"unnest(${i + 1})" for i in range(len(COLUMNS))
)


_MEASUREMENT_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'measurements'"
)

_EVENT_COLUMNS = ", ".join(schema.EVENT_TYPES)
_INSERT_EVENTS = f"INSERT INTO stored_events ({_EVENT_COLUMNS}) SELECT " + ", ".join(
    f"unnest(${i + 1})" for i in range(len(schema.EVENT_TYPES))
)
_decode_event = msgspec.json.Decoder(Event).decode
_encode = msgspec.json.Encoder().encode


def event_where(query: EventFilters) -> tuple[str, list[Any]]:
    """SQL conditions (joined by AND, each prefixed) and parameters for the events' filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("cc", query.cc),
        ("target", query.target),
        ("scope", query.scope),
        ("status", query.status),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.asn is not None:
        clauses.append("list_contains(asns, ?)")
        params.append(query.asn)
    if query.since is not None:
        clauses.append("(end_before IS NULL OR end_before >= ?)")
        params.append(query.since)
    if query.until is not None:
        clauses.append("onset_before < ?")
        params.append(query.until)
    return "".join(f" AND {c}" for c in clauses), params


def report_where(query: ReportFilters) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` text and parameters for the people's reports' filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("probe_cc", "probe_asn", "target"):
        value = getattr(query, column)
        if isinstance(value, tuple):
            clauses.append(f"{column} IN (SELECT unnest(?))")
            params.append(list(value))
        elif value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        clauses.append("report_hour >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("report_hour < ?")
        params.append(query.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def where_clause(filters: Filters) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` text and its bound parameters for the shared filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column in _EQUALITY:
        value = getattr(filters, column)
        if isinstance(value, tuple):  # any of several values (OONI's comma lists)
            clauses.append(f"{column} IN (SELECT unnest(?))")
            params.append(list(value))
        elif value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.confirmed is not None:
        clauses.append("confirmed = ?")
        params.append(filters.confirmed)
    for flag, verdict in (("anomaly", "blocked"), ("failure", "unknown")):
        wanted = getattr(filters, flag)
        if wanted is not None:
            clauses.append("verdict = ?" if wanted else "verdict <> ?")
            params.append(verdict)
    if filters.since is not None:
        clauses.append("measurement_start_time >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("measurement_start_time < ?")
        params.append(filters.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _truncate(grain: str) -> str:
    return f"date_trunc('{grain}', measurement_start_time)"


def order_expression(order_by: str) -> str:
    """The SQL a page is sorted by: ``probe_asn`` by its number, as OONI (which stores it as
    an integer) sorts it, so that AS9541 comes before AS17557."""
    if order_by not in ORDER_COLUMNS:
        raise ValueError(
            f"unknown order_by {order_by!r}; expected one of {', '.join(ORDER_COLUMNS)}"
        )
    if order_by == "probe_asn":
        return "TRY_CAST(substr(probe_asn, 3) AS BIGINT)"
    return order_by


class DuckDBStore(Store):
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
        # What a read selects: a store opened read-only is never migrated, so a column added
        # after it was made reads as NULL there.
        present = {r[0] for r in self._con.execute(_MEASUREMENT_COLUMNS).fetchall()}
        self._all = ", ".join(c if c in present else f"NULL AS {c}" for c in COLUMNS)
        self._public = ", ".join(c if c in present else f"NULL AS {c}" for c in PUBLIC_COLUMNS)

    # -- writing ---------------------------------------------------------------------------
    def add(
        self, rows: Sequence[MeasurementRow], checkpoint: ArchiveLocation | None = None
    ) -> list[str]:
        # The write lock and DuckDB's one-writing-process rule make "look, then insert" exact:
        # no one else can insert a UID between the two.
        with self._write_lock:
            known = self.existing([r.measurement_uid for r in rows])
            columns: list[list[Any]] = [[] for _ in COLUMNS]
            new: list[str] = []
            for row in rows:
                if row.measurement_uid in known:
                    continue
                known.add(row.measurement_uid)
                new.append(row.measurement_uid)
                for i, value in enumerate(row.as_tuple()):
                    columns[i].append(value)
            cur = self._con.cursor()
            try:
                if new:
                    cur.execute(_INSERT, columns)
                if checkpoint is not None:
                    cur.execute(
                        'UPDATE archive_checkpoint SET segment = ?, "offset" = ? '
                        "WHERE name = 'archive'",
                        [checkpoint.segment, checkpoint.offset],
                    )
            finally:
                cur.close()
        return new

    def mark_ingested(
        self, source_key: str, size: int, measurements: int, errors: str | None = None
    ) -> None:
        with self._write_lock:
            cur = self._con.cursor()
            try:
                # A record with errors gives way to the newer one (a retry); a done one stays.
                cur.execute(
                    "DELETE FROM ingested_sources WHERE source_key = ? AND errors IS NOT NULL",
                    [source_key],
                )
                cur.execute(
                    "INSERT INTO ingested_sources "
                    "(source_key, size, measurements, ingested_at, errors) "
                    "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
                    "(SELECT 1 FROM ingested_sources WHERE source_key = ?)",
                    [
                        source_key,
                        size,
                        measurements,
                        datetime.now(UTC).replace(tzinfo=None),
                        errors,
                        source_key,
                    ],
                )
            finally:
                cur.close()

    # -- reading ---------------------------------------------------------------------------
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._con.cursor()
        try:
            return cur.execute(sql, list(params)).fetchall()
        finally:
            cur.close()

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._fetch(sql, params)
        return rows[0][0] if rows else None

    def existing(self, uids: Sequence[str]) -> set[str]:
        if not uids:
            return set()
        found = self._fetch(
            "SELECT measurement_uid FROM measurements WHERE measurement_uid IN (SELECT unnest(?))",
            [list(uids)],
        )
        return {r[0] for r in found}

    def location(self, measurement_uid: str) -> ArchiveLocation | None:
        found = self._fetch(
            "SELECT archive_segment, archive_offset FROM measurements WHERE measurement_uid = ?",
            [measurement_uid],
        )
        return ArchiveLocation(found[0][0], found[0][1]) if found else None

    def row(self, measurement_uid: str) -> MeasurementRow | None:
        found = self._fetch(
            f"SELECT {self._all} FROM measurements WHERE measurement_uid = ?", [measurement_uid]
        )
        return MeasurementRow(*found[0]) if found else None

    def rows(
        self,
        filters: Filters,
        *,
        limit: int,
        offset: int,
        order: str = "desc",
        order_by: str = "measurement_start_time",
    ) -> list[MeasurementRow]:
        direction = "ASC" if order.lower() == "asc" else "DESC"
        keys = [order_expression(order_by), "measurement_start_time", "measurement_uid"]
        if order_by == "measurement_start_time":
            keys = keys[1:]
        where, params = where_clause(filters)
        sql = (
            f"SELECT {self._all} FROM measurements{where} ORDER BY "
            + ", ".join(f"{k} {direction}" for k in keys)
            + " LIMIT ? OFFSET ?"
        )
        return [MeasurementRow(*r) for r in self._fetch(sql, [*params, int(limit), int(offset)])]

    def scan(self, filters: Filters) -> Iterator[MeasurementRow]:
        where, params = where_clause(filters)
        cur = self._con.cursor()
        try:
            cur.execute(
                f"SELECT {self._all} FROM measurements{where} "
                "ORDER BY measurement_start_time, measurement_uid",
                params,
            )
            while chunk := cur.fetchmany(2048):
                for r in chunk:
                    yield MeasurementRow(*r)
        finally:
            cur.close()

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
        exprs = [axis_expression(a, time_grain, _truncate) for a in axes]
        conditions = [f"verdict = '{v}'" for v in VERDICTS]
        conditions.append("confirmed")
        # OONI's anomaly_count leaves out what confirmed_count counts: the four of OONI's
        # buckets (ok, anomaly, confirmed, failure) never count one measurement twice.
        conditions.append("verdict = 'blocked' AND NOT confirmed")
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
        keys = [
            *axes,
            "measurement_count",
            *(f"{v}_count" for v in VERDICTS),
            "confirmed_count",
            "anomaly_count",
        ]
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
            bucket["failure_count"] = bucket["unknown_count"]
            bucket["method_counts"] = {
                m: n for m, n in zip(METHODS, rec[first_method:], strict=True) if n
            }
            out.append(bucket)
        return out

    def export(self, path: str, fmt: str, filters: Filters) -> int:
        """Write matching rows to ``path`` with DuckDB's COPY; returns the number written."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError("format must be csv or parquet")
        where, params = where_clause(filters)
        target = str(path).replace("'", "''")
        options = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT PARQUET"
        cur = self._con.cursor()
        try:
            cur.execute(
                f"COPY (SELECT {self._public} FROM measurements{where} "
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
                    f"INSERT INTO measurements ({_ALL}) SELECT {_ALL} "
                    "FROM measurements_unclustered "
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
        found = self._fetch(
            "SELECT segment, \"offset\" FROM archive_checkpoint WHERE name = 'archive'"
        )
        if not found or not found[0][0]:
            return None
        return ArchiveLocation(found[0][0], found[0][1])

    def ingested(self, source_key: str) -> bool:
        return bool(
            self._scalar("SELECT count(*) FROM ingested_sources WHERE source_key = ?", [source_key])
        )

    def ingest_errors(self, source_key: str) -> str | None:
        found = self._fetch(
            "SELECT errors FROM ingested_sources WHERE source_key = ? AND errors IS NOT NULL",
            [source_key],
        )
        return found[0][0] if found else None

    def add_aliases(self, aliases: Mapping[str, str]) -> None:
        if not aliases:
            return
        with self._write_lock:
            known = self.aliased(list(aliases))
            new = [(a, uid) for a, uid in aliases.items() if a not in known]
            if new:
                cur = self._con.cursor()
                try:
                    cur.execute(
                        "INSERT INTO measurement_aliases SELECT unnest(?), unnest(?)",
                        [[a for a, _ in new], [uid for _, uid in new]],
                    )
                finally:
                    cur.close()

    def aliased(self, aliases: Sequence[str]) -> dict[str, str]:
        if not aliases:
            return {}
        found = self._fetch(
            "SELECT alias, measurement_uid FROM measurement_aliases "
            "WHERE alias IN (SELECT unnest(?))",
            [list(aliases)],
        )
        return {a: uid for a, uid in found}

    def uids(self) -> list[str]:
        return [r[0] for r in self._fetch("SELECT measurement_uid FROM measurements")]

    # -- stored events -----------------------------------------------------------------------
    def _has_table(self, name: str) -> bool:
        """Whether a table exists: a store opened read-only is never migrated."""
        return bool(
            self._scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
            )
        )

    def save_events(self, changed: Sequence[Event], removed: Sequence[str]) -> None:
        if not changed and not removed:
            return
        with self._write_lock:
            version = 1 + int(self._scalar("SELECT max(version) FROM stored_events") or 0)
            rows = [
                (
                    e.event_id,
                    version,
                    False,
                    e.scope,
                    e.cc,
                    list(e.asns),
                    e.target,
                    e.status,
                    e.onset.before,
                    e.end.before if e.end else None,
                    _encode(e).decode(),
                )
                for e in changed
            ]
            gone = set(removed) - {e.event_id for e in changed}
            rows += [(i, version, True, "", "", [], "", "", "", None, "{}") for i in sorted(gone)]
            cur = self._con.cursor()
            try:
                cur.execute(_INSERT_EVENTS, [list(c) for c in zip(*rows, strict=True)])
                # Only the newest row of an id is ever read: keep the table that small.
                cur.execute(
                    "DELETE FROM stored_events WHERE event_id IN (SELECT unnest(?)) "
                    "AND version < ?",
                    [[r[0] for r in rows], version],
                )
                cur.execute("DELETE FROM stored_events WHERE deleted")
            finally:
                cur.close()

    def save_event_state(self, state: bytes) -> None:
        with self._write_lock:
            cur = self._con.cursor()
            try:
                version = cur.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM event_state"
                ).fetchone()[0]  # type: ignore[index]
                cur.execute(
                    "INSERT INTO event_state VALUES (?, ?, ?)",
                    [version, datetime.now(UTC).replace(tzinfo=None), state],
                )
                cur.execute("DELETE FROM event_state WHERE version < ?", [version])
            finally:
                cur.close()

    def load_event_state(self) -> bytes | None:
        if not self._has_table("event_state"):
            return None
        found = self._fetch("SELECT state FROM event_state ORDER BY version DESC LIMIT 1")
        return bytes(found[0][0]) if found else None

    def has_event_state(self) -> bool:
        return self._has_table("event_state") and bool(
            self._scalar("SELECT count(*) FROM event_state")
        )

    def stored_events(self, query: EventFilters | None = None) -> list[Event]:
        if not self._has_table("stored_events"):
            return []
        where, params = event_where(query or EventFilters())
        # Newest row per id (tombstones are deleted on write; the filter keeps a backend
        # that keeps them honest too).
        found = self._fetch(
            "SELECT record FROM (SELECT *, row_number() OVER "
            "(PARTITION BY event_id ORDER BY version DESC) AS newest FROM stored_events) "
            f"WHERE newest = 1 AND NOT deleted{where} "
            "ORDER BY scope = 'network', onset_before, cc, asns, target",
            params,
        )
        return [_decode_event(r[0]) for r in found]

    def scan_from(self, location: ArchiveLocation) -> Iterator[MeasurementRow]:
        cur = self._con.cursor()
        try:
            cur.execute(
                f"SELECT {self._all} FROM measurements WHERE archive_segment > ? "
                "OR (archive_segment = ? AND archive_offset >= ?) "
                "ORDER BY archive_segment, archive_offset, measurement_uid",
                [location.segment, location.segment, location.offset],
            )
            while chunk := cur.fetchmany(2048):
                for r in chunk:
                    yield MeasurementRow(*r)
        finally:
            cur.close()

    # -- people's reports ---------------------------------------------------------------------
    def add_people_reports(self, reports: Sequence[PeopleReport]) -> None:
        if not reports:
            return
        columns = list(zip(*(msgspec.structs.astuple(r) for r in reports), strict=True))
        with self._write_lock:
            cur = self._con.cursor()
            try:
                cur.execute(
                    "INSERT INTO people_reports "
                    "(report_hour, probe_cc, probe_asn, target, failure, note) "
                    "SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)",
                    [list(c) for c in columns],
                )
            finally:
                cur.close()

    def people_report_counts(self, query: ReportFilters | None = None) -> list[ReportCount]:
        if not self._has_table("people_reports"):
            return []
        where, params = report_where(query or ReportFilters())
        found = self._fetch(
            "SELECT probe_cc, probe_asn, target, report_hour, count(*) FROM people_reports"
            f"{where} GROUP BY report_hour, probe_cc, probe_asn, target "
            "ORDER BY report_hour, probe_cc, probe_asn, target",
            params,
        )
        return [ReportCount(*r) for r in found]

    def people_reports(
        self, query: ReportFilters | None = None, *, limit: int = 100
    ) -> list[PeopleReport]:
        if not self._has_table("people_reports"):
            return []
        where, params = report_where(query or ReportFilters())
        found = self._fetch(
            "SELECT report_hour, probe_cc, probe_asn, target, failure, note FROM people_reports"
            f"{where} ORDER BY report_hour DESC, target, failure, note NULLS FIRST, "
            "probe_cc, probe_asn LIMIT ?",
            [*params, int(limit)],
        )
        return [PeopleReport(*r) for r in found]

    def close(self) -> None:
        self._con.close()


def _axis_value(axis: str, value: Any, grain: str) -> Any:
    if axis == "measurement_start_day" and isinstance(value, datetime):
        if grain == "hour":
            return rfc3339(value)
        return value.strftime("%Y-%m-%d")
    return value
