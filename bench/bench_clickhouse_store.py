"""The ClickHouse backend's write path and its deduplicating reads, on a real server (on demand).

Starts Debian's ``clickhouse-server`` on loopback (tests/clickhouse_server.py), then measures:

* inserts of 10,000 rows: ``ClickHouseStore.add`` (HTTP + JSONEachRow, what the collector
  runs), and the ``clickhouse-connect`` driver on the same server, if it can talk to it;
* the aggregation by day and country read with ``FINAL`` (what the store does) against the
  same counts collapsed by hand (``GROUP BY measurement_uid`` with ``argMax``), over
  ``--rows`` rows of which 1% were inserted a second time, in a later part.

    .venv/bin/python bench/bench_clickhouse_store.py --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from censorwatch.store import open_store  # noqa: E402
from censorwatch.store.base import Filters, MeasurementRow  # noqa: E402
from censorwatch.store.clickhouse_store import ClickHouseStore, encode_row  # noqa: E402

COUNTRIES = ["PK", "IR", "CN", "RU", "TR", "EG", "MM", "ET", "IN", "VE"]
VERDICTS = ["ok", "ok", "ok", "blocked", "down", "unknown"]


def make_row(i: int) -> MeasurementRow:
    blocked = VERDICTS[i % 6] == "blocked"
    return MeasurementRow(
        measurement_uid=f"bench-{i:09d}",
        report_id=f"report-{i // 100}",
        test_name="web_connectivity",
        probe_cc=COUNTRIES[i % 10],
        probe_asn=f"AS{10000 + i % 400}",
        input=f"https://site{i % 1000}.example/",
        domain=f"site{i % 1000}.example",
        target=None,
        measurement_start_time=datetime(2024, 1, 1) + timedelta(seconds=(i * 7919) % 31_536_000),
        received_at=datetime(2025, 1, 1, microsecond=i % 1_000_000),
        verdict=VERDICTS[i % 6],
        method="dns.nxdomain" if blocked else None,
        confidence=0.9,
        confirmed=blocked and i % 5 == 0,
        fingerprint=None,
        evidence=[f"line {i}"],
        layers={"dns": "ok", "tcp": None},
        signature="unverified",
        source="collector",
        archive_segment=f"seg-{i // 100_000:08d}.jsonl.gz",
        archive_offset=i,
    )


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} rows/s ({seconds:.2f}s)"


def bench_inserts(url: str, http_port: int) -> None:
    rows = [make_row(i) for i in range(10_000)]
    with open_store(url.replace("/bench", "/bench_add")) as store:
        started = time.perf_counter()
        for start in range(0, len(rows), 1000):  # commits of 1,000, as the collector makes
            store.add(rows[start : start + 1000])
        elapsed = time.perf_counter() - started
        print(f"ClickHouseStore.add, 10 batches of 1,000: {rate(10_000, elapsed)}")
    try:
        import clickhouse_connect

        client = clickhouse_connect.get_client(host="127.0.0.1", port=http_port)
    except Exception as exc:  # what the driver says about this server is the finding
        print(f"clickhouse-connect: cannot open a client ({type(exc).__name__}: {exc})"[:300])
        return
    records = [msgspec.json.decode(encode_row(r)) for r in rows]
    names = list(records[0])
    started = time.perf_counter()
    client.insert("bench_add.measurements", [[r[c] for c in names] for r in records], names)
    print(f"clickhouse-connect insert: {rate(10_000, time.perf_counter() - started)}")


def fill(store: ClickHouseStore, n: int) -> None:
    batch = 100_000
    for start in range(0, n, batch):
        lines = b"\n".join(encode_row(make_row(i)) for i in range(start, min(n, start + batch)))
        store.transport.execute(f"INSERT INTO {store.db}.measurements FORMAT JSONEachRow", lines)
    again = b"\n".join(encode_row(make_row(i)) for i in range(0, n, 100))
    store.transport.execute(f"INSERT INTO {store.db}.measurements FORMAT JSONEachRow", again)


def timed(run, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_reads(store: ClickHouseStore, n: int) -> None:
    fill(store, n)
    db = store.db
    counts = "count() AS n, countIf(verdict = 'blocked') AS blocked"
    with_final = (
        f"SELECT toDate(measurement_start_time) AS day, probe_cc, {counts} "
        f"FROM {db}.measurements FINAL GROUP BY day, probe_cc ORDER BY day, probe_cc"
    )
    by_uid = (
        f"SELECT toDate(measurement_start_time) AS day, probe_cc, {counts} FROM ("
        "SELECT measurement_uid, argMax(measurement_start_time, received_us) AS "
        "measurement_start_time, argMax(probe_cc, received_us) AS probe_cc, "
        f"argMax(verdict, received_us) AS verdict FROM {db}.measurements "
        "GROUP BY measurement_uid) GROUP BY day, probe_cc ORDER BY day, probe_cc"
    )
    assert store.transport.execute(with_final) == store.transport.execute(by_uid)
    final = timed(lambda: store.transport.execute(with_final))
    grouped = timed(lambda: store.transport.execute(by_uid))
    full = timed(lambda: store.aggregate(Filters(), "measurement_start_day", "probe_cc"))
    one = timed(lambda: store.aggregate(Filters(probe_cc="PK"), "measurement_start_day", None))
    print(f"day x country over {n:,} rows (+1% inserted again, in a later part), median of 5:")
    print(f"  FINAL: {final * 1000:.0f} ms; GROUP BY uid + argMax: {grouped * 1000:.0f} ms")
    print(f"  store.aggregate (every bucket field): {full * 1000:.0f} ms")
    print(f"  store.aggregate, one country: {one * 1000:.0f} ms")
    assert store.count() == n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from clickhouse_server import start_server

    with tempfile.TemporaryDirectory() as root:
        server = start_server(Path(root))
        try:
            url = server.url("bench")
            print(f"server: {server.query('SELECT version()').strip()}")
            bench_inserts(url, server.http_port)
            with open_store(url) as store:
                assert isinstance(store, ClickHouseStore)
                bench_reads(store, args.rows)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
