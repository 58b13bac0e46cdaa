"""The ClickHouse tables, and the numbered migrations that build them (``schema_version``).

Designed for the engine rather than copied from DuckDB's:

* ``measurements`` is a ``ReplacingMergeTree``, so a UID inserted twice (a replay after a
  crash, a retried insert) collapses to one row. The engine collapses rows with an equal
  *sorting key*, so the key must name the measurement: ``(probe_cc, probe_asn,
  measurement_start_time, measurement_uid)``. It can lead with the columns the API filters on
  because those three are read from the measurement itself, which the UID is derived from (or,
  for OONI's data, names): every copy of one UID has the same key. ``domain`` is left out: it
  can come from the verdict, which a newer analysis may change. Rows of one UID also share a
  month, so ``PARTITION BY toYYYYMM(measurement_start_time)`` keeps them in one partition,
  where merges can meet them. Reads that must be exact before a merge say ``FINAL``.
* ``measurement_keys`` (fed by a materialised view on every insert) is ordered by UID, so the
  writer's ``existing`` check and ``row(uid)`` are index look-ups, not scans of every country.
* Few distinct values → ``LowCardinality`` (non-nullable columns only, see ``method``);
  ``evidence`` and ``layers`` are JSON ``String``s, read whole. Times are ``DateTime('UTC')``
  (seconds: 18.16 has no ``DateTime64``) with the microseconds beside them, so a row comes
  back exactly as it went in.
* The small tables are only appended to and read as "the greatest" or "any" row, so no
  statement needs a transaction or an ``UPDATE``.

Every statement is valid on ClickHouse 18.16 (Debian's server) and on current releases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from censorwatch.store.base import COLUMNS
from censorwatch.store.errors import StoreNotFoundError, UnsupportedStoreError

#: ``measurements`` columns and their ClickHouse types; times carry a ``_us`` companion.
MEASUREMENT_COLUMNS: dict[str, str] = {
    "measurement_uid": "String",
    "report_id": "String",
    "test_name": "LowCardinality(String)",
    "probe_cc": "LowCardinality(String)",
    "probe_asn": "LowCardinality(String)",
    "input": "Nullable(String)",
    "domain": "Nullable(String)",
    "target": "Nullable(String)",
    "measurement_start_time": "DateTime('UTC')",
    "measurement_start_us": "UInt32",
    "received_at": "DateTime('UTC')",
    "received_us": "UInt32",
    "verdict": "LowCardinality(String)",
    # Not LowCardinality: 18.16 loses a GROUP BY bucket whose LowCardinality(Nullable) values
    # are all NULL (tests/test_store_contract.py aggregates by method and caught it).
    "method": "Nullable(String)",
    "confidence": "Float64",
    "confirmed": "UInt8",
    "fingerprint": "Nullable(String)",
    "evidence": "String",
    "layers": "String",
    "signature": "LowCardinality(String)",
    "source": "LowCardinality(String)",
    "archive_segment": "LowCardinality(String)",
    "archive_offset": "UInt64",
    # The verdict's circumvention summary, JSON (NULL: none); added by migration 2.
    "workarounds": "Nullable(String)",
    # Where the censor sits, JSON (NULL: no localization); added by migration 4.
    "locate": "Nullable(String)",
}
#: Columns added after migration 1 made the table, with the migration that adds each.
ADDED_COLUMNS: dict[str, int] = {"workarounds": 2, "locate": 4}
#: The two time columns stored as seconds plus microseconds.
MICROSECONDS: dict[str, str] = {
    "measurement_start_time": "measurement_start_us",
    "received_at": "received_us",
}
assert [c for c in MEASUREMENT_COLUMNS if c not in MICROSECONDS.values()] == list(COLUMNS)

SORTING_KEY = "(probe_cc, probe_asn, measurement_start_time, measurement_uid)"


def _columns(types: dict[str, str]) -> str:
    return ",\n".join(f"    {name} {kind}" for name, kind in types.items())


_MEASUREMENTS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.measurements (
{_columns({k: v for k, v in MEASUREMENT_COLUMNS.items() if k not in ADDED_COLUMNS})}
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(measurement_start_time)
ORDER BY {SORTING_KEY}
"""

_KEYS = """
CREATE TABLE IF NOT EXISTS {db}.measurement_keys (
    measurement_uid String,
    probe_cc LowCardinality(String),
    probe_asn LowCardinality(String),
    measurement_start_time DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY measurement_uid
"""

_KEYS_FEED = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.measurement_keys_feed TO {db}.measurement_keys AS
SELECT measurement_uid, probe_cc, probe_asn, measurement_start_time FROM {db}.measurements
"""

#: One row per write; the checkpoint is the greatest (archive positions only grow).
_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS {db}.archive_checkpoints (
    segment String,
    offset UInt64,
    written_at DateTime('UTC')
) ENGINE = MergeTree()
ORDER BY (segment, offset)
"""

#: One row per attempt at a file; a row without errors means done.
_INGESTED = """
CREATE TABLE IF NOT EXISTS {db}.ingested_sources (
    source_key String,
    size UInt64,
    measurements UInt64,
    ingested_at DateTime('UTC'),
    ingested_ns UInt64,
    errors Nullable(String)
) ENGINE = MergeTree()
ORDER BY (source_key, ingested_ns)
"""

#: The first row of an alias (smallest ``added_ns``) is its UID.
_ALIASES = """
CREATE TABLE IF NOT EXISTS {db}.measurement_aliases (
    alias String,
    measurement_uid String,
    added_ns UInt64
) ENGINE = MergeTree()
ORDER BY alias
"""

#: One row per saved version of an event, or a tombstone (``deleted``); the greatest
#: ``version`` of an ``event_id`` wins on read (``argMax``, exact before any merge). The
#: filter columns repeat fields of ``record`` (the event's JSON) for filtering in SQL.
_EVENTS = """
CREATE TABLE IF NOT EXISTS {db}.stored_events (
    event_id String,
    version UInt64,
    deleted UInt8,
    scope LowCardinality(String),
    cc LowCardinality(String),
    asns Array(String),
    target String,
    status LowCardinality(String),
    onset_before String,
    end_before Nullable(String),
    record String
) ENGINE = ReplacingMergeTree(version)
ORDER BY event_id
"""

#: The events detector's state, one partition per save, so older saves are dropped whole.
_EVENT_STATE = """
CREATE TABLE IF NOT EXISTS {db}.event_state (
    version UInt64,
    saved_at DateTime('UTC'),
    state String
) ENGINE = MergeTree()
PARTITION BY version
ORDER BY version
"""

#: People's reports (migration 3), only appended to; counted per (country, network, target,
#: hour). The hour is all the time kept, and no column can tell one reporter from another.
_PEOPLE_REPORTS = """
CREATE TABLE IF NOT EXISTS {db}.people_reports (
    report_hour DateTime('UTC'),
    probe_cc LowCardinality(String),
    probe_asn LowCardinality(String),
    target String,
    failure LowCardinality(String),
    note Nullable(String)
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(report_hour)
ORDER BY (probe_cc, probe_asn, target, report_hour)
"""

_VERSIONS = """
CREATE TABLE IF NOT EXISTS {db}.schema_version (
    version UInt32,
    applied_at DateTime('UTC')
) ENGINE = MergeTree()
ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class AddColumn:
    """``ALTER TABLE … ADD COLUMN``, run only when the column is missing: 18.16 has no
    ``ADD COLUMN IF NOT EXISTS``, so ``prepare`` asks ``system.columns`` first."""

    table: str
    column: str
    kind: str

    def sql(self, db: str) -> str:
        return f"ALTER TABLE {db}.{self.table} ADD COLUMN {self.column} {self.kind}"

    def present(self, run: Run, db: str) -> bool:
        found = run(
            f"SELECT count() FROM system.columns WHERE database = '{db}' "
            f"AND table = '{self.table}' AND name = '{self.column}'"
        )
        return found.strip() != b"0"


@dataclass(frozen=True, slots=True)
class Migration:
    """Statements that take a store from ``version - 1`` to ``version``. Each is safe to run
    again (``IF NOT EXISTS``, or an ``AddColumn`` that checks), since a migration interrupted
    half-way is simply rerun."""

    version: int
    summary: str
    statements: tuple[str | AddColumn, ...]


def _added_in(version: int) -> tuple[AddColumn, ...]:
    return tuple(
        AddColumn("measurements", name, MEASUREMENT_COLUMNS[name])
        for name, added in ADDED_COLUMNS.items()
        if added == version
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "measurements, their UID index, checkpoints, ingested files, aliases, events",
        (
            _MEASUREMENTS,
            _KEYS,
            _KEYS_FEED,
            _CHECKPOINTS,
            _INGESTED,
            _ALIASES,
            _EVENTS,
            _EVENT_STATE,
        ),
    ),
    Migration(2, "measurements.workarounds: the circumvention summary", _added_in(2)),
    Migration(3, "people_reports: people's reports, apart from measurements", (_PEOPLE_REPORTS,)),
    Migration(4, "measurements.locate: where the censor sits", _added_in(4)),
)

_DATABASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

Run = Callable[[str], bytes]


def check_database_name(name: str) -> str:
    if _DATABASE_RE.fullmatch(name) is None:
        raise UnsupportedStoreError(
            f"ClickHouse database name {name!r} must be letters, digits and _ "
            "(e.g. clickhouse://127.0.0.1:8123/censorwatch)"
        )
    return name


def stored_version(run: Run, db: str) -> int | None:
    """The schema version of database ``db``: None if there is no such database, 0 if it
    holds no version table yet."""
    found = run(f"SELECT count() FROM system.databases WHERE name = '{db}'").strip()
    if found == b"0":
        return None
    tables = run(
        f"SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'schema_version'"
    ).strip()
    if tables == b"0":
        return 0
    text = run(f"SELECT max(version) FROM {db}.schema_version").strip()
    return int(text or 0)


def prepare(
    run: Run,
    db: str,
    url: str,
    *,
    writable: bool,
    create: bool,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> int:
    """Bring database ``db`` to the code's schema, or say why it cannot be used.

    A writable open creates a missing database (when ``create``) and applies the migrations
    it lacks, in order, each recorded once done. A read-only open never changes the store: a
    store behind the code is refused with the command that migrates it. A store ahead of the
    code is always refused (newer code wrote it). Returns the version in use.
    """
    # In version order, whatever order the tuple lists them in.
    migrations = tuple(sorted(migrations, key=lambda m: m.version))
    latest = migrations[-1].version
    version = stored_version(run, db)
    if version is None:
        if not (writable and create):
            raise StoreNotFoundError(f"no store at {url} (no database {db!r})")
        run(f"CREATE DATABASE IF NOT EXISTS {db}")
        version = 0
    if version > latest:
        raise UnsupportedStoreError(
            f"store {url} has schema version {version}, newer than this censorwatch "
            f"(which knows up to {latest}); upgrade censorwatch to read it"
        )
    if version < latest and not writable:
        raise UnsupportedStoreError(
            f"store {url} has schema version {version}, older than this censorwatch's "
            f"{latest}; migrate it with: censorwatch store optimize --db {url}"
        )
    if version < latest:
        run(_VERSIONS.format(db=db))
        for migration in migrations:
            if migration.version <= version:
                continue
            for statement in migration.statements:
                if isinstance(statement, AddColumn):
                    if not statement.present(run, db):
                        run(statement.sql(db))
                else:
                    run(statement.format(db=db))
            run(
                f"INSERT INTO {db}.schema_version (version, applied_at) "
                f"VALUES ({migration.version}, now())"
            )
    return latest
