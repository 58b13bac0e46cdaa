"""Aggregation latency over millions of stored verdicts (on demand; figures in docs/benchmarks.md).

Fills a DuckDB file with synthetic verdict rows (generated in SQL: 50 countries, 40 networks
each, 1,000 domains, one year, realistic verdict mix), then starts ``censorwatch serve
--read-only`` on loopback and times ``GET /api/v1/aggregation`` end to end, as a user sees it.

    .venv/bin/python bench/bench_aggregation.py --rows 10000000 --db /tmp/cw-agg.duckdb

Each query is timed twice: with rows in arrival order, and after ``censorwatch store
optimize`` has clustered them by country, network and time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

COUNTRIES = [
    "PK", "IR", "CN", "RU", "TR", "EG", "SA", "AE", "BY", "VE", "CU", "MM", "ET", "IN", "ID",
    "MY", "TH", "VN", "KZ", "UZ", "TM", "TJ", "AZ", "SY", "IQ", "JO", "LB", "QA", "KW", "BH",
    "OM", "YE", "SD", "ER", "NG", "UG", "TZ", "KE", "RW", "ZW", "BD", "LK", "NP", "AF", "BR",
    "MX", "US", "DE", "GB", "IT",
]  # fmt: skip

FILL = """
INSERT INTO measurements
SELECT
    'bench-' || i::VARCHAR,
    'report-' || (i // 100)::VARCHAR,
    'web_connectivity',
    list_extract($countries, (i % 50)::INTEGER + 1),
    'AS' || (10000 + (i % 50) * 100 + hash(i, 'asn') % 40)::VARCHAR,
    'https://d' || (hash(i, 'domain') % 1000)::VARCHAR || '.example/',
    'd' || (hash(i, 'domain') % 1000)::VARCHAR || '.example',
    NULL,
    TIMESTAMP '2024-01-01 00:00:00' + to_seconds((hash(i, 'time') % 31536000)::BIGINT),
    TIMESTAMP '2025-01-01 00:00:00',
    CASE WHEN hash(i, 'v') % 10 < 6 THEN 'ok' WHEN hash(i, 'v') % 10 < 8 THEN 'blocked'
         WHEN hash(i, 'v') % 10 = 8 THEN 'down' ELSE 'unknown' END,
    CASE WHEN hash(i, 'v') % 10 IN (6, 7)
         THEN list_extract(['dns.nxdomain', 'tcp.reset', 'tls.reset', 'http.blockpage'],
                           (hash(i, 'm') % 4)::INTEGER + 1) END,
    0.9,
    hash(i, 'v') % 10 = 6,
    NULL,
    '[]',
    '{}',
    'unverified',
    'synthetic',
    'seg-00000001.jsonl.gz',
    0
FROM range($start, $stop) t(i)
"""

QUERIES = {
    "PK × day × network (probe_cc=PK, axis_x=day, axis_y=probe_asn)": {
        "probe_cc": "PK", "axis_x": "measurement_start_day", "axis_y": "probe_asn",
    },
    "PK × day × network, Feb 2024 only": {
        "probe_cc": "PK", "axis_x": "measurement_start_day", "axis_y": "probe_asn",
        "since": "2024-02-01", "until": "2024-03-01",
    },
    "PK × network × method, blocked only": {
        "probe_cc": "PK", "verdict": "blocked", "axis_x": "probe_asn", "axis_y": "method",
    },
    "PK × day × network as CSV": {
        "probe_cc": "PK", "axis_x": "measurement_start_day", "axis_y": "probe_asn", "format": "CSV",
    },
    # Last: a server may go on with a query the client gave up on.
    "all countries × day (no filter)": {"axis_x": "measurement_start_day", "axis_y": "probe_cc"},
}  # fmt: skip


def fill(db: Path, rows: int) -> float:
    from censorwatch.store import open_store

    store = open_store(db)
    have = store.count()
    con = store._con  # the benchmark writes synthetic rows in bulk, bypassing the pipeline
    started = time.perf_counter()
    step = 1_000_000
    for start in range(have, rows, step):
        stop = min(rows, start + step)
        con.execute(FILL, {"countries": COUNTRIES, "start": start, "stop": stop})
        print(f"  {stop:,} rows", file=sys.stderr)
    con.execute("CHECKPOINT")
    store.close()
    return time.perf_counter() - started


def measure(db: Path | str, rows: int, runs: int, label: str, timeout: float = 60) -> None:
    """Time each query through ``censorwatch serve --read-only`` on loopback; a query that
    takes longer than ``timeout`` seconds is reported as such and not repeated."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "censorwatch", "serve", "--read-only", "--db", str(db),
                 "--archive", str(Path(tmp) / "archive"), "--port", "0"],
                stderr=err, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            url = None
            for _ in range(600):
                text = log.read_text()
                if " on http" in text:
                    url = text.split(" on ", 1)[1].split()[0].rstrip("/")
                    break
                time.sleep(0.1)
            assert url, log.read_text()
            with httpx.Client(base_url=url, timeout=timeout) as client:
                assert client.get("/health").status_code == 200
                print(f"\n{label}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
                print(f"\n| query ({rows:,} verdicts) | buckets | min ms | median ms | p95 ms |")
                print("|---|---:|---:|---:|---:|")
                for name, params in QUERIES.items():
                    t = time.perf_counter()
                    try:
                        client.get("/api/v1/aggregation", params=params)  # warm
                    except httpx.TimeoutException:
                        print(f"| {name} | – | over {timeout:.0f} s (the client's timeout) | | |")
                        continue
                    if time.perf_counter() - t > timeout / 3:  # a few runs only
                        runs = min(runs, 3)
                    times, buckets = [], 0
                    for _ in range(runs):
                        t = time.perf_counter()
                        r = client.get("/api/v1/aggregation", params=params)
                        times.append((time.perf_counter() - t) * 1000)
                        r.raise_for_status()
                        if params.get("format") == "CSV":
                            buckets = r.text.count("\n") - 1
                        else:
                            buckets = len(r.json()["result"])
                    times.sort()
                    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                    print(f"| {name} | {buckets:,} | {times[0]:.0f} | "
                          f"{statistics.median(times):.0f} | {p95:.0f} |")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "cw-agg.duckdb")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--skip-unclustered", action="store_true", help="only time after optimize")
    args = ap.parse_args()

    seconds = fill(args.db, args.rows)
    print(f"filled {args.db} to {args.rows:,} rows in {seconds:.0f}s "
          f"({args.db.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
    if not args.skip_unclustered:
        measure(args.db, args.rows, args.runs, "rows in arrival order")
    from censorwatch.store.duckdb_store import DuckDBStore

    started = time.perf_counter()
    store = DuckDBStore(args.db)
    store.optimize()
    store.close()
    print(f"\ncensorwatch store optimize: {time.perf_counter() - started:.0f}s")
    measure(args.db, args.rows, args.runs, "after `censorwatch store optimize`")


if __name__ == "__main__":
    main()
