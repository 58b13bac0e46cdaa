"""Ingesting OONI's bucket layout: filters, incremental runs, analysis, raw lookups, and the S3
path against a local S3-compatible server (moto) when one is installed."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from censorwatch.analysis import analyze
from censorwatch.collector.archive import Archive
from censorwatch.collector.pipeline import Pipeline
from censorwatch.store import open_store
from censorwatch.store.base import Filters
from collector_helpers import OONI
from s3_helpers import S3_ENV, local_s3, moto_command


def write_jsonl_gz(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))


def readdress(m: dict, cc: str, asn: str, when: str) -> bytes:
    return json.dumps(
        {**m, "probe_cc": cc, "probe_asn": asn, "measurement_start_time": when}
    ).encode()


def build_tree(root: Path) -> dict[str, list[dict]]:
    """A small bucket: web_connectivity in PK (16 Feb) and IR (17 Feb), signal in PK (17 Feb)."""
    qa = [json.loads(p.read_text()) for p in sorted((OONI / "wc05_qa").glob("*.json"))]
    signal = [
        json.loads((OONI / "odd" / n).read_text()) for n in ("signal_022.json", "signal_2627.json")
    ]
    pk = [readdress(m, "PK", "AS17557", f"2024-02-16 10:{i:02d}:00") for i, m in enumerate(qa[:24])]
    ir = [
        readdress(m, "IR", "AS197207", f"2024-02-17 03:{i:02d}:00") for i, m in enumerate(qa[24:])
    ]
    sg = [readdress(m, "PK", "AS9541", "2024-02-17 12:00:00") for m in signal]
    base = root / "raw"
    write_jsonl_gz(base / "20240216/10/PK/webconnectivity/2024021610_PK_wc.n0.0.jsonl.gz", pk[:12])
    write_jsonl_gz(
        base / "20240216/10/PK/webconnectivity/2024021610_PK_wc.n0.1.jsonl.gz",
        [*pk[12:], b'{"truncated": ', b"[1, 2]", b'{"test_name": "x"}'],
    )
    write_jsonl_gz(base / "20240217/03/IR/webconnectivity/2024021703_IR_wc.n0.0.jsonl.gz", ir)
    write_jsonl_gz(base / "20240217/12/PK/signal/2024021712_PK_signal.n0.0.jsonl.gz", sg)
    (base / "20240217/12/PK/signal/README.txt").write_text("not a measurement file")
    return {
        "pk": [json.loads(x) for x in pk],
        "ir": [json.loads(x) for x in ir],
        "signal": [json.loads(x) for x in sg],
    }


def run_ingest(tmp: Path, source: str, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "censorwatch", "ingest", "ooni", source,
         "--db", str(tmp / "cw.duckdb"), "--archive", str(tmp / "archive"), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def stored(tmp: Path, **filters) -> list[dict]:
    store = open_store(tmp / "cw.duckdb", read_only=True)
    try:
        return store.query(Filters(**filters), limit=10_000, offset=0)
    finally:
        store.close()


@pytest.mark.slow
def test_ingest_filters_then_increments(tmp_path: Path) -> None:
    tree = tmp_path / "bucket"
    data = build_tree(tree)
    out = run_ingest(tmp_path, str(tree), "--cc", "ir")
    assert f"ingested {len(data['ir'])} measurements from 1 files" in out
    assert {r["probe_cc"] for r in stored(tmp_path)} == {"IR"}

    out = run_ingest(tmp_path, str(tree), "--since", "2024-02-17", "--test", "signal")
    assert "ingested 2 measurements from 1 files" in out
    assert {r["test_name"] for r in stored(tmp_path, probe_cc="PK")} == {"signal"}

    out = run_ingest(tmp_path, str(tree))  # only what is new: the two PK web_connectivity files
    assert f"ingested {len(data['pk'])} measurements from 2 files" in out
    assert "3 unreadable, 2 files already ingested" in out
    out = run_ingest(tmp_path, str(tree))
    assert "ingested 0 measurements from 0 files" in out and "4 files already ingested" in out

    rows = stored(tmp_path)
    total = sum(len(v) for v in data.values())
    assert len(rows) == len({r["measurement_uid"] for r in rows}) == total
    assert {r["source"] for r in rows} == {"ooni"}


def test_ingested_measurements_are_analysed_and_readable(tmp_path: Path) -> None:
    tree = tmp_path / "bucket"
    data = build_tree(tree)
    run_ingest(tmp_path, str(tree), "--test", "web_connectivity")
    rows = {r["input"] + r["measurement_start_time"].isoformat(): r for r in stored(tmp_path)}
    assert len(rows) == len(data["pk"]) + len(data["ir"])
    for m in data["pk"] + data["ir"]:
        v = analyze(m)
        key = m["input"] + m["measurement_start_time"].replace(" ", "T")
        assert (rows[key]["verdict"], rows[key]["method"]) == (v.verdict, v.method)
    pipeline = Pipeline(Archive(tmp_path / "archive"), open_store(tmp_path / "cw.duckdb"))
    try:
        any_row = next(iter(rows.values()))
        raw = pipeline.raw(any_row["measurement_uid"])
        assert raw is not None and raw["input"] == any_row["input"]
    finally:
        pipeline.store.close()


def test_an_existing_ooni_uid_is_kept(tmp_path: Path) -> None:
    m = json.loads((OONI / "odd" / "web_connectivity_no_body.json").read_text())
    path = tmp_path / "bucket/raw/20190330/11/IT/webconnectivity/x.jsonl.gz"
    write_jsonl_gz(path, [json.dumps(m).encode()])
    run_ingest(tmp_path, str(tmp_path / "bucket"))
    assert [r["measurement_uid"] for r in stored(tmp_path)] == [m["measurement_uid"]]


@pytest.mark.skipif(moto_command() is None, reason="moto (S3-compatible server) is not installed")
@pytest.mark.slow
def test_s3_source_reads_the_same_layout(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    tree = tmp_path / "bucket"
    data = build_tree(tree)
    with local_s3("ooni-data") as (s3, endpoint):
        for path in tree.rglob("*.jsonl.gz"):
            s3.upload_file(str(path), "ooni-data", "mirror/" + path.relative_to(tree).as_posix())
        args = ("--endpoint-url", endpoint, "--cc", "PK")
        out = run_ingest(tmp_path, "s3://ooni-data/mirror", *args, env=S3_ENV)
        want = len(data["pk"]) + len(data["signal"])
        assert f"ingested {want} measurements from 3 files" in out
        out = run_ingest(tmp_path, "s3://ooni-data/mirror", *args, env=S3_ENV)
        assert "ingested 0 measurements from 0 files" in out
        assert len(stored(tmp_path)) == want
