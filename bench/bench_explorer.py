"""Explorer page times over a store of many verdicts (on demand; figures in docs/benchmarks.md).

Fills a DuckDB store with synthetic verdict rows (networks × hosts × rounds every 10 minutes,
some networks blocking X for a stretch), builds the API app around it and times each page
in-process (``fastapi.testclient``), so the figures are the server's work without the network.

    .venv/bin/python bench/bench_explorer.py --networks 20 --days 5
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

HOSTS = ("x.com", "twitter.com", "pbs.twimg.com", "t.co", "www.example.com", "example.org", "a.b")
LAYERS = json.dumps({"dns": None, "tcp": None, "tls": None, "http": None})


def fill(store, networks: int, days: int) -> int:
    from censorwatch.store.base import MeasurementRow

    start = datetime(2024, 2, 15)
    rounds = days * 144
    rows = []
    for n in range(networks):
        asn = f"AS{64500 + n}"
        # A third of the networks block X for the middle of the period.
        lo, hi = (rounds // 3, 2 * rounds // 3) if n % 3 == 0 else (rounds, rounds)
        for r in range(rounds):
            when = start + timedelta(minutes=10 * r, seconds=n)
            for k, host in enumerate(HOSTS):
                blocked = lo <= r < hi and k < 4
                rows.append(
                    MeasurementRow(
                        f"bench-{n}-{r}-{k}", f"report-{n}-{r}", "web_connectivity", "PK", asn,
                        f"https://{host}/", host, host, when + timedelta(seconds=k),
                        when, "blocked" if blocked else "ok", "tls.reset" if blocked else None,
                        0.9, False, None, "[]", LAYERS, "unverified", "collector", "none", 0,
                    )
                )  # fmt: skip
        if len(rows) >= 50_000:
            store.add(rows)
            rows = []
    store.add(rows)
    return store.count()


def timed(client, path: str, repeat: int) -> tuple[float, float, str]:
    times = []
    body = ""
    for _ in range(repeat):
        started = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - started)
        assert r.status_code == 200, (path, r.status_code)
        body = r.text
    return times[0], statistics.median(times[1:] or times), body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from censorwatch.app.asgi import create_app
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "bench.duckdb")
        started = time.perf_counter()
        rows = fill(store, args.networks, args.days)
        print(f"{rows} rows stored in {time.perf_counter() - started:.1f} s")
        from censorwatch.web.views import all_events

        started = time.perf_counter()
        events = all_events(store)
        detect = time.perf_counter() - started
        print(f"event detection alone: {len(events)} events in {detect * 1000:.0f} ms")
        app = create_app(Pipeline(Archive(Path(tmp) / "archive"), store))
        with TestClient(app) as client:
            cold, warm, overview = timed(client, "/explorer", args.repeat)
            event = re.search(r"/explorer/events/(evt_[0-9a-f]+)", overview)
            assert event, "no event detected"
            pages = [
                ("overview", "/explorer", cold, warm),
                *(
                    (name, path, *timed(client, path, args.repeat)[:2])
                    for name, path in [
                        ("event (national X)", f"/explorer/events/{event[1]}"),
                        ("network (30 days)", "/explorer/networks/AS64500"),
                        ("measurements list", "/explorer/measurements?probe_cc=PK&verdict=blocked"),
                        ("measurements list, page 100", "/explorer/measurements?page=100"),
                        ("measurement", "/explorer/measurements/bench-0-300-0"),
                    ]
                ),
            ]
        print(f"\n{rows} verdicts, {args.networks} networks, {len(HOSTS)} hosts, {args.days} days")
        print("| page | first request (ms) | median of the next (ms) |")
        print("|---|---|---|")
        for name, _path, first, median in pages:
            print(f"| {name} | {first * 1000:.0f} | {median * 1000:.0f} |")
        store.close()


if __name__ == "__main__":
    main()
