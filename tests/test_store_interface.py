"""The Store interface: backends chosen by URL, typed rows, and idempotency without keys or
transactions (what a column store needs to implement it)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from censorwatch.store import (
    StoreNotFoundError,
    UnsupportedStoreError,
    open_store,
    parse_store_url,
)
from censorwatch.store.base import ArchiveLocation, Filters, MeasurementRow, Store
from collector_helpers import REPO


def row(i: int, **over) -> MeasurementRow:
    fields = dict(
        measurement_uid=f"uid-{i:03d}",
        report_id="r",
        test_name="web_connectivity",
        probe_cc="PK",
        probe_asn="AS17557",
        input=f"https://site{i}.example/",
        domain=f"site{i}.example",
        target=None,
        measurement_start_time=datetime(2024, 2, 16, i % 24),
        received_at=datetime(2024, 2, 20),
        verdict="blocked",
        method="dns.nxdomain",
        confidence=0.9,
        confirmed=True,
        fingerprint=None,
        evidence=["dns: NXDOMAIN", f"line {i}"],
        layers={"dns": "blocked", "tcp": None, "tls": None, "http": None},
        signature="unverified",
        source="collector",
        archive_segment="seg-00000001.jsonl.gz",
        archive_offset=i,
    )
    fields.update(over)
    return MeasurementRow(**fields)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("{tmp}/a.duckdb", "{tmp}/a.duckdb"),
        ("duckdb://{tmp}/a.duckdb", "{tmp}/a.duckdb"),  # duckdb:///abs/path
        ("duckdb:{tmp}/a.duckdb", "{tmp}/a.duckdb"),  # as a command-line Path folds it
        ("duckdb://rel/a.duckdb", "rel/a.duckdb"),
    ],
)
def test_duckdb_urls_and_plain_paths_name_the_same_file(
    tmp_path: Path, url: str, expected: str
) -> None:
    parsed = parse_store_url(url.format(tmp=tmp_path))
    assert parsed.scheme == "duckdb"
    assert parsed.location == expected.format(tmp=tmp_path)


def test_every_spelling_opens_one_store(tmp_path: Path) -> None:
    db = tmp_path / "cw.duckdb"
    with open_store(f"duckdb://{db}") as store:
        assert isinstance(store, Store)
        store.add([row(1)])
    for spelling in (db, str(db), f"duckdb://{db}", Path(f"duckdb://{db}")):
        with open_store(spelling, read_only=True) as store:
            assert store.existing(["uid-001"]) == {"uid-001"}


@pytest.mark.parametrize("url", ["mysql://localhost:3306/cw", "postgres:///cw", "s3://b/k"])
def test_an_unknown_scheme_names_the_supported_ones(url: str) -> None:
    with pytest.raises(UnsupportedStoreError) as err:
        open_store(url)
    assert url.split(":")[0] in str(err.value) and "duckdb:///" in str(err.value)


def test_reading_a_missing_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no store at"):
        open_store(f"duckdb://{tmp_path}/missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_rows_are_typed_both_ways(tmp_path: Path) -> None:
    with open_store(tmp_path / "cw.duckdb") as store:
        store.add([row(i) for i in range(5)])
        back = store.row("uid-003")
        assert back == row(3)
        assert back.evidence == ["dns: NXDOMAIN", "line 3"]
        assert back.layers["dns"] == "blocked" and back.layers["tcp"] is None
        assert back.location == ArchiveLocation("seg-00000001.jsonl.gz", 3)
        page = store.rows(Filters(), limit=2, offset=0, order="asc")
        assert all(isinstance(r, MeasurementRow) for r in page)
        assert [r.measurement_uid for r in page] == ["uid-000", "uid-001"]
        assert [r.measurement_uid for r in store.scan(Filters())] == [
            f"uid-{i:03d}" for i in range(5)
        ]
        # The published mapping keeps JSON text for the list and the mapping.
        published = store.get("uid-003")
        assert published is not None and json.loads(published["evidence"]) == back.evidence
        # Rows encode as plain JSON (what a column store's HTTP insert takes).
        decoded = msgspec.json.decode(msgspec.json.encode(back), type=MeasurementRow)
        assert decoded == back


def test_a_row_given_json_text_is_the_same_row() -> None:
    typed = row(1)
    text = row(1, evidence=json.dumps(typed.evidence), layers=json.dumps(typed.layers))
    assert text == typed


def test_add_is_idempotent_without_a_key_and_the_checkpoint_is_its_own_step(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path / "cw.duckdb") as store:
        schema = store._con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'measurements' "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
        ).fetchone()
        assert schema == (0,)  # no key: the write path checks, as a column store would
        # A batch with a UID twice, then the same rows again: each stored once.
        assert sorted(store.add([row(1), row(2), row(1)])) == ["uid-001", "uid-002"]
        assert store.add([row(2), row(3)], ArchiveLocation("seg-00000002.jsonl.gz", 10)) == [
            "uid-003"
        ]
        assert sorted(store.uids()) == ["uid-001", "uid-002", "uid-003"]
        assert store.checkpoint() == ArchiveLocation("seg-00000002.jsonl.gz", 10)
        # Rows with no checkpoint (a crash before the second step) leave it where it was.
        store.add([row(4)])
        assert store.checkpoint() == ArchiveLocation("seg-00000002.jsonl.gz", 10)
        store.mark_ingested("src/a", 10, 3)
        store.mark_ingested("src/a", 10, 3)
        assert store.ingested("src/a") and not store.ingested("src/b")
        assert store._con.execute("SELECT count(*) FROM ingested_sources").fetchone() == (1,)


def test_no_caller_outside_the_store_imports_a_backend() -> None:
    src = REPO / "src" / "censorwatch"
    offenders = []
    for path in src.rglob("*.py"):
        if path.parent.name == "store" and path.parent.parent == src:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith("censorwatch.store.duckdb_store") for n in names):
                offenders.append(str(path.relative_to(src)))
    assert offenders == []


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "censorwatch", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_commands_take_store_urls(tmp_path: Path) -> None:
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from collector_helpers import make_measurement, template

    db = tmp_path / "cw.duckdb"
    with open_store(f"duckdb://{db}") as store:
        pipeline = Pipeline(Archive(tmp_path / "archive"), store)
        base = template()
        pipeline.commit([pipeline.prepare(make_measurement(i, base=base)) for i in range(3)])
        pipeline.close()
    url = f"duckdb://{tmp_path}/rebuilt.duckdb"
    rebuilt = run_cli("store", "rebuild", "--db", url, "--archive", str(tmp_path / "archive"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "3 measurements" in rebuilt.stdout and "3 appended to the log" in rebuilt.stdout
    out = tmp_path / "x.csv"
    exported = run_cli("export", str(out), "--db", url)
    assert exported.returncode == 0, exported.stderr
    assert "wrote 3 measurements" in exported.stdout
    events = run_cli("events", "--db", url, "--json")
    assert events.returncode == 0, events.stderr
    bundle = tmp_path / "b.zip"
    evidence = run_cli(
        "evidence", "export", "--db", url, "--archive", str(tmp_path / "archive"),
        "--asn", "AS17557", "--out", str(bundle),
    )  # fmt: skip
    assert evidence.returncode == 0, evidence.stdout + evidence.stderr
    assert bundle.exists()
    for command in (["export", str(out)], ["events", "--json"], ["store", "optimize"]):
        refused = run_cli(*command, "--db", "postgres://127.0.0.1:5432/cw")
        assert refused.returncode == 2, (command, refused.stderr)
        assert "postgres" in refused.stderr and "duckdb:///" in refused.stderr


@pytest.mark.slow
def test_serve_and_ingest_take_store_urls(tmp_path: Path) -> None:
    import httpx

    from collector_helpers import Server

    url = f"duckdb://{tmp_path}/cw.duckdb"
    (tmp_path / "bucket" / "raw").mkdir(parents=True)
    ingested = run_cli("ingest", "ooni", str(tmp_path / "bucket"), "--db", url, "--archive",
                       str(tmp_path / "archive"))  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert "0 measurements stored" in ingested.stdout
    server = Server(url, tmp_path / "archive", tmp_path / "server.log")  # type: ignore[arg-type]
    try:
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        assert httpx.get(server.url + "/api/v1/log/sth", timeout=10).json()["tree_size"] == 0
    finally:
        server.stop()
    assert (tmp_path / "cw.duckdb").exists()
    refused = run_cli("serve", "--db", "postgres://127.0.0.1/cw", "--port", "0")
    assert refused.returncode == 2 and "duckdb:///" in refused.stderr


def test_optimize_refuses_a_missing_store_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.duckdb"
    refused = run_cli("store", "optimize", "--db", f"duckdb://{missing}")
    assert refused.returncode == 2 and "no store at" in refused.stderr
    assert not missing.exists()
    with pytest.raises(StoreNotFoundError):
        open_store(missing, create=False)
