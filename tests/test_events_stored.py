"""Events kept in the store: written by the collector as it commits, read by the API and the
explorer, rebuilt by ``censorwatch events rebuild``, whole again after a crash."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from censorwatch.app.asgi import create_app
from censorwatch.cli import app as cli
from censorwatch.collector.archive import Archive
from censorwatch.collector.pipeline import Pipeline
from censorwatch.events.stored import REBUILD_HINT, EventsNotBuilt, StoredEvents
from censorwatch.events.tracker import EventTracker, detect_events
from censorwatch.model import Event
from censorwatch.store import Filters, open_store, schema
from censorwatch.store.duckdb_store import DuckDBStore
from collector_helpers import Server
from test_events_cli import verdicts
from test_events_store import row
from web_helpers import x_series

pytestmark = pytest.mark.slow


def records(events: list[Event]) -> list[dict[str, Any]]:
    return [e.to_record() for e in events]


def one_off(store: Any) -> list[dict[str, Any]]:
    """What one detection over every stored verdict finds: the reference."""
    return records(detect_events(store.iter_verdicts()))


def by_round(measurements: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The measurements of one vantage's round together, in time order (one report each)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in measurements:
        groups[m["report_id"]].append(m)
    return sorted(groups.values(), key=lambda g: g[0]["measurement_start_time"])


def submit_round(client: httpx.Client, group: list[dict[str, Any]]) -> None:
    first = group[0]
    opened = client.post(
        "/report",
        json={"format": "json", "test_name": first["test_name"], "probe_cc": first["probe_cc"],
              "probe_asn": first["probe_asn"], "software_name": "tests", "software_version": "1"},
    )  # fmt: skip
    opened.raise_for_status()
    report_id = opened.json()["report_id"]
    for m in group:
        content = {**m, "report_id": report_id}
        r = client.post(f"/report/{report_id}", json={"format": "json", "content": content})
        assert r.status_code == 200, r.text


# -- the collector writes events as it commits ---------------------------------------------------


def test_collector_stores_events_as_it_commits_equal_to_one_off_detection(tmp_path: Path):
    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    rounds = by_round(x_series())
    server = Server(db, archive, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/api/v1/events").json()["results"] == []  # a new store: built
            for group in rounds:
                submit_round(client, group)
            # Events are fed right after each commit's answers: wait for the last commit's.
            served: list[dict[str, Any]] = []
            for _ in range(100):
                served = client.get("/api/v1/events").json()["results"]
                if any(e["scope"] == "national" and e["status"] == "ongoing" for e in served):
                    break
                httpx.get(server.url + "/health")
            html = client.get("/explorer").text
    finally:
        server.stop()
    with open_store(db, read_only=True) as store:
        assert store.count() == sum(len(g) for g in rounds)
        reference = one_off(store)
        assert records(store.stored_events()) == reference
        assert store.has_event_state()
    assert served == reference
    national = [e for e in reference if e["scope"] == "national" and e["target"] == "x"]
    assert national and national[0]["asns"] == ["AS9541", "AS17557"]
    assert "blocked in PK on 2 of 3 networks measured" in html


def test_killed_collector_catches_events_up_on_restart(tmp_path: Path):
    """SIGKILL right after the answers: no clean stop saved the state; the next start feeds
    the rows past its saved position again (the in-process tests below pin each crash point)."""
    db, archive, log = tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log"
    rounds = by_round(x_series())
    server = Server(db, archive, log)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for group in rounds:
                submit_round(client, group)
    finally:
        server.kill()
    with open_store(db, read_only=True) as store:
        assert store.count() == sum(len(g) for g in rounds)
        assert store.has_event_state()
    server = Server(db, archive, log)
    server.stop()
    with open_store(db, read_only=True) as store:
        assert records(store.stored_events()) == one_off(store)
        newest = max(r.location.offset for r in store.scan(Filters()))
        taken = EventTracker.from_bytes(store.load_event_state() or b"").meta["archive_position"]
        assert taken[1] >= newest  # every stored row has been fed


# -- crashes between the commit's steps, in process ----------------------------------------------


class Crash(BaseException):
    """The process dies here (not an error the pipeline could catch)."""


class CrashingStore(DuckDBStore):
    """A real DuckDB store whose process 'dies' at one step of saving events."""

    def __init__(self, path: Path, at: str, after: int) -> None:
        super().__init__(path)
        self.at, self.left = at, after

    def _step(self, name: str) -> None:
        if name == self.at:
            if self.left == 0:
                raise Crash(name)
            self.left -= 1

    def save_events(self, changed, removed) -> None:  # type: ignore[no-untyped-def]
        self._step("save_events")
        super().save_events(changed, removed)

    def save_event_state(self, state: bytes) -> None:
        self._step("save_event_state")
        super().save_event_state(state)


def commit_until_crash(pipeline: Pipeline, rounds: list[list[dict[str, Any]]]) -> int | None:
    """Commit round after round; the round the process 'died' in, or None."""
    for i, group in enumerate(rounds):
        try:
            pipeline.commit([pipeline.prepare(m) for m in group])
        except Crash:
            return i
    return None


@pytest.mark.parametrize("at", ["save_events", "save_event_state"])
def test_crash_between_commit_and_state_save_loses_no_event(tmp_path: Path, at: str):
    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    rounds = by_round(x_series())
    half = len(rounds) // 2
    store = CrashingStore(db, at, after=3)
    pipeline = Pipeline(Archive(archive), store)
    pipeline.events = StoredEvents(store, StoredEvents.open(store).tracker, state_interval=0)
    crashed_at = commit_until_crash(pipeline, rounds[:half])
    assert crashed_at is not None
    store.close()  # the process is gone: nothing more is saved, the archive stays as it is

    store = DuckDBStore(db)
    committed = store.count()
    assert committed == sum(len(g) for g in rounds[: crashed_at + 1])  # the rows are there
    pipeline = Pipeline(Archive(archive), store, events=StoredEvents.open(store))
    pipeline.recover()
    assert records(store.stored_events()) == one_off(store)
    for group in rounds[crashed_at + 1 :]:
        pipeline.commit([pipeline.prepare(m) for m in group])
    pipeline.close()
    assert store.count() == sum(len(g) for g in rounds)
    assert records(store.stored_events()) == one_off(store)
    assert any(e.scope == "national" for e in store.stored_events())
    store.close()


# -- the API and the explorer read what is stored --------------------------------------------------


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    """A store whose rows came in directly (as an ingest's do), events built by the command."""
    db = tmp_path / "store.duckdb"
    with open_store(db) as store:
        store.add([row(v) for v in verdicts()])
    result = CliRunner().invoke(cli, ["events", "rebuild", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "events (" in result.output and "stored from" in result.output
    return db


def _client(store: Any) -> TestClient:
    return TestClient(create_app(Pipeline(Archive(store.path + ".archive"), store)))


def test_api_filters_apply_to_stored_events(built: Path):
    with open_store(built) as store:
        reference = detect_events(store.iter_verdicts())
        with _client(store) as client:

            def get(**params: Any) -> list[dict[str, Any]]:
                r = client.get("/api/v1/events", params=params)
                assert r.status_code == 200, r.text
                return r.json()["results"]

            assert get() == records(reference)
            cases = {
                (("probe_cc", "pk"),): lambda e: e.cc == "PK",
                (("probe_asn", "9541"),): lambda e: "AS9541" in e.asns,
                (("scope", "national"),): lambda e: e.scope == "national",
                (("status", "ended"),): lambda e: e.status == "ended",
                (("target", "X"),): lambda e: e.target == "x",
                (("since", "2024-02-17T16:00:00Z"),): lambda e: (
                    e.end is None or e.end.before >= "2024-02-17T16:00:00Z"
                ),
                (("until", "2024-02-17T14:00:00Z"),): lambda e: (
                    e.onset.before < "2024-02-17T14:00:00Z"
                ),
            }
            for params, keep in cases.items():
                expected = records([e for e in reference if keep(e)])
                assert get(**dict(params)) == expected, params
            assert get(probe_cc="XX") == []
            ended = get(status="ended", scope="network")
            assert ended and all(e["status"] == "ended" for e in ended)
            assert client.get("/api/v1/events", params={"scope": "bogus"}).status_code == 422
            assert client.get("/api/v1/events", params={"since": "yesterday"}).status_code == 400

            # What is stored is what is served: nothing is detected per request.
            first = reference[0]
            edited = Event(**{**{f: getattr(first, f) for f in first.__struct_fields__},
                              "confidence": 0.123})  # fmt: skip
            store.save_events([edited], [reference[-1].event_id])
            body = get()
            assert body[0]["confidence"] == 0.123
            assert reference[-1].event_id not in {e["event_id"] for e in body}
            assert len(body) == len(reference) - 1
            feed = client.get("/api/v1/events.atom")
            assert feed.status_code == 200 and reference[-1].event_id not in feed.text


def test_rebuild_equals_the_collectors_incremental_result(tmp_path: Path):
    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    store = open_store(db)
    pipeline = Pipeline(Archive(archive), store, events=StoredEvents.open(store))
    for group in by_round(x_series()):
        pipeline.commit([pipeline.prepare(m) for m in group])
    pipeline.close()
    incremental = records(store.stored_events())
    store.save_events([], [incremental[0]["event_id"]])  # damage: rebuild must restore it
    stale = Event(**{**{f: getattr(store.stored_events()[0], f) for f in Event.__struct_fields__},
                     "event_id": "evt_00000000000000000000"})  # fmt: skip
    store.save_events([stale], [])
    store.close()
    result = CliRunner().invoke(cli, ["events", "rebuild", "--db", str(db)])
    assert result.exit_code == 0, result.output
    with open_store(db, read_only=True) as store:
        assert records(store.stored_events()) == incremental
        assert incremental == one_off(store)


# -- a store from before stored events ----------------------------------------------------------


def _old_store(path: Path) -> None:
    """A DuckDB file with the tables as they were before events were stored, and rows."""
    con = duckdb.connect(str(path))
    for ddl in schema.ALL:
        if ddl not in schema.EVENT_TABLES:
            con.execute(ddl)
    con.close()
    with DuckDBStore(path) as store:  # adds the event tables (empty), as any writer would
        store.add([row(v) for v in verdicts()])
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE stored_events")
    con.execute("DROP TABLE event_state")
    con.close()


def test_old_store_opens_and_says_run_events_rebuild(tmp_path: Path):
    db = tmp_path / "old.duckdb"
    _old_store(db)
    with open_store(db, read_only=True) as store:  # never migrated: no event tables at all
        assert not store.has_event_state() and store.stored_events() == []
        with _client(store) as client:
            r = client.get("/api/v1/events")
            assert r.status_code == 409 and "censorwatch events rebuild" in r.json()["detail"]
            assert client.get("/api/v1/events.atom").status_code == 409
            page = client.get("/explorer")
            assert page.status_code == 200 and "censorwatch events rebuild" in page.text
    with open_store(db) as store:  # opened for writing: migrated, still not built
        assert not store.has_event_state()
        with pytest.raises(EventsNotBuilt, match="events rebuild"):
            StoredEvents.open(store)
    assert "events rebuild --db" in REBUILD_HINT
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    result = CliRunner().invoke(cli, ["events", "rebuild", "--db", str(copy)])
    assert result.exit_code == 0, result.output
    with open_store(copy, read_only=True) as store, _client(store) as client:
        body = client.get("/api/v1/events").json()
        assert body["results"] == one_off(store) and body["metadata"]["count"] > 0


# -- ingest updates the events at its end ----------------------------------------------------------


def _bucket(root: Path, name: str, measurements: list[dict[str, Any]]) -> None:
    """One file in OONI's bucket layout (``raw/DAY/HOUR/CC/webconnectivity/*.jsonl.gz``)."""
    path = root / "raw" / "20240217" / "12" / "PK" / "webconnectivity" / f"{name}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(json.dumps(m).encode() + b"\n" for m in measurements))


def _ingest(tmp: Path, db: Path, bucket: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "censorwatch", "ingest", "ooni", str(bucket), "--db", str(db),
         "--archive", str(tmp / "archive")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_ingest_updates_stored_events_at_its_end(tmp_path: Path):
    db, bucket = tmp_path / "cw.duckdb", tmp_path / "bucket"
    series = x_series()
    half = len(series) // 2
    _bucket(bucket, "first", series[:half])
    first = _ingest(tmp_path, db, bucket)
    assert "stored events not updated" not in first.stderr
    with open_store(db, read_only=True) as store:
        assert store.count() == half
        assert records(store.stored_events()) == one_off(store)
    _bucket(bucket, "second", series[half:])
    _ingest(tmp_path, db, bucket)  # feeds only the new file's rows
    with open_store(db, read_only=True) as store:
        assert store.count() == len(series)
        stored = records(store.stored_events())
        assert stored == one_off(store) and any(e["scope"] == "national" for e in stored)


def test_ingest_into_a_store_without_events_says_run_rebuild(tmp_path: Path):
    db, bucket = tmp_path / "old.duckdb", tmp_path / "bucket"
    _old_store(db)
    _bucket(bucket, "first", x_series()[:12])
    proc = _ingest(tmp_path, db, bucket)
    assert "stored events not updated" in proc.stderr and "events rebuild" in proc.stderr
    with open_store(db, read_only=True) as store:
        assert not store.has_event_state() and store.stored_events() == []
