"""Reading stored events at 1 M and 10 M verdicts (on demand; figures in docs/benchmarks.md).

Fills a DuckDB store with synthetic verdict rows generated in SQL (50 countries, 500 networks,
200 targets of which X's hosts, one year, a few hundred true blocks over tls.reset, dns.forged
and tcp.timeout, 1 % stray timeouts), runs ``censorwatch events rebuild --db`` once, then starts
``censorwatch serve --read-only`` on loopback and times, end to end over HTTP,
``GET /api/v1/events`` (all, and one country) and the explorer's overview page.

    .venv/bin/python bench/bench_events_stored.py --sizes 1000000 10000000 --dir /tmp/cw-ev

A store already filled to its size is reused (``--rebuild`` re-runs the detection anyway).
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
NETWORKS = 500  # network n is in country n % 50
X_HOSTS = ["x.com", "twitter.com", "api.x.com", "abs.twimg.com", "pbs.twimg.com", "t.co"]
TARGETS = 200  # X's hosts, then d6.example … d199.example
BLOCKS = 300
YEAR = 365 * 86400

#: The true blocks: a network, a target and a span of 3 to 60 days. X is blocked nationally on
#: every network of the first five countries for a month; the rest fall on random series.
BLOCKS_SQL = """
CREATE OR REPLACE TEMP TABLE blocks AS
SELECT b, (hash(b * 4 + 1) % $networks)::INTEGER AS net,
       (hash(b * 4 + 2) % $targets)::INTEGER AS tgt,
       (hash(b * 4 + 3) % ($year - 60 * 86400))::BIGINT AS start_s,
       (3 * 86400 + hash(b * 4) % (57 * 86400))::BIGINT AS span_s,
       list_extract(['tls.reset', 'dns.forged', 'tcp.timeout'], (b % 3)::INTEGER + 1) AS method
FROM range($blocks - 50) t(b)
UNION ALL
SELECT 100000 + n * 10 + h, n, h, 40 * 86400, 30 * 86400, 'tls.reset'
FROM range(0, $networks) a(n), range(0, 5) c(h) WHERE n % 50 < 5
"""

#: Rows in time order, so that archive order (the offset) is arrival order, as a collector's.
#: A network's vantage runs every target in one report per hour; a row's series is
#: (network, target), its time the report's hour plus its place in the run.
FILL = """
INSERT INTO measurements
WITH base AS (
    SELECT i,
           (hash(i * 4 + 1) % $networks)::INTEGER AS net,
           (hash(i * 4 + 2) % $targets)::INTEGER AS tgt,
           (hash(i * 4 + 3) % $year)::BIGINT AS at_s,
           hash(i * 4) % 100 AS noise
    FROM range($start, $stop) t(i)
), tagged AS (
    SELECT base.*, (SELECT max(method) FROM blocks
                    WHERE blocks.net = base.net AND blocks.tgt = base.tgt
                      AND base.at_s >= start_s AND base.at_s < start_s + span_s) AS blocked_by
    FROM base
)
SELECT
    'bench-' || i::VARCHAR,
    'r' || (at_s // 3600)::VARCHAR || '_AS' || (10000 + net)::VARCHAR,
    'web_connectivity',
    list_extract($countries, (net % 50)::INTEGER + 1),
    'AS' || (10000 + net)::VARCHAR,
    'https://' || host || '/',
    host,
    host,
    TIMESTAMP '2024-01-01 00:00:00' + to_seconds(at_s),
    TIMESTAMP '2025-01-01 00:00:00',
    CASE WHEN blocked_by IS NOT NULL OR noise = 0 THEN 'blocked' ELSE 'ok' END,
    CASE WHEN blocked_by IS NOT NULL THEN blocked_by WHEN noise = 0 THEN 'tcp.timeout' END,
    0.9, false, NULL, '[]', '{}', 'unverified', 'synthetic',
    'seg-00000001.jsonl.gz',
    i
FROM (SELECT *, CASE WHEN tgt < 6 THEN list_extract($x_hosts, tgt + 1)
                     ELSE 'd' || tgt::VARCHAR || '.example' END AS host FROM tagged)
ORDER BY at_s
"""


def fill(db: Path, rows: int) -> None:
    """Generate ``rows`` verdicts in SQL; the offsets follow time, as a collector's do."""
    from censorwatch.store import open_store

    store = open_store(db)
    if store.count() == rows:
        store.close()
        return
    con = store._con  # synthetic rows in bulk, bypassing the pipeline (a benchmark's shortcut)
    con.execute("DELETE FROM measurements")
    params = {"networks": NETWORKS, "targets": TARGETS, "year": YEAR}
    con.execute(BLOCKS_SQL, {**params, "blocks": BLOCKS})
    started = time.perf_counter()
    con.execute(
        FILL,
        {**params, "countries": COUNTRIES, "x_hosts": X_HOSTS, "start": 0, "stop": rows},
    )
    con.execute("CHECKPOINT")
    store.close()
    print(f"filled {db} with {rows:,} rows in {time.perf_counter() - started:.0f} s "
          f"({db.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)  # fmt: skip


def rebuild(db: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "censorwatch", "events", "rebuild", "--db", str(db)], check=True
    )
    return time.perf_counter() - started


def _percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(db: Path, runs: int) -> dict[str, tuple[float, float, float, int]]:
    """(first, p50, p95 in ms, size) per request, through ``serve --read-only`` on loopback."""
    requests = {
        "GET /api/v1/events": "/api/v1/events",
        "GET /api/v1/events?probe_cc=PK": "/api/v1/events?probe_cc=PK",
        "GET /explorer (overview)": "/explorer",
    }
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "censorwatch", "serve", "--read-only", "--db", str(db),
                 "--archive", str(Path(tmp) / "archive"), "--host", "127.0.0.1", "--port", "0"],
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
            with httpx.Client(base_url=url, timeout=120) as client:
                assert client.get("/health").status_code == 200
                for name, path in requests.items():
                    t = time.perf_counter()
                    r = client.get(path)
                    first = (time.perf_counter() - t) * 1000
                    r.raise_for_status()
                    times = []
                    for _ in range(runs):
                        t = time.perf_counter()
                        r = client.get(path)
                        times.append((time.perf_counter() - t) * 1000)
                        r.raise_for_status()
                    size = r.json()["metadata"]["count"] if "api" in path else len(r.content)
                    out[name] = (first, statistics.median(times), _percentile(times, 0.95), size)
        finally:
            proc.terminate()
            proc.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cw-events-bench")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rebuild", action="store_true", help="re-detect even if events are stored")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for rows in args.sizes:
        db = args.dir / f"events-{rows}.duckdb"
        fill(db, rows)
        from censorwatch.store import open_store

        with open_store(db, read_only=True) as store:
            built = store.has_event_state()
        seconds = rebuild(db) if args.rebuild or not built else float("nan")
        with open_store(db, read_only=True) as store:
            state = len(store.load_event_state() or b"")
            events = len(store.stored_events())
        print(f"{rows:,} verdicts: events rebuild {seconds:.0f} s, {events} events, "
              f"state {state / 2**20:.1f} MiB", file=sys.stderr)  # fmt: skip
        results[rows] = measure(db, args.runs)
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} on {os.cpu_count()} cores; {args.runs} runs after one first")
    print("\n| request | verdicts | results / bytes | first ms | p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for rows, timings in results.items():
        for name, (first, p50, p95, size) in timings.items():
            print(f"| {name} | {rows:,} | {size:,} | {first:.0f} | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
