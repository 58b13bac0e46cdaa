"""``censorwatch reprocess`` on a real Dask cluster: a scheduler and two workers on loopback.

The rows (in DuckDB, in the Parquet parts, and in a ClickHouse store the workers write
themselves) equal those of a single-process ``ingest ooni`` over the same bucket (every
layout), as do those of ``ingest ooni --scheduler`` and of a reprocess of the archive; a second
run does nothing, a corrupt file is named and skipped, and a worker killed mid-run loses
nothing."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from collector_helpers import OONI
from test_ingest_layouts import build_bucket, jsonl, put, real

pytestmark = pytest.mark.slow

DASK = Path(sys.executable).with_name("dask")


class DaskCluster:
    """A scheduler and workers as separate processes, as on a real cluster."""

    def __init__(self, tmp: Path, workers: int) -> None:
        self.file = tmp / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp}
        self.procs.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", self.file], **common,
        ))  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.file.exists() or not self.file.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [
            subprocess.Popen(
                [
                    DASK,
                    "worker",
                    self.address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                **common,
            )
            for _ in range(workers)
        ]
        self.procs += self.workers
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=30)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    started = DaskCluster(tmp_path, 2)
    try:
        yield started
    finally:
        started.stop()


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "censorwatch", *map(str, args)]


def run(*args: str | Path, code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(*args), capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr + proc.stdout
    return proc


def verdicts(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT measurement_uid, verdict, method, confidence FROM measurements ORDER BY 1"
        ).fetchall()
    finally:
        con.close()


def parquet_rows(out: Path) -> list[tuple]:
    return duckdb.sql(
        "SELECT measurement_uid, verdict, method, confidence, probe_cc, CAST(day AS VARCHAR), "
        "strftime(measurement_start_time, '%Y-%m-%d') AS start_day "
        f"FROM read_parquet('{out}/*/*/*.parquet', hive_partitioning = true) ORDER BY 1"
    ).fetchall()


def single_process(tmp: Path, bucket: Path) -> list[tuple]:
    db = tmp / "single.duckdb"
    run("ingest", "ooni", bucket, "--db", db, "--archive", tmp / "archive")
    return verdicts(db)


def test_a_cluster_run_equals_a_single_process_ingest(tmp_path: Path, cluster: DaskCluster):
    bucket = tmp_path / "bucket"
    build_bucket(bucket)
    db, out = tmp_path / "cluster.duckdb", tmp_path / "parquet"
    proc = run("reprocess", bucket, "--scheduler", cluster.address, "--db", db, "--out", out)
    assert "dashboard: http://" in proc.stdout
    expected = single_process(tmp_path, bucket)
    assert len(expected) == 25  # every layout, each measurement once
    assert verdicts(db) == expected

    parts = parquet_rows(out)
    assert parts and all(day == start_day for *_, day, start_day in parts)  # by its day
    assert [(uid, v, m, c) for uid, v, m, c, *_ in parts] == expected  # the same rows, once
    countries = {cc for *_, cc, _, _ in parts}
    assert countries == {"PK", "IR", "IT", "BR"}

    # The collector's archive (here, the single-process run's) is a source too.
    from_archive = tmp_path / "from-archive.duckdb"
    run("reprocess", tmp_path / "archive", "--scheduler", cluster.address, "--db", from_archive)
    assert verdicts(from_archive) == expected
    # ``ingest ooni --scheduler``: the workers read and analyse, this process commits.
    ingested = tmp_path / "ingested.duckdb"
    proc = run("ingest", "ooni", bucket, "--db", ingested, "--archive", tmp_path / "archive2",
               "--scheduler", cluster.address)  # fmt: skip
    assert "dashboard: http://" in proc.stderr
    assert verdicts(ingested) == expected


def test_a_second_run_does_nothing_and_a_corrupt_file_is_named(
    tmp_path: Path, cluster: DaskCluster
):
    bucket = tmp_path / "bucket"
    build_bucket(bucket)
    db = tmp_path / "cluster.duckdb"
    run("reprocess", bucket, "--scheduler", cluster.address, "--db", db)
    before = verdicts(db)
    again = run("reprocess", bucket, "--scheduler", cluster.address, "--db", db)
    assert "from 0 files" in again.stdout and "8 files done before" in again.stdout

    bad = "raw/20240218/01/PK/webconnectivity/2024021801_PK_webconnectivity.n0.0.jsonl.gz"
    put(bucket, bad, b"not gzip at all")
    good = "raw/20240218/02/PK/webconnectivity/2024021802_PK_webconnectivity.n0.0.jsonl.gz"
    qa = sorted((OONI / "wc05_qa").glob("*.json"))
    put(bucket, good, gzip.compress(jsonl(real(qa[30:33], "PK", "AS17557", "2024-02-18", 2))))
    third = run("reprocess", bucket, "--scheduler", cluster.address, "--db", db, code=1)
    assert bad in third.stderr and "done with errors" in third.stderr
    assert "from 2 files" in third.stdout
    after = verdicts(db)
    assert len(after) == len(before) + 3 and set(before) <= set(after)
    fourth = run("reprocess", bucket, "--scheduler", cluster.address, "--db", db)
    assert "from 0 files" in fourth.stdout  # the bad file is recorded with its error


def test_rows_travel_back_only_to_a_client_that_writes_them(tmp_path: Path, cluster: DaskCluster):
    """Parquet written by the workers: the results carry no rows (pickling and moving them
    would take CPU from the analysis). A DuckDB store written by the client: they do."""
    from distributed import Client

    from censorwatch.ingest.sources import Selection
    from censorwatch.reprocess.run import Target, manifest_records, plan, reprocess
    from censorwatch.reprocess.tasks import AnalysisSpec
    from censorwatch.store import open_store

    bucket, out = tmp_path / "bucket", tmp_path / "parquet"
    build_bucket(bucket)
    tasks = plan(str(bucket), Selection(), AnalysisSpec(), manifest_records(out)).tasks
    sent: list[int] = []
    with Client(cluster.address, timeout="30s") as client:
        stats = reprocess(
            client, tasks, Target(None, None, out), on_result=lambda r: sent.append(len(r.rows))
        )
        assert len(sent) == len(tasks) and sum(sent) == 0
        assert len(parquet_rows(out)) == stats.stored == 25  # each measurement once

        sent.clear()
        store = open_store(str(tmp_path / "client.duckdb"))
        try:
            reprocess(
                client,
                tasks,
                Target(store, None, None),
                on_result=lambda r: sent.append(len(r.rows)),
            )
        finally:
            store.close()
    assert sum(sent) == 25
    assert verdicts(tmp_path / "client.duckdb") == single_process(tmp_path, bucket)


def many_files(bucket: Path, files: int, per_file: int) -> int:
    qa = sorted((OONI / "wc05_qa").glob("*.json"))
    for n in range(files):
        hour, cc = n % 24, ("PK", "IR", "BR", "IT")[n // 24 % 4]
        day = f"2024-03-{1 + n // 96:02d}"
        key = (
            f"raw/{day.replace('-', '')}/{hour:02d}/{cc}/webconnectivity/"
            f"{day.replace('-', '')}{hour:02d}_{cc}_webconnectivity.n0.0.jsonl.gz"
        )
        names = [qa[(n + i) % len(qa)] for i in range(per_file)]
        put(bucket, key, gzip.compress(jsonl(real(names, cc, "AS1", day, hour))))
    return files * per_file


def test_a_worker_killed_mid_run_loses_nothing(tmp_path: Path, cluster: DaskCluster):
    bucket = tmp_path / "bucket"
    total = many_files(bucket, 48, 20)
    db, out = tmp_path / "cluster.duckdb", tmp_path / "parquet"
    proc = subprocess.Popen(
        command("reprocess", bucket, "--scheduler", cluster.address, "--db", db, "--out", out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    manifest = out / "_manifest"
    deadline = time.monotonic() + 60
    while not (manifest.is_dir() and any(manifest.glob("*.json"))):
        assert time.monotonic() < deadline and proc.poll() is None, "no task finished"
        time.sleep(0.02)
    assert proc.poll() is None  # the run is still going when the worker dies
    os.kill(cluster.workers[0].pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr + stdout
    assert len(list(manifest.glob("*.json"))) == 48
    assert verdicts(db) == single_process(tmp_path, bucket)
    rows = verdicts(db)
    assert len(rows) == total == len({uid for uid, *_ in rows})
    parts = parquet_rows(out)
    assert len(parts) == total == len({uid for uid, *_ in parts})


def test_workers_write_a_clickhouse_store_themselves(
    tmp_path: Path, cluster: DaskCluster, clickhouse_url: str
):
    from censorwatch.store import open_store
    from censorwatch.store.base import Filters

    bucket = tmp_path / "bucket"
    build_bucket(bucket)
    run("reprocess", bucket, "--scheduler", cluster.address, "--db", clickhouse_url)
    store = open_store(clickhouse_url, read_only=True)
    try:
        rows = sorted(
            (r.measurement_uid, r.verdict, r.method, r.confidence) for r in store.scan(Filters())
        )
    finally:
        store.close()
    assert rows == single_process(tmp_path, bucket)
    again = run("reprocess", bucket, "--scheduler", cluster.address, "--db", clickhouse_url)
    assert "from 0 files" in again.stdout  # the workers recorded the files in the server store
