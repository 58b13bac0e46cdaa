"""Collector throughput and the 100,000-measurement crash run (on demand; docs/benchmarks.md).

1. Sustained submissions/s: ``censorwatch serve`` on loopback, several client processes each
   with several keep-alive connections submit distinct real-shaped measurements (a 10 KB OONI
   web_connectivity measurement, re-addressed); every one is analysed, archived with fsync and
   stored before its acknowledgement.
2. The crash run: tests/test_collector_load.py with ``CW_LOAD_COUNT`` measurements (SIGKILL
   half-way, torn archive tail, restart, resubmission; checks DB == archive == acknowledged).

    .venv/bin/python bench/bench_collector.py --count 20000 --crash-count 100000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from collector_helpers import Server, make_measurement, open_report, template  # noqa: E402


def client_process(url: str, first: int, count: int, threads: int, out: mp.Queue) -> None:
    base = template()
    with httpx.Client(base_url=url, timeout=60) as client:
        report_id = open_report(client, make_measurement(first, base=base))
    bodies = []
    for i in range(first, first + count):
        m = make_measurement(i, base=base)
        m["report_id"] = report_id
        bodies.append(json.dumps({"format": "json", "content": m}).encode())
    lock = threading.Lock()
    acked = [0]
    errors = [0]

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for body in bodies[k::threads]:
                r = c.post(
                    f"/report/{report_id}",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                with lock:
                    if r.status_code == 200:
                        acked[0] += 1
                    else:
                        errors[0] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(("done", acked[0], errors[0], started, time.perf_counter()))


def throughput(count: int, processes: int, threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
        try:
            q: mp.Queue = mp.Queue()
            per = count // processes
            procs = [
                mp.Process(target=client_process, args=(server.url, p * per, per, threads, q))
                for p in range(processes)
            ]
            for p in procs:
                p.start()
            results = []
            while len(results) < processes:
                item = q.get()
                if item[0] == "done":
                    results.append(item)
            for p in procs:
                p.join()
            acked = sum(r[1] for r in results)
            errors = sum(r[2] for r in results)
            wall = max(r[4] for r in results) - min(r[3] for r in results)
            metrics = httpx.get(server.url + "/metrics", timeout=30).text
        finally:
            server.stop()
        size = sum(p.stat().st_size for p in tmp_path.glob("cw.duckdb*"))
        archive = sum(p.stat().st_size for p in (tmp_path / "archive").glob("seg-*"))

    def metric(name: str) -> float:
        m = re.search(rf"^{name} (\S+)$", metrics, re.M)
        return float(m.group(1)) if m else float("nan")

    commits = metric("censorwatch_commit_batch_size_count")
    batch = metric("censorwatch_commit_batch_size_sum") / commits
    commit_s = metric("censorwatch_commit_seconds_sum")
    commit_ms = 1000 * commit_s / metric("censorwatch_commit_seconds_count")
    load = os.getloadavg()[0]
    print(f"\nthroughput run; load average {load:.1f} on {os.cpu_count()} cores; "
          f"the writer was busy {commit_s:.0f} s of {wall:.0f} s")  # fmt: skip
    print("| clients | acknowledged | errors | seconds | submissions/s | fsyncs | "
          "mean batch | mean commit ms | archive MiB | db MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {processes}×{threads} | {acked:,} | {errors} | {wall:.1f} | {acked / wall:.0f} | "
          f"{commits:,.0f} | {batch:.1f} | {commit_ms:.1f} | {archive / 2**20:.1f} | "
          f"{size / 2**20:.1f} |")  # fmt: skip


def crash_run(count: int) -> None:
    env = {**os.environ, "CW_LOAD_COUNT": str(count)}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--timeout", "3600", str(REPO / "tests" / "test_collector_load.py")],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if "measurements, SIGKILL" in line]
    status = "passed" if proc.returncode == 0 else "FAILED"
    print(f"crash run: {status} in {time.perf_counter() - started:.0f}s: {' '.join(lines)}")
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20_000, help="measurements for the throughput run")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16, help="connections per client process")
    ap.add_argument("--crash-count", type=int, default=100_000, help="0 skips the crash run")
    args = ap.parse_args()
    throughput(args.count, args.processes, args.threads)
    if args.crash_count:
        crash_run(args.crash_count)


if __name__ == "__main__":
    main()
