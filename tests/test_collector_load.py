"""Load from a second process with a crash in the middle: nothing acknowledged is ever lost.

The server runs in a child process; this process submits measurements on several keep-alive
connections, SIGKILLs the server half-way, leaves a torn block at the end of the archive (as a
write cut by a power loss would), restarts the server and sends the rest, including everything
that was not acknowledged and a sample of what was (resubmission must be idempotent).
``CW_LOAD_COUNT`` sets the number of measurements (bench/bench_collector.py runs 100,000).
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from censorwatch.collector.archive import Archive
from censorwatch.model import derive_measurement_uid
from censorwatch.store import open_store
from collector_helpers import Server, make_measurement, open_report, template

COUNT = int(os.environ.get("CW_LOAD_COUNT", "2000"))
THREADS = 16


def submit_all(
    url: str,
    items: list[tuple[int, dict[str, Any]]],
    acked: dict[int, str],
    stop_after: int | None = None,
) -> list[int]:
    """Send ``items`` on THREADS connections; returns the indexes that were not acknowledged."""
    lock = threading.Lock()
    queue = list(reversed(items))
    failed: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    i, content = queue.pop()
                try:
                    r = client.post(
                        f"/report/{content['report_id']}",
                        json={"format": "json", "content": content},
                    )
                    r.raise_for_status()
                except httpx.HTTPError:
                    with lock:
                        failed.append(i)
                        if stop_after is not None:  # the server is gone: give the rest back
                            failed.extend(j for j, _ in queue)
                            queue.clear()
                    continue
                with lock:
                    acked[i] = r.json()["measurement_uid"]

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def archive_uids(archive: Path) -> list[str]:
    return [
        msgspec.json.decode(line)["measurement_uid"]
        for block in Archive(archive).blocks()
        for line in block.lines
    ]


@pytest.fixture(params=["duckdb", "clickhouse"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store the server writes: a DuckDB file, or a database on the ClickHouse server."""
    if request.param == "clickhouse":
        return request.getfixturevalue("clickhouse_url")
    return str(tmp_path / "cw.duckdb")


@pytest.mark.slow
def test_sigkill_mid_load_loses_nothing_acknowledged(tmp_path: Path, store_url: str) -> None:
    db, archive, log = store_url, tmp_path / "archive", tmp_path / "server.log"
    server = Server(db, archive, log)
    base = template()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        report_id = open_report(client, make_measurement(0, base=base))
    items = []
    for i in range(COUNT):
        m = make_measurement(i, base=base)
        m["report_id"] = report_id
        items.append((i, m))
    expected = {i: derive_measurement_uid(m) for i, m in items}

    acked: dict[int, str] = {}
    killer_done = threading.Event()

    def killer() -> None:
        while len(acked) < COUNT // 2:
            time.sleep(0.005)
        server.kill()
        killer_done.set()

    k = threading.Thread(target=killer)
    k.start()
    started = time.perf_counter()
    unacked = submit_all(server.url, items, acked, stop_after=0)
    k.join(120)
    assert killer_done.is_set()
    first_phase = dict(acked)
    assert COUNT // 2 <= len(first_phase) < COUNT

    # A write cut short by the crash: half a gzip member at the end of the newest segment.
    newest = sorted(archive.glob("seg-*.jsonl.gz"))[-1]
    torn = gzip.compress(b'{"measurement_uid":"torn-record","measurement":{}}\n' * 50)
    with open(newest, "ab") as fh:
        fh.write(torn[: len(torn) // 2])

    server = Server(db, archive, log)
    try:
        again = [items[i] for i in sorted(set(unacked))]
        sample = [items[i] for i in list(first_phase)[:: max(1, len(first_phase) // 200)]]
        resent: dict[int, str] = {}
        left = submit_all(server.url, again, acked)
        left += submit_all(server.url, sample, resent)
        elapsed = time.perf_counter() - started
        assert left == []
        health = httpx.get(server.url + "/health", timeout=10).json()
    finally:
        server.stop()

    # Every measurement acknowledged, each with the UID it is entitled to, resends included.
    assert len(acked) == COUNT
    assert all(acked[i] == expected[i] for i in acked)
    assert all(resent[i] == first_phase[i] for i in resent)
    assert health["measurements"] == COUNT

    # The database holds each exactly once and agrees with the archive; the torn tail is gone.
    store = open_store(db, read_only=True)
    try:
        stored = store.uids()
    finally:
        store.close()
    in_archive = archive_uids(archive)
    assert len(stored) == len(set(stored)) == COUNT
    assert sorted(stored) == sorted(in_archive)
    assert set(stored) == set(acked.values())
    assert "torn-record" not in in_archive
    print(f"\n{COUNT} measurements, SIGKILL after {len(first_phase)} acks, {elapsed:.1f}s total")
