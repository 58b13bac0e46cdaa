"""Events from a real DuckDB store: ``censorwatch events --db`` and ``GET /api/v1/events``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from censorwatch.events.api import router
from censorwatch.events.stored import StoredEvents
from censorwatch.store import open_store
from censorwatch.store.base import MeasurementRow
from censorwatch.times import parse_time
from test_events_cli import run_json, verdicts, write


def row(v: dict) -> MeasurementRow:
    when = parse_time(v["measurement_start_time"]).replace(tzinfo=None)
    return MeasurementRow(
        measurement_uid=v["measurement_uid"],
        report_id=v["report_id"],
        test_name="web_connectivity",
        probe_cc=v["probe_cc"],
        probe_asn=v["probe_asn"],
        input=v["input"],
        domain=v["target"],
        target=v["target"],
        measurement_start_time=when,
        received_at=datetime(2024, 3, 1),
        verdict=v["verdict"],
        method=v["method"],
        confidence=v["confidence"],
        confirmed=False,
        fingerprint=None,
        evidence="[]",
        layers=json.dumps({"dns": None, "tcp": None, "tls": None, "http": None}),
        signature="",
        source="collector",
        archive_segment="seg-0",
        archive_offset=0,
    )


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    store = open_store(path)
    store.add([row(v) for v in verdicts()])
    StoredEvents.rebuild(store)  # rows added directly, as an ingest would: build the events
    getattr(store, "close", lambda: None)()
    return path


def test_db_input_gives_the_same_events_as_jsonl(db: Path, tmp_path: Path) -> None:
    from_db = run_json("--db", str(db))
    from_file = run_json(str(write(tmp_path / "v.jsonl", verdicts())))
    assert from_db == from_file
    assert any(e["scope"] == "national" for e in from_db)


def test_api_serves_events_with_filters(db: Path) -> None:
    app = FastAPI()
    store = open_store(db, read_only=True)
    app.state.store = store
    app.include_router(router)
    with TestClient(app) as client:
        body = client.get("/api/v1/events", params={"probe_cc": "pk", "scope": "national"}).json()
        targets = {e["target"] for e in body["results"]}
        assert body["metadata"]["count"] == len(body["results"]) > 0
        assert "x" in targets
        assert all(e["scope"] == "national" for e in body["results"])
        one = client.get("/api/v1/events", params={"probe_asn": "9541", "status": "ended"}).json()
        assert one["results"] and all(
            "AS9541" in e["asns"] and e["status"] == "ended" for e in one["results"]
        )
        assert client.get("/api/v1/events", params={"probe_cc": "XX"}).json()["results"] == []
        assert client.get("/api/v1/events", params={"scope": "bogus"}).status_code == 422
    getattr(store, "close", lambda: None)()
