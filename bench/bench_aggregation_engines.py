"""The aggregation API on ClickHouse and on DuckDB, over the same verdicts (on demand).

Generates ``--rows`` synthetic verdict rows inside each engine from one integer formula, so
both hold exactly the same data (50 countries × 40 networks, 1,000 domains, one year, 60 % ok,
20 % blocked over four methods, 10 % down, 10 % unknown), then serves each with ``censorwatch
serve --read-only --db URL`` on loopback and times ``GET /api/v1/aggregation`` end to end
(bench_aggregation's queries), after ``store optimize`` on both. ClickHouse is Debian's
server (18.16), started on its own ports as the tests start it.

    .venv/bin/python bench/bench_aggregation_engines.py --rows 100000000 --dir /tmp/cw-engines

``--reuse`` keeps what an earlier run generated in ``--dir`` (both engines holding ``--rows``
rows), so a run stopped during the queries does not generate 100 M rows again.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from bench_aggregation import COUNTRIES, measure  # noqa: E402

METHODS = ["dns.nxdomain", "tcp.reset", "tls.reset", "http.blockpage"]


def mix(i: str, salt: int) -> str:
    """A well-spread value below 2³² of the row number, in SQL both engines evaluate alike
    (modulo a prime, so that small moduli of it spread too)."""
    return f"((({i}) + {salt}) * 2654435761) % 4294967291"


def _columns(i: str, text: str, lst: str) -> dict[str, str]:
    """The generated value of each column; ``text`` casts to a string, ``lst`` indexes a list."""
    v = f"({mix(i, 4)} % 10)"
    return {
        "measurement_uid": f"'bench-' || {text(i)}",
        "report_id": f"'report-' || {text(f'({i} - ({i}) % 100) / 100')}",
        "test_name": "'web_connectivity'",
        "probe_cc": lst(COUNTRIES, f"({i}) % 50"),
        "probe_asn": f"'AS' || {text(f'10000 + (({i}) % 50) * 100 + {mix(i, 1)} % 40')}",
        "input": f"'https://d' || {text(f'{mix(i, 2)} % 1000')} || '.example/'",
        "domain": f"'d' || {text(f'{mix(i, 2)} % 1000')} || '.example'",
        "target": "NULL",
        "time_offset": f"{mix(i, 3)} % 31536000",
        "verdict": f"CASE WHEN {v} < 6 THEN 'ok' WHEN {v} < 8 THEN 'blocked' "
        f"WHEN {v} = 8 THEN 'down' ELSE 'unknown' END",
        "method": f"CASE WHEN {v} IN (6, 7) THEN {lst(METHODS, f'{mix(i, 5)} % 4')} END",
        "confidence": "0.9",
        "confirmed": f"{v} = 6",
    }


def fill_duckdb(url: str, rows: int) -> float:
    from censorwatch.store import open_store

    def text(e: str) -> str:
        return f"CAST({e} AS VARCHAR)"

    def lst(values: list[str], e: str) -> str:
        quoted = ", ".join(f"'{v}'" for v in values)
        return f"list_extract([{quoted}], CAST({e} AS INTEGER) + 1)"

    c = _columns("i", text, lst)
    select = f"""
    INSERT INTO measurements SELECT {c["measurement_uid"]}, {c["report_id"]}, {c["test_name"]},
        {c["probe_cc"]}, {c["probe_asn"]}, {c["input"]}, {c["domain"]}, {c["target"]},
        TIMESTAMP '2024-01-01 00:00:00' + to_seconds(CAST({c["time_offset"]} AS BIGINT)),
        TIMESTAMP '2025-01-01 00:00:00', {c["verdict"]}, {c["method"]}, {c["confidence"]},
        {c["confirmed"]}, NULL, '[]', '{{}}', 'unverified', 'synthetic',
        'seg-00000001.jsonl.gz', 0
    FROM range(?, ?) t(i)
    """
    store = open_store(url)
    con = store._con  # synthetic rows in bulk, bypassing the pipeline
    started = time.perf_counter()
    for start in range(0, rows, 5_000_000):
        con.execute(select, [start, min(rows, start + 5_000_000)])
    con.execute("CHECKPOINT")
    store.close()
    return time.perf_counter() - started


def fill_clickhouse(server, url: str, rows: int) -> float:
    from censorwatch.store import open_store

    open_store(url).close()  # creates the database and its tables
    database = url.rsplit("/", 1)[1]

    def text(e: str) -> str:
        return f"toString({e})"

    def lst(values: list[str], e: str) -> str:
        quoted = ", ".join(f"'{v}'" for v in values)
        return f"arrayElement([{quoted}], toUInt32({e}) + 1)"

    c = _columns("number", text, lst)
    started = time.perf_counter()
    step = 5_000_000
    for start in range(0, rows, step):
        count = min(rows, start + step) - start
        _long_query(
            server,
            f"""
        INSERT INTO {database}.measurements SELECT {c["measurement_uid"]}, {c["report_id"]},
            {c["test_name"]}, {c["probe_cc"]}, {c["probe_asn"]}, {c["input"]}, {c["domain"]},
            {c["target"]},
            toDateTime('2024-01-01 00:00:00', 'UTC') + toUInt32({c["time_offset"]}), 0,
            toDateTime('2025-01-01 00:00:00', 'UTC'), 0, {c["verdict"]}, {c["method"]},
            {c["confidence"]}, {c["confirmed"]}, NULL, '[]', '{{}}', 'unverified', 'synthetic',
            'seg-00000001.jsonl.gz', 0
        FROM numbers({start}, {count})
        """,
        )
    return time.perf_counter() - started


def _long_query(server, sql: str) -> None:
    """One statement that may run for minutes (the tests' helper gives up after 30 s)."""
    import httpx

    r = httpx.post(server.base_url, content=sql.encode(), timeout=1800)
    r.raise_for_status()


def count_rows(url: str) -> int:
    """The verdicts a store holds (0 for one not yet created)."""
    from censorwatch.store import Filters, open_store

    with open_store(url) as store:
        return store.count(Filters())


def optimize(url: str) -> float:
    from censorwatch.store import open_store

    started = time.perf_counter()
    with open_store(url) as store:
        store.optimize()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cw-engines")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per query, at most")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep what an earlier run generated in --dir when both engines hold --rows rows",
    )
    args = ap.parse_args()
    from clickhouse_server import start_server

    args.dir.mkdir(parents=True, exist_ok=True)
    server = start_server(args.dir / "clickhouse")
    try:
        print(f"ClickHouse {server.query('SELECT version()').strip()}")
        urls = {
            "ClickHouse": server.url("bench"),
            "DuckDB": f"duckdb://{args.dir / 'bench.duckdb'}",
        }
        held = {engine: count_rows(url) for engine, url in urls.items()}
        if args.reuse and set(held.values()) == {args.rows}:
            print(f"reusing the {args.rows:,} rows each engine holds in {args.dir}")
        else:
            if args.reuse:
                print(f"not reusing: the engines hold {held}, not {args.rows:,} rows each")
            seconds = fill_clickhouse(server, urls["ClickHouse"], args.rows)
            print(f"ClickHouse: {args.rows:,} rows generated in {seconds:.0f}s")
            seconds = fill_duckdb(urls["DuckDB"], args.rows)
            print(f"DuckDB: {args.rows:,} rows generated in {seconds:.0f}s")
            for engine, url in urls.items():
                print(f"{engine}: censorwatch store optimize in {optimize(url):.0f}s")
        for engine, url in urls.items():
            measure(url, args.rows, args.runs, f"{engine}, after `store optimize`", args.timeout)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
