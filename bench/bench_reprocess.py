"""Reprocessing rate of the whole `censorwatch reprocess` command on a Dask cluster, by workers.

    .venv/bin/python bench/bench_reprocess.py [--files 96] [--per-file 200] [--workers 1,2]
                                              [--fingerprints DIR] [--rounds 1]

Builds a bucket tree of ``--files`` ``raw/…/*.jsonl.gz`` files (one folder each, so one task
each) of OONI's 50 real wc05_qa web_connectivity measurements, moved to distinct times so each
line is its own measurement. Then, each as a subprocess timed from start to exit:

1. the single-process road: ``censorwatch ingest ooni TREE --db … --archive …`` (reading,
   analysis, archive, transparency log, DuckDB);
2. for each worker count: a real ``dask scheduler`` and that many ``dask worker --nworkers 1
   --nthreads 1`` processes on loopback (started before the clock, like a cluster that is up),
   and ``censorwatch reprocess TREE --scheduler … --out PARQUET --fingerprints DIR`` (the
   client, the tasks, Parquet parts written by the workers).

Rates are measurements per wall-clock second of the whole command (interpreter start, imports,
connecting, planning included). All clusters are up at once and each round runs every command
once, the cluster runs in alternating order, so that a noisy minute of a shared machine falls
on both sides of a comparison: the speed-up is reported per round (its median and range) and
from the best time of each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DASK = Path(sys.executable).with_name("dask")


def build_tree(root: Path, files: int, per_file: int) -> int:
    """``files`` hourly jsonl.gz files of ``per_file`` real measurements each."""
    qa = sorted((SHARED / "ooni" / "wc05_qa").glob("*.json"))
    base = [json.loads(p.read_text()) for p in qa]
    for m in base:
        m.pop("measurement_uid", None)
    for n in range(files):
        day, hour = 1 + n // 24, n % 24
        stamp = f"202403{day:02d}"
        folder = root / f"raw/{stamp}/{hour:02d}/PK/webconnectivity"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(per_file):
            when = f"2024-03-{day:02d} {hour:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
            m = {**base[(n + i) % len(base)], "measurement_start_time": when,
                 "report_id": f"bench-{n}-{i}"}  # fmt: skip
            lines.append(json.dumps(m).encode())
        name = f"{stamp}{hour:02d}_PK_webconnectivity.n0.0.jsonl.gz"
        (folder / name).write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return files * per_file


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed


class Cluster:
    """A scheduler and ``workers`` single-threaded worker processes on loopback."""

    def __init__(self, tmp: Path, workers: int) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        file = tmp / "scheduler.json"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp}
        self.procs = [subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", file], **quiet,
        )]  # fmt: skip
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip():
            if time.monotonic() > deadline:
                self.stop()
                sys.exit("the scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(file.read_text())["address"]
        self.procs += [
            subprocess.Popen(
                [
                    DASK,
                    "worker",
                    self.address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                **quiet,
            )
            for _ in range(workers)
        ]
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--per-file", type=int, default=200)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--fingerprints", type=Path, default=SHARED / "fingerprints")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "censorwatch"]
    fps = ["--fingerprints", str(args.fingerprints)]
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-reprocess-") as tmp_name:
        tmp = Path(tmp_name)
        total = build_tree(tmp / "bucket", args.files, args.per_file)
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"{args.files} files, {total} measurements")  # fmt: skip
        single = "single process (ingest ooni)"
        times: dict[str, list[float]] = {single: []}
        clusters = {w: Cluster(tmp / f"cluster{w}", w) for w in counts}
        try:
            for r in range(args.rounds):
                ingest = [*cli, "ingest", "ooni", str(tmp / "bucket"), "--db",
                          str(tmp / f"s{r}.db"), "--archive", str(tmp / f"a{r}"), *fps]  # fmt: skip
                times[single].append(timed(ingest))
                for workers in counts if r % 2 == 0 else counts[::-1]:
                    out = tmp / f"out-{workers}-{r}"
                    address = clusters[workers].address
                    seconds = timed([*cli, "reprocess", str(tmp / "bucket"), "--scheduler",
                                     address, "--out", str(out), *fps])  # fmt: skip
                    times.setdefault(f"reprocess, {workers} worker(s)", []).append(seconds)
                    shutil.rmtree(out)
                done = ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
                print(f"round {r + 1}: {done}", flush=True)
        finally:
            for cluster in clusters.values():
                cluster.stop()
        for label, runs in times.items():
            best = min(runs)
            print(f"{label:<34} {best:7.1f} s  {total / best:8.0f} measurements/s (best)")
        one, two = (times.get(f"reprocess, {w} worker(s)") for w in (1, 2))
        if one and two:
            ratios = [a / b for a, b in zip(one, two, strict=True)]
            print(f"speed-up 1 -> 2 workers: {min(one) / min(two):.2f}x from the best times; "
                  f"per round median {_median(ratios):.2f}x "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
