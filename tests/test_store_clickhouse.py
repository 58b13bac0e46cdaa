"""What only the ClickHouse backend has: URLs, an unreachable server, the engine's own
deduplication before and after merges, schema versions, and the commands run against a real
server (Debian's 18.16, tests/clickhouse_server.py). The methods every backend shares are in
tests/test_store_contract.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from censorwatch.store import (
    StoreNotFoundError,
    StoreUnavailableError,
    UnsupportedStoreError,
    open_store,
    parse_store_url,
)
from censorwatch.store import clickhouse_schema as schema
from censorwatch.store.base import ArchiveLocation, Filters
from censorwatch.store.clickhouse_store import ClickHouseStore, encode_row
from censorwatch.store.clickhouse_transport import HTTPTransport
from test_store_contract import ROWS

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "censorwatch", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "400"},  # error boxes on one line each
    )


def test_clickhouse_urls_parse_to_a_server_and_a_database() -> None:
    parsed = parse_store_url("clickhouse://127.0.0.1:8123/censorwatch")
    assert (parsed.scheme, parsed.location, parsed.is_file) == (
        "clickhouse",
        "127.0.0.1:8123/censorwatch",
        False,
    )
    for bad in ("clickhouse://127.0.0.1:8123/", "clickhouse://127.0.0.1/a/b"):
        with pytest.raises(UnsupportedStoreError, match="names a server and a database"):
            open_store(bad)
    with pytest.raises(UnsupportedStoreError, match="letters, digits and _"):
        open_store("clickhouse://127.0.0.1:1/drop;table")


def test_an_unreachable_server_is_one_clear_error_soon() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"cannot reach ClickHouse at .*127\.0\.0\.1:1"):
        open_store("clickhouse://127.0.0.1:1/x")
    assert time.monotonic() - started < 10  # three attempts, backing off, then the error
    # Both kinds callers already report in one line.
    assert issubclass(StoreUnavailableError, StoreNotFoundError)
    assert issubclass(StoreUnavailableError, UnsupportedStoreError)
    for command in (["export", "out.csv"], ["events", "--json"], ["store", "optimize"]):
        refused = run_cli(*command, "--db", "clickhouse://127.0.0.1:1/x")
        assert refused.returncode == 2, refused.stderr
        assert "cannot reach ClickHouse" in refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout


def test_duplicates_collapse_before_and_after_merges(clickhouse_url: str) -> None:
    with open_store(clickhouse_url) as store:
        assert isinstance(store, ClickHouseStore)
        store.add(ROWS[:20])
        # What a replay after a crash does: the same rows inserted again, bypassing `existing`.
        for _ in range(2):
            store.transport.execute(
                f"INSERT INTO {store.db}.measurements FORMAT JSONEachRow",
                b"\n".join(encode_row(r) for r in ROWS[:10]),
            )
        raw = int(store.transport.execute(f"SELECT count() FROM {store.db}.measurements"))
        assert raw == 40  # three parts, not merged yet: the engine still holds every copy
        assert store.count() == 20 and len(store.uids()) == 20
        assert len(list(store.scan(Filters()))) == 20
        assert (
            sum(b["measurement_count"] for b in store.aggregate(Filters(), "probe_cc", None)) == 20
        )
        assert store.row(ROWS[3].measurement_uid) == ROWS[3]
        assert store.optimize() == 20
        raw = int(store.transport.execute(f"SELECT count() FROM {store.db}.measurements"))
        assert raw == 20  # merged: one row per UID on disk too


def test_the_schema_is_built_for_the_engine(clickhouse_url: str, clickhouse_server) -> None:
    with open_store(clickhouse_url) as store:
        tables = {
            r["name"]: r
            for r in store._records(
                "SELECT name, engine, partition_key, sorting_key FROM system.tables "
                f"WHERE database = '{store.db}'"
            )
        }
        m = tables["measurements"]
        assert m["engine"] == "ReplacingMergeTree"
        assert m["partition_key"] == "toYYYYMM(measurement_start_time)"
        assert m["sorting_key"].replace(" ", "") == schema.SORTING_KEY.strip("()").replace(" ", "")
        assert tables["measurement_keys"]["sorting_key"] == "measurement_uid"
        assert tables["stored_events"]["engine"] == "ReplacingMergeTree"
        types = {
            r["name"]: r["type"]
            for r in store._records(
                f"SELECT name, type FROM system.columns WHERE database = '{store.db}' "
                "AND table = 'measurements'"
            )
        }
        assert types["probe_cc"] == "LowCardinality(String)"
        assert types["evidence"] == "String"
    assert clickhouse_server.query("SELECT 1") == "1\n"


def test_schema_versions_migrate_on_a_writable_open_and_refuse_otherwise(
    clickhouse_url: str,
) -> None:
    with open_store(clickhouse_url) as store:
        store.add(ROWS[:3])
        db = store.db
        assert store.schema_version == schema.MIGRATIONS[-1].version
    later = schema.Migration(
        schema.MIGRATIONS[-1].version + 1,
        "a table a later release adds",
        ("CREATE TABLE IF NOT EXISTS {db}.later (x UInt8) ENGINE = MergeTree() ORDER BY x",),
    )
    newer_code = (*schema.MIGRATIONS, later)
    transport = HTTPTransport(clickhouse_url.replace("clickhouse://", "http://").rsplit("/", 1)[0])
    try:
        # Newer code opening the store read-only: refused, naming the command that migrates.
        with pytest.raises(UnsupportedStoreError, match="store optimize --db"):
            ClickHouseStore(transport, db, read_only=True, migrations=newer_code)
        # Opened for writing, the store is migrated and keeps its rows.
        migrated = ClickHouseStore(transport, db, migrations=newer_code)
        assert migrated.schema_version == later.version and migrated.count() == 3
        assert transport.execute(f"EXISTS TABLE {db}.later").strip() == b"1"
    finally:
        transport.close()
    # The code of now is older than the store: refused either way.
    for read_only in (True, False):
        with pytest.raises(UnsupportedStoreError, match="newer than this censorwatch"):
            open_store(clickhouse_url, read_only=read_only)


def test_the_checkpoint_is_written_at_most_once_a_second_and_on_close(
    clickhouse_url: str,
) -> None:
    with open_store(clickhouse_url) as store:
        for i in range(20):
            store.add([ROWS[i]], ArchiveLocation("seg-00000001.jsonl.gz", i))
        assert store.checkpoint() == ArchiveLocation("seg-00000001.jsonl.gz", 19)
        written = int(
            store.transport.execute(f"SELECT count() FROM {store.db}.archive_checkpoints")
        )
        assert 1 <= written < 20
    with open_store(clickhouse_url, read_only=True) as store:
        assert store.checkpoint() == ArchiveLocation("seg-00000001.jsonl.gz", 19)
        with pytest.raises(UnsupportedStoreError, match="read-only"):
            store.add(ROWS[:1])


def test_times_outside_what_clickhouse_holds_are_refused(clickhouse_url: str) -> None:
    with open_store(clickhouse_url) as store:
        old = ROWS[0].__copy__()
        old.measurement_start_time = datetime(1969, 12, 31)
        with pytest.raises(ValueError, match="outside what ClickHouse stores"):
            store.add([old])
        assert store.count() == 0


def test_commands_run_against_clickhouse(tmp_path: Path, clickhouse_url: str) -> None:
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from collector_helpers import make_measurement, template

    with open_store(tmp_path / "scratch.duckdb") as scratch:
        pipeline = Pipeline(Archive(tmp_path / "archive"), scratch)
        base = template()
        pipeline.commit([pipeline.prepare(make_measurement(i, base=base)) for i in range(3)])
        pipeline.close()
    archive = str(tmp_path / "archive")
    rebuilt = run_cli("store", "rebuild", "--db", clickhouse_url, "--archive", archive)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "3 measurements (3 from the archive" in rebuilt.stdout
    again = run_cli("store", "rebuild", "--db", clickhouse_url, "--archive", archive)
    assert again.returncode == 2 and "already holds 3 measurements" in again.stderr
    out = tmp_path / "x.csv"
    exported = run_cli("export", str(out), "--db", clickhouse_url)
    assert exported.returncode == 0, exported.stderr
    assert "wrote 3 measurements" in exported.stdout and len(out.read_text().splitlines()) == 4
    events = run_cli("events", "--db", clickhouse_url, "--json")
    assert events.returncode == 0, events.stderr
    optimized = run_cli("store", "optimize", "--db", clickhouse_url)
    assert optimized.returncode == 0 and "3 measurements" in optimized.stdout
    bundle = tmp_path / "b.zip"
    evidence = run_cli(
        "evidence", "export", "--db", clickhouse_url, "--archive", archive,
        "--asn", "AS17557", "--out", str(bundle),
    )  # fmt: skip
    assert evidence.returncode == 0, evidence.stdout + evidence.stderr
    assert bundle.stat().st_size > 0


def test_serve_reads_and_writes_clickhouse(tmp_path: Path, clickhouse_url: str) -> None:
    from collector_helpers import Server, make_measurement, open_report, template

    server = Server(clickhouse_url, tmp_path / "archive", tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            m = make_measurement(1, base=template())
            m["report_id"] = open_report(client, m)
            posted = client.post(f"/report/{m['report_id']}", json={"format": "json", "content": m})
            assert posted.status_code == 200, posted.text
            uid = posted.json()["measurement_uid"]
            listed = client.get("/api/v1/measurements", params={"limit": 10}).json()
            assert uid in [r["measurement_uid"] for r in listed["results"]]
            counted = client.get("/api/v1/aggregation", params={"axis_x": "probe_cc"}).json()
            assert sum(b["measurement_count"] for b in counted["result"]) >= 1
            # The explorer reads the same store: the list and the measurement's own page.
            page = client.get("/explorer/measurements")
            assert page.status_code == 200 and uid in page.text
            one = client.get(f"/explorer/measurements/{uid}")
            assert one.status_code == 200 and uid in one.text
            raw = client.get("/api/v1/raw_measurement", params={"measurement_uid": uid})
            assert raw.status_code == 200 and raw.json()["measurement_start_time"]
    finally:
        server.stop()
    with open_store(clickhouse_url, read_only=True) as store:
        assert uid in store.uids()


def test_stored_events_built_on_clickhouse_equal_duckdbs(
    tmp_path: Path, clickhouse_url: str
) -> None:
    from censorwatch.events.stored import StoredEvents
    from test_events_cli import verdicts
    from test_events_store import row

    rows = [row(v) for v in verdicts()]
    built = []
    for url in (str(tmp_path / "events.duckdb"), clickhouse_url):
        with open_store(url) as store:
            store.add(rows)
            StoredEvents.rebuild(store)
        with open_store(url, read_only=True) as store:
            assert store.has_event_state()
            built.append(store.stored_events())
    assert built[0] == built[1] and any(e.scope == "national" for e in built[1])
