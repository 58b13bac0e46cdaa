"""The tables, described once by column and logical type, and the DuckDB DDL made from them.

One wide table keeps a verdict next to the facts it is grouped by, so the hot aggregation is a
single scan with no join. Raw measurements stay in the archive; the table only points at them.
No key is declared: a UID is stored once because the writer checks before it inserts (the
``Store`` contract, docs/collector.md), which a column store can honour too.
"""

from __future__ import annotations

from censorwatch.store.base import COLUMNS

#: The ``measurements`` columns and their logical types; ``?`` marks a nullable column.
#: ``json`` is a list or a mapping, kept by DuckDB as JSON text (a column store may use
#: ``Array(String)`` / ``Map(String, Nullable(String))``).
MEASUREMENT_TYPES: dict[str, str] = {
    "measurement_uid": "text",
    "report_id": "text",
    "test_name": "text",
    "probe_cc": "text",
    "probe_asn": "text",
    "input": "text?",
    "domain": "text?",
    "target": "text?",
    "measurement_start_time": "timestamp",
    "received_at": "timestamp",
    "verdict": "text",
    "method": "text?",
    "confidence": "float",
    "confirmed": "bool",
    "fingerprint": "text?",
    "evidence": "json",
    "layers": "json",
    "signature": "text",
    "source": "text",
    "archive_segment": "text",
    "archive_offset": "int",
    "workarounds": "json?",
    "locate": "json?",
}
assert tuple(MEASUREMENT_TYPES) == COLUMNS

_DUCKDB_TYPES = {
    "text": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "json": "VARCHAR",
    "int": "BIGINT",
    "text[]": "VARCHAR[]",
}


def _duckdb_column(name: str, kind: str) -> str:
    nullable = kind.endswith("?")
    sql_type = _DUCKDB_TYPES[kind.rstrip("?")]
    return f"    {name:<22} {sql_type}{'' if nullable else ' NOT NULL'}"


MEASUREMENTS = (
    "CREATE TABLE IF NOT EXISTS measurements (\n"
    + ",\n".join(_duckdb_column(n, k) for n, k in MEASUREMENT_TYPES.items())
    + "\n)"
)

#: One row, updated in place by one statement after each commit's rows.
CHECKPOINT = """
CREATE TABLE IF NOT EXISTS archive_checkpoint (
    name      VARCHAR NOT NULL,
    segment   VARCHAR NOT NULL,
    "offset"  BIGINT NOT NULL
)
"""

INGESTED = """
CREATE TABLE IF NOT EXISTS ingested_sources (
    source_key   VARCHAR NOT NULL,
    size         BIGINT NOT NULL,
    measurements BIGINT NOT NULL,
    ingested_at  TIMESTAMP NOT NULL,
    errors       VARCHAR
)
"""

#: ``errors``: NULL for a file read to its end, else why it was not (done-with-errors); added
#: to tables made before it had the column.
INGESTED_ERRORS = "ALTER TABLE ingested_sources ADD COLUMN IF NOT EXISTS errors VARCHAR"

#: ``workarounds``: the verdict's circumvention summary (JSON text; NULL for a measurement
#: without one), added to tables made before it had the column.
MEASUREMENTS_WORKAROUNDS = (
    "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS workarounds VARCHAR DEFAULT NULL"
)

#: ``locate``: where the censor sits (the verdict's ``locate``, JSON text; NULL without a
#: localization), added to tables made before it had the column.
MEASUREMENTS_LOCATE = (
    "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS locate VARCHAR DEFAULT NULL"
)

#: Other names of stored measurements (``Store.add_aliases``): ingest's content names.
ALIASES = """
CREATE TABLE IF NOT EXISTS measurement_aliases (
    alias           VARCHAR NOT NULL,
    measurement_uid VARCHAR NOT NULL
)
"""


# -- stored events (Store.save_events / save_event_state) ----------------------------------------
# Added by ``CREATE TABLE IF NOT EXISTS`` when a store made before them is opened for writing;
# until ``censorwatch events rebuild`` fills them, the store has no event state and says so.

#: One row per saved version of an event (or a tombstone: ``deleted``); the newest ``version``
#: of an ``event_id`` wins on read. The filter columns repeat fields of ``record`` (the event's
#: JSON) so that a read filters in SQL without decoding records.
EVENT_TYPES: dict[str, str] = {
    "event_id": "text",
    "version": "int",
    "deleted": "bool",
    "scope": "text",
    "cc": "text",
    "asns": "text[]",
    "target": "text",
    "status": "text",
    "onset_before": "text",
    "end_before": "text?",
    "record": "json",
}

STORED_EVENTS = (
    "CREATE TABLE IF NOT EXISTS stored_events (\n"
    + ",\n".join(_duckdb_column(n, k) for n, k in EVENT_TYPES.items())
    + "\n)"
)

#: The events detector's state, one row per save; the newest ``version`` wins.
EVENT_STATE = """
CREATE TABLE IF NOT EXISTS event_state (
    version   BIGINT NOT NULL,
    saved_at  TIMESTAMP NOT NULL,
    state     BLOB NOT NULL
)
"""

EVENT_TABLES: tuple[str, ...] = (STORED_EVENTS, EVENT_STATE)

#: People's reports (``Store.add_people_reports``), apart from the measurements: where (the
#: country and network the collector looked up, the address itself never kept), what and which
#: hour. Nothing else: no address, no user agent, no minute, no arrival order that a read
#: returns (docs/collector.md, "People's reports").
PEOPLE_REPORTS = """
CREATE TABLE IF NOT EXISTS people_reports (
    report_hour TIMESTAMP NOT NULL,
    probe_cc    VARCHAR NOT NULL,
    probe_asn   VARCHAR NOT NULL,
    target      VARCHAR NOT NULL,
    failure     VARCHAR NOT NULL,
    note        VARCHAR
)
"""

ALL: tuple[str, ...] = (
    MEASUREMENTS,
    MEASUREMENTS_WORKAROUNDS,
    MEASUREMENTS_LOCATE,
    CHECKPOINT,
    INGESTED,
    INGESTED_ERRORS,
    ALIASES,
    *EVENT_TABLES,
    PEOPLE_REPORTS,
)
