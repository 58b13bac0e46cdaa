"""The scale backend: ClickHouse over its HTTP interface (``clickhouse://HOST:8123/DB``).

Idempotency rests on the engine and the archive, not on transactions: ``add`` inserts only
the UIDs ``existing`` does not know, and whatever slips past that (a replay after a crash, a
retried insert) is collapsed by the ``ReplacingMergeTree`` (clickhouse_schema.py). Reads that
count or page say ``FINAL``, so they are exact before the engine has merged anything. The
checkpoint is a lower bound, written at most once a second: a crash only lengthens the
replay, whose rows are then found ``existing``.

The SQL is written once for ClickHouse 18.16 (Debian's server) and today's engine: no query
parameters (18.16 has none; values are quoted by ``literal``), no ``DateTime64``, no
``Parquet`` format (exports are written by DuckDB from the fetched rows, so both backends
write the same files).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.model import METHODS, Event
from censorwatch.store import clickhouse_schema as schema
from censorwatch.store.base import (
    COLUMNS,
    EXPORT_FORMATS,
    ORDER_COLUMNS,
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
from censorwatch.store.clickhouse_transport import Transport
from censorwatch.store.errors import UnsupportedStoreError
from censorwatch.times import rfc3339

#: Seconds between checkpoint writes (each write is a part the engine must merge).
CHECKPOINT_INTERVAL = 1.0
#: UIDs or aliases per look-up statement (18.16 parses at most 256 KiB of SQL).
LOOKUP_CHUNK = 1000
#: Rows per page of ``scan`` and of an export.
SCAN_PAGE = 5000

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
_STORED = tuple(schema.MEASUREMENT_COLUMNS)
_SELECT = ", ".join(_STORED)
# The earliest and the last second a DateTime holds (UInt32 seconds since 1970).
_FIRST_SECOND = datetime(1970, 1, 1)
_LAST_SECOND = datetime(2106, 2, 7, 6, 28, 15)
_GRAIN_FUNCTIONS = {
    "hour": "toStartOfHour",
    "day": "toDate",
    "week": "toMonday",  # ISO weeks, as DuckDB's date_trunc('week')
    "month": "toStartOfMonth",
    "year": "toStartOfYear",
}
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def literal(value: Any) -> str:
    """A value as a ClickHouse literal (18.16 has no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"toDateTime('{_second(value)}', 'UTC')"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _in_list(values: Sequence[Any]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


def _second(value: datetime) -> str:
    if not _FIRST_SECOND <= value <= _LAST_SECOND:
        raise ValueError(f"time {value.isoformat()} is outside what ClickHouse stores (1970-2106)")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _time_bound(column: str, op: str, when: datetime) -> str:
    """``column op when`` to the microsecond, on the seconds column plus its ``_us`` one (the
    plain comparison, which the sorting key serves, when ``when`` is a whole second)."""
    micro = schema.MICROSECONDS[column]
    seconds = literal(when.replace(microsecond=0))
    if not when.microsecond:
        return f"{column} {op} {seconds}"
    strict = op[0]  # ">" or "<"
    return (
        f"({column} {strict} {seconds} OR "
        f"({column} = {seconds} AND {micro} {op} {when.microsecond}))"
    )


def where_clause(filters: Filters) -> str:
    """The SQL ``WHERE`` text of the shared filters, values quoted in place."""
    clauses: list[str] = []
    for column in _EQUALITY:
        value = getattr(filters, column)
        if isinstance(value, tuple):  # any of several values (OONI's comma lists)
            clauses.append(f"{column} IN {_in_list(value)}")
        elif value is not None:
            clauses.append(f"{column} = {literal(value)}")
    if filters.confirmed is not None:
        clauses.append(f"confirmed = {literal(filters.confirmed)}")
    for flag, verdict in (("anomaly", "blocked"), ("failure", "unknown")):
        wanted = getattr(filters, flag)
        if wanted is not None:
            clauses.append(f"verdict {'=' if wanted else '!='} {literal(verdict)}")
    if filters.since is not None:
        clauses.append(_time_bound("measurement_start_time", ">=", filters.since))
    if filters.until is not None:
        clauses.append(_time_bound("measurement_start_time", "<", filters.until))
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _truncate(grain: str) -> str:
    return f"{_GRAIN_FUNCTIONS[grain]}(measurement_start_time)"


def order_expression(order_by: str) -> str:
    """What a page sorts by; ``probe_asn`` by its number (AS9541 before AS17557)."""
    if order_by not in ORDER_COLUMNS:
        raise ValueError(
            f"unknown order_by {order_by!r}; expected one of {', '.join(ORDER_COLUMNS)}"
        )
    if order_by == "probe_asn":
        return "toUInt64OrNull(substring(probe_asn, 3))"
    return order_by


def _stored_time(text: str, micro: int) -> datetime:
    return datetime.fromisoformat(text).replace(microsecond=micro)


def decode_row(record: dict[str, Any]) -> MeasurementRow:
    """A ``measurements`` record (``FORMAT JSONEachRow``) as the typed row."""
    for column, micro in schema.MICROSECONDS.items():
        record[column] = _stored_time(record[column], record.pop(micro))
    record["confirmed"] = bool(record["confirmed"])
    return MeasurementRow(**record)


def encode_row(row: MeasurementRow) -> bytes:
    """One ``JSONEachRow`` line of the row (times split into seconds and microseconds)."""
    record = dict(zip(COLUMNS, row.as_tuple(), strict=True))
    for column, micro in schema.MICROSECONDS.items():
        when: datetime = record[column]
        record[column] = _second(when)
        record[micro] = when.microsecond
    record["confirmed"] = int(bool(record["confirmed"]))
    return _encode(record)


class ClickHouseStore(Store):
    """The ``Store`` on one ClickHouse database, reached through a ``Transport``.

    Safe to share between threads: the transport serialises or pools its requests, and one
    lock orders the writer's look-then-insert.
    """

    def __init__(
        self,
        transport: Transport,
        database: str,
        *,
        url: str | None = None,
        read_only: bool = False,
        create: bool = True,
        migrations: tuple[schema.Migration, ...] = schema.MIGRATIONS,
    ) -> None:
        self.transport = transport
        self.db = schema.check_database_name(database)
        self.url = url or f"{transport.describe()}, database {database}"
        self.read_only = read_only
        self._write_lock = threading.Lock()
        self._pending: ArchiveLocation | None = None
        self._last_checkpoint_write = 0.0
        self._event_version = 0
        self.schema_version = schema.prepare(
            transport.execute,
            self.db,
            self.url,
            writable=not read_only,
            create=create,
            migrations=migrations,
        )

    # -- plumbing --------------------------------------------------------------------------
    def _records(self, sql: str) -> list[dict[str, Any]]:
        body = self.transport.execute(sql + " FORMAT JSONEachRow")
        return [_decode(line) for line in body.splitlines() if line]

    def _measurements(self, where: str) -> str:
        """The measurement rows a read sees: one per UID, merged or not yet."""
        return f"{self.db}.measurements FINAL{where}"

    def _writable(self) -> None:
        if self.read_only:
            raise UnsupportedStoreError(f"store {self.url} is open read-only")

    # -- writing ---------------------------------------------------------------------------
    def add(
        self, rows: Sequence[MeasurementRow], checkpoint: ArchiveLocation | None = None
    ) -> list[str]:
        self._writable()
        with self._write_lock:
            known = self.existing([r.measurement_uid for r in rows])
            new: list[str] = []
            lines: list[bytes] = []
            for row in rows:
                if row.measurement_uid in known:
                    continue
                known.add(row.measurement_uid)
                lines.append(encode_row(row))
                new.append(row.measurement_uid)
            if lines:
                self.transport.execute(
                    f"INSERT INTO {self.db}.measurements ({_SELECT}) FORMAT JSONEachRow",
                    b"\n".join(lines),
                )
            if checkpoint is not None:
                self._pending = checkpoint
                if time.monotonic() - self._last_checkpoint_write >= CHECKPOINT_INTERVAL:
                    self._write_checkpoint()
        return new

    def _write_checkpoint(self) -> None:
        pending = self._pending
        if pending is None:
            return
        self.transport.execute(
            f"INSERT INTO {self.db}.archive_checkpoints (segment, offset, written_at) "
            f"VALUES ({literal(pending.segment)}, {int(pending.offset)}, now())"
        )
        self._pending = None
        self._last_checkpoint_write = time.monotonic()

    def mark_ingested(
        self, source_key: str, size: int, measurements: int, errors: str | None = None
    ) -> None:
        self._writable()
        with self._write_lock:
            # A done file stays done; an attempt with errors is superseded by a later one.
            if self._ingest_state(source_key) == (True, None):
                return
            now = time.time_ns()
            stamp = datetime.fromtimestamp(now // 1_000_000_000, UTC).replace(tzinfo=None)
            self.transport.execute(
                f"INSERT INTO {self.db}.ingested_sources "
                "(source_key, size, measurements, ingested_at, ingested_ns, errors) VALUES "
                f"({literal(source_key)}, {int(size)}, {int(measurements)}, "
                f"{literal(stamp)}, {now}, {literal(errors)})"
            )

    def add_aliases(self, aliases: Mapping[str, str]) -> None:
        if not aliases:
            return
        self._writable()
        with self._write_lock:
            known = self.aliased(list(aliases))
            new = [(a, uid) for a, uid in aliases.items() if a not in known]
            if not new:
                return
            now = time.time_ns()
            lines = [
                _encode({"alias": a, "measurement_uid": uid, "added_ns": now}) for a, uid in new
            ]
            self.transport.execute(
                f"INSERT INTO {self.db}.measurement_aliases (alias, measurement_uid, added_ns) "
                "FORMAT JSONEachRow",
                b"\n".join(lines),
            )

    def optimize(self) -> int:
        """Merge every part now (``OPTIMIZE ... FINAL``): duplicates gone, one part per month."""
        self._writable()
        with self._write_lock:
            self._write_checkpoint()
            for table in ("measurements", "measurement_keys"):
                self.transport.execute(f"OPTIMIZE TABLE {self.db}.{table} FINAL")
        return self.count()

    # -- reading ---------------------------------------------------------------------------
    def checkpoint(self) -> ArchiveLocation | None:
        if self._pending is not None:
            return self._pending
        found = self._records(
            f"SELECT segment, offset FROM {self.db}.archive_checkpoints "
            "ORDER BY segment DESC, offset DESC LIMIT 1"
        )
        return ArchiveLocation(found[0]["segment"], found[0]["offset"]) if found else None

    def existing(self, uids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(uids))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            found.update(
                r["measurement_uid"]
                for r in self._records(
                    f"SELECT DISTINCT measurement_uid FROM {self.db}.measurement_keys "
                    f"WHERE measurement_uid IN {_in_list(chunk)}"
                )
            )
        return found

    def row(self, measurement_uid: str) -> MeasurementRow | None:
        uid = literal(measurement_uid)
        # The UID index gives the sorting key, so the engine reads one granule, not a scan.
        found = self._records(
            f"SELECT {_SELECT} FROM {self.db}.measurements FINAL "
            f"WHERE (probe_cc, probe_asn, measurement_start_time) IN "
            f"(SELECT probe_cc, probe_asn, measurement_start_time "
            f"FROM {self.db}.measurement_keys WHERE measurement_uid = {uid}) "
            f"AND measurement_uid = {uid} LIMIT 1"
        )
        return decode_row(found[0]) if found else None

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
        keys = [
            order_expression(order_by),
            "measurement_start_time",
            "measurement_start_us",
            "measurement_uid",
        ]
        if order_by == "measurement_start_time":
            keys = keys[1:]
        sql = (
            f"SELECT {_SELECT} FROM {self._measurements(where_clause(filters))} ORDER BY "
            + ", ".join(f"{k} {direction}" for k in keys)
            + f" LIMIT {int(limit)} OFFSET {int(offset)}"
        )
        return [decode_row(r) for r in self._records(sql)]

    def scan(self, filters: Filters) -> Iterator[MeasurementRow]:
        """Pages of ``SCAN_PAGE`` rows, each starting after the last row of the one before
        (by time, then UID), so memory stays bounded and no page is read twice."""
        base = where_clause(filters)
        after = ""
        while True:
            where = base + ((" AND " if base else " WHERE ") + after if after else "")
            page = self._records(
                f"SELECT {_SELECT} FROM {self._measurements(where)} "
                "ORDER BY measurement_start_time, measurement_start_us, measurement_uid "
                f"LIMIT {SCAN_PAGE}"
            )
            if not page:
                return
            last = page[-1]
            seconds = literal(datetime.fromisoformat(last["measurement_start_time"]))
            micro = int(last["measurement_start_us"])
            uid = literal(last["measurement_uid"])
            after = (
                f"(measurement_start_time > {seconds} OR (measurement_start_time = {seconds} "
                f"AND (measurement_start_us > {micro} OR (measurement_start_us = {micro} "
                f"AND measurement_uid > {uid}))))"
            )
            for record in page:
                yield decode_row(record)
            if len(page) < SCAN_PAGE:
                return

    def count(self, filters: Filters | None = None) -> int:
        where = where_clause(filters or Filters())
        found = self._records(f"SELECT count() AS n FROM {self._measurements(where)}")
        return int(found[0]["n"])

    def aggregate(
        self,
        filters: Filters,
        axis_x: str | None,
        axis_y: str | None,
        time_grain: str = "day",
    ) -> list[dict[str, Any]]:
        """Counts per verdict and per method, grouped by up to two axes, in one scan
        (``countIf`` per bucket field), so the engine returns finished buckets."""
        axes = [a for a in (axis_x, axis_y) if a]
        if len(set(axes)) != len(axes):
            raise ValueError("axis_x and axis_y must differ")
        exprs = [axis_expression(a, time_grain, _truncate) for a in axes]
        counts = {f"{v}_count": f"verdict = '{v}'" for v in VERDICTS}
        counts["confirmed_count"] = "confirmed = 1"
        # OONI's anomaly_count leaves out what confirmed_count counts.
        counts["anomaly_count"] = "verdict = 'blocked' AND confirmed = 0"
        # ifNull: 18.16's countIf takes no Nullable condition (and method is nullable).
        methods = {f"m{i}": f"ifNull(method = {literal(m)}, 0)" for i, m in enumerate(METHODS)}
        select = [
            *(f"{e} AS a{i}" for i, e in enumerate(exprs)),
            "count() AS measurement_count",
            *(f"countIf({c}) AS {name}" for name, c in {**counts, **methods}.items()),
        ]
        sql = f"SELECT {', '.join(select)} FROM {self._measurements(where_clause(filters))}"
        if axes:
            names = [f"a{i}" for i in range(len(axes))]
            sql += f" GROUP BY {', '.join(names)} ORDER BY "
            sql += ", ".join(f"{name} NULLS LAST" for name in names)
        out = []
        for rec in self._records(sql):
            if not axes and not rec["measurement_count"]:
                break
            bucket: dict[str, Any] = {
                axis: _axis_value(axis, rec[f"a{i}"], time_grain) for i, axis in enumerate(axes)
            }
            bucket["measurement_count"] = rec["measurement_count"]
            for name in counts:
                bucket[name] = rec[name]
            bucket["failure_count"] = bucket["unknown_count"]
            bucket["method_counts"] = {
                m: rec[f"m{i}"] for i, m in enumerate(METHODS) if rec[f"m{i}"]
            }
            out.append(bucket)
        return out

    def export(self, path: str, fmt: str, filters: Filters) -> int:
        """Write matching rows with DuckDB, page by page through a scratch file beside
        ``path`` (18.16 writes no Parquet), so both backends write identical files."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError("format must be csv or parquet")
        from censorwatch.store.duckdb_store import DuckDBStore

        target = Path(path)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
            staging = DuckDBStore(Path(scratch) / "rows.duckdb")
            try:
                batch: list[MeasurementRow] = []
                for found in self.scan(filters):
                    batch.append(found)
                    if len(batch) >= SCAN_PAGE:
                        staging.add(batch)
                        batch = []
                staging.add(batch)
                return staging.export(str(target), fmt, Filters())
            finally:
                staging.close()

    def _ingest_state(self, source_key: str) -> tuple[bool, str | None]:
        """(recorded at all, the errors of the deciding attempt): a done attempt decides,
        else the latest one."""
        found = self._records(
            f"SELECT errors FROM {self.db}.ingested_sources "
            f"WHERE source_key = {literal(source_key)} "
            "ORDER BY isNull(errors) DESC, ingested_ns DESC LIMIT 1"
        )
        return (True, found[0]["errors"]) if found else (False, None)

    def ingested(self, source_key: str) -> bool:
        return self._ingest_state(source_key)[0]

    def ingest_errors(self, source_key: str) -> str | None:
        return self._ingest_state(source_key)[1]

    def aliased(self, aliases: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(aliases))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            for r in self._records(
                "SELECT alias, argMin(measurement_uid, added_ns) AS uid "
                f"FROM {self.db}.measurement_aliases WHERE alias IN {_in_list(chunk)} "
                "GROUP BY alias"
            ):
                found[r["alias"]] = r["uid"]
        return found

    def uids(self) -> list[str]:
        return [
            r["measurement_uid"]
            for r in self._records(f"SELECT measurement_uid FROM {self.db}.measurement_keys FINAL")
        ]

    # -- stored events -----------------------------------------------------------------------
    def _next_event_version(self) -> int:
        """A version above every stored one (and above the previous call's)."""
        if self._event_version == 0:
            found = self._records(
                f"SELECT max(version) AS v FROM ("
                f"SELECT version FROM {self.db}.stored_events UNION ALL "
                f"SELECT version FROM {self.db}.event_state)"
            )
            self._event_version = int(found[0]["v"]) if found else 0
        self._event_version = max(time.time_ns(), self._event_version + 1)
        return self._event_version

    def save_events(self, changed: Sequence[Event], removed: Sequence[str]) -> None:
        self._writable()
        if not changed and not removed:
            return
        with self._write_lock:
            version = self._next_event_version()
            lines = [
                _encode(
                    {
                        "event_id": ev.event_id,
                        "version": version,
                        "deleted": 0,
                        "scope": ev.scope,
                        "cc": ev.cc,
                        "asns": list(ev.asns),
                        "target": ev.target,
                        "status": ev.status,
                        "onset_before": ev.onset.before,
                        "end_before": ev.end.before if ev.end is not None else None,
                        "record": _encode(ev).decode(),
                    }
                )
                for ev in changed
            ]
            gone = set(removed) - {ev.event_id for ev in changed}  # a changed event stays
            lines += [
                _encode({"event_id": event_id, "version": version, "deleted": 1, "asns": []})
                for event_id in sorted(gone)
            ]
            self.transport.execute(
                f"INSERT INTO {self.db}.stored_events FORMAT JSONEachRow", b"\n".join(lines)
            )

    def save_event_state(self, state: bytes) -> None:
        """One partition per save (``RowBinary``: the blob's bytes as they are); older
        partitions are dropped once the new one is in."""
        self._writable()
        with self._write_lock:
            version = self._next_event_version()
            payload = (
                version.to_bytes(8, "little")
                + int(time.time()).to_bytes(4, "little")
                + _varint(len(state))
                + state
            )
            self.transport.execute(
                f"INSERT INTO {self.db}.event_state (version, saved_at, state) FORMAT RowBinary",
                payload,
            )
            for old in self._records(
                "SELECT DISTINCT partition FROM system.parts "
                f"WHERE database = '{self.db}' AND table = 'event_state' AND active"
            ):
                if int(old["partition"]) < version:
                    self.transport.execute(
                        f"ALTER TABLE {self.db}.event_state DROP PARTITION {int(old['partition'])}"
                    )

    def load_event_state(self) -> bytes | None:
        body = self.transport.execute(
            f"SELECT state FROM {self.db}.event_state ORDER BY version DESC LIMIT 1 "
            "FORMAT RowBinary"
        )
        if not body:
            return None
        length, start = _read_varint(body, 0)
        if start + length != len(body):
            raise ValueError("event state answer is cut short")
        return body[start:]

    def has_event_state(self) -> bool:
        found = self._records(f"SELECT count() AS n FROM {self.db}.event_state")
        return bool(found[0]["n"])

    def stored_events(self, query: EventFilters | None = None) -> list[Event]:
        q = query or EventFilters()
        clauses = ["deleted = 0"]
        for column in ("cc", "target", "scope", "status"):
            value = getattr(q, column)
            if value is not None:
                clauses.append(f"{column} = {literal(value)}")
        if q.asn is not None:
            clauses.append(f"has(asns, {literal(q.asn)})")
        if q.since is not None:
            clauses.append(f"(end_before IS NULL OR end_before >= {literal(q.since)})")
        if q.until is not None:
            clauses.append(f"onset_before < {literal(q.until)}")
        newest = ", ".join(
            f"argMax({c}, version) AS {c}"
            for c in ("deleted", "scope", "cc", "asns", "target", "status")
        )
        found = self._records(
            f"SELECT record FROM (SELECT event_id, {newest}, "
            "argMax(onset_before, version) AS onset_before, "
            "argMax(end_before, version) AS end_before, argMax(record, version) AS record "
            f"FROM {self.db}.stored_events GROUP BY event_id) WHERE {' AND '.join(clauses)}"
        )
        events = [msgspec.json.decode(r["record"], type=Event) for r in found]
        # National first, then by onset, country, networks, target (DuckDB's order).
        return sorted(
            events, key=lambda e: (e.scope == "network", e.onset.before, e.cc, e.asns, e.target)
        )

    def scan_from(self, location: ArchiveLocation) -> Iterator[MeasurementRow]:
        """Pages in archive order (segment, block offset, then UID within a block).

        The archive position is not in the sorting key, so each page reads the table; the
        events writer calls this once after a restart, for what its last save missed.
        """
        segment = literal(location.segment)
        base = (
            f" WHERE (archive_segment > {segment} OR (archive_segment = {segment} "
            f"AND archive_offset >= {int(location.offset)}))"
        )
        after = ""
        while True:
            page = self._records(
                f"SELECT {_SELECT} FROM {self._measurements(base + after)} "
                f"ORDER BY archive_segment, archive_offset, measurement_uid LIMIT {SCAN_PAGE}"
            )
            if not page:
                return
            last = page[-1]
            seg, off = literal(last["archive_segment"]), int(last["archive_offset"])
            uid = literal(last["measurement_uid"])
            after = (
                f" AND (archive_segment > {seg} OR (archive_segment = {seg} AND "
                f"(archive_offset > {off} OR (archive_offset = {off} "
                f"AND measurement_uid > {uid}))))"
            )
            for record in page:
                yield decode_row(record)
            if len(page) < SCAN_PAGE:
                return

    # -- people's reports ---------------------------------------------------------------------
    def add_people_reports(self, reports: Sequence[PeopleReport]) -> None:
        self._writable()
        if not reports:
            return
        lines = [
            _encode(
                {
                    "report_hour": _second(r.hour),
                    "probe_cc": r.probe_cc,
                    "probe_asn": r.probe_asn,
                    "target": r.target,
                    "failure": r.failure,
                    "note": r.note,
                }
            )
            for r in reports
        ]
        self.transport.execute(
            f"INSERT INTO {self.db}.people_reports "
            "(report_hour, probe_cc, probe_asn, target, failure, note) FORMAT JSONEachRow",
            b"\n".join(lines),
        )

    def _report_where(self, query: ReportFilters) -> str:
        clauses: list[str] = []
        for column in ("probe_cc", "probe_asn", "target"):
            value = getattr(query, column)
            if isinstance(value, tuple):
                clauses.append(f"{column} IN {_in_list(value)}" if value else "0")
            elif value is not None:
                clauses.append(f"{column} = {literal(value)}")
        if query.since is not None:
            clauses.append(f"report_hour >= {literal(query.since)}")
        if query.until is not None:
            clauses.append(f"report_hour < {literal(query.until)}")
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""

    def people_report_counts(self, query: ReportFilters | None = None) -> list[ReportCount]:
        where = self._report_where(query or ReportFilters())
        found = self._records(
            "SELECT probe_cc, probe_asn, target, toString(report_hour) AS hour, "
            f"count() AS reports FROM {self.db}.people_reports{where} "
            "GROUP BY report_hour, probe_cc, probe_asn, target "
            "ORDER BY report_hour, probe_cc, probe_asn, target"
        )
        return [
            ReportCount(
                r["probe_cc"],
                r["probe_asn"],
                r["target"],
                datetime.fromisoformat(r["hour"]),
                int(r["reports"]),
            )
            for r in found
        ]

    def people_reports(
        self, query: ReportFilters | None = None, *, limit: int = 100
    ) -> list[PeopleReport]:
        where = self._report_where(query or ReportFilters())
        found = self._records(
            "SELECT toString(report_hour) AS hour, probe_cc, probe_asn, target, failure, note "
            f"FROM {self.db}.people_reports{where} ORDER BY report_hour DESC, target, failure, "
            f"note NULLS FIRST, probe_cc, probe_asn LIMIT {int(limit)}"
        )
        return [
            PeopleReport(
                datetime.fromisoformat(r["hour"]),
                r["probe_cc"],
                r["probe_asn"],
                r["target"],
                r["failure"],
                r["note"],
            )
            for r in found
        ]

    def close(self) -> None:
        try:
            if not self.read_only:
                with self._write_lock:
                    self._write_checkpoint()
        finally:
            self.transport.close()


def _varint(n: int) -> bytes:
    """RowBinary's length prefix (unsigned LEB128)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _axis_value(axis: str, value: Any, grain: str) -> Any:
    """The bucket label DuckDB gives: ``YYYY-MM-DD``, or RFC 3339 for hours."""
    if axis != "measurement_start_day" or value is None:
        return value
    if grain == "hour":
        return rfc3339(datetime.fromisoformat(value))
    return str(value)[:10]
