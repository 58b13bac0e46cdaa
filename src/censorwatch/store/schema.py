"""The schema, in SQL that DuckDB and ClickHouse both read (docs/collector.md explains it).

One wide table keeps a verdict next to the facts it is grouped by, so the hot aggregation is a
single scan with no join. Raw measurements stay in the archive; the table only points at them.
"""

from __future__ import annotations

MEASUREMENTS = """
CREATE TABLE IF NOT EXISTS measurements (
    measurement_uid        VARCHAR NOT NULL PRIMARY KEY,
    report_id              VARCHAR NOT NULL,
    test_name              VARCHAR NOT NULL,
    probe_cc               VARCHAR NOT NULL,
    probe_asn              VARCHAR NOT NULL,
    input                  VARCHAR,
    domain                 VARCHAR,
    target                 VARCHAR,
    measurement_start_time TIMESTAMP NOT NULL,
    received_at            TIMESTAMP NOT NULL,
    verdict                VARCHAR NOT NULL,
    method                 VARCHAR,
    confidence             DOUBLE NOT NULL,
    confirmed              BOOLEAN NOT NULL,
    fingerprint            VARCHAR,
    evidence               VARCHAR NOT NULL,
    layers                 VARCHAR NOT NULL,
    signature              VARCHAR NOT NULL,
    source                 VARCHAR NOT NULL,
    archive_segment        VARCHAR NOT NULL,
    archive_offset         BIGINT NOT NULL
)
"""

CHECKPOINT = """
CREATE TABLE IF NOT EXISTS archive_checkpoint (
    name      VARCHAR NOT NULL PRIMARY KEY,
    segment   VARCHAR NOT NULL,
    "offset"  BIGINT NOT NULL
)
"""

INGESTED = """
CREATE TABLE IF NOT EXISTS ingested_sources (
    source_key   VARCHAR NOT NULL PRIMARY KEY,
    size         BIGINT NOT NULL,
    measurements BIGINT NOT NULL,
    ingested_at  TIMESTAMP NOT NULL
)
"""

ALL: tuple[str, ...] = (MEASUREMENTS, CHECKPOINT, INGESTED)
