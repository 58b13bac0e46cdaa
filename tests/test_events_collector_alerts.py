"""The collector's alerts: ``censorwatch serve --webhook`` tells a subscriber of the stored
events' changes as measurements are committed, through an outbox that outlives a receiver
that is down and a collector that dies between queuing an alert and saving its event."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from censorwatch.collector.archive import Archive
from censorwatch.collector.pipeline import Pipeline
from censorwatch.events.alerts import Alerting, AlertQueue, Subscription
from censorwatch.events.stored import StoredEvents
from censorwatch.store.duckdb_store import DuckDBStore
from collector_helpers import Server
from test_events_alerts import Receiver, free_port
from test_events_stored import CrashingStore, by_round, commit_until_crash, submit_round
from web_helpers import x_series

pytestmark = pytest.mark.slow


def queued(outbox: Path) -> list[str]:
    """Every alert the outbox holds, delivered or not, in the order queued."""
    with sqlite3.connect(outbox) as db:
        return [r[0] for r in db.execute("SELECT alert_id FROM outbox ORDER BY rowid")]


def test_serve_sends_one_alert_per_national_change_through_a_receiver_outage(tmp_path: Path):
    db, archive, log = tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log"
    port = free_port()  # nobody listens there yet
    hook = f"http://127.0.0.1:{port}/alerts"
    server = Server(db, archive, log, "--webhook", hook)
    receiver = None
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for group in by_round(x_series()):
                submit_round(client, group)
        outbox = archive / "alerts.sqlite"
        deadline = time.monotonic() + 30
        while not queued(outbox) and time.monotonic() < deadline:
            time.sleep(0.1)  # events follow each commit's answers
        assert queued(outbox), log.read_text()[-2000:]
        receiver = Receiver(port)
        deadline = time.monotonic() + 60
        while len(receiver.received) < len(queued(outbox)) and time.monotonic() < deadline:
            time.sleep(0.2)
        # A restart sends nothing again: every queued alert was acknowledged.
        server.stop()
        server = Server(db, archive, log, "--webhook", hook)
        time.sleep(1.0)
    finally:
        server.stop()
        if receiver is not None:
            receiver.close()
    assert receiver is not None
    alerts = receiver.received
    ids = [a["alert_id"] for a in alerts]
    assert sorted(ids) == sorted(set(queued(outbox))) and len(ids) == len(set(ids))
    assert receiver.keys == ids  # the Idempotency-Key receivers dedupe on
    # the default subscription: national changes only, each carrying what the event holds
    assert {a["event"]["scope"] for a in alerts} == {"national"}
    opened = [a for a in alerts if a["kind"] == "opened"]
    assert len(opened) == 1 and opened[0]["event"]["target"] == "x"
    assert opened[0]["summary"].startswith("x blocked in PK")
    assert {n["asn"] for n in alerts[-1]["networks"]} == {"AS9541", "AS17557"}
    assert {h["host"] for h in alerts[-1]["hosts"]} >= {"x.com", "twitter.com"}


def test_serve_refuses_webhooks_it_could_not_honour(tmp_path: Path):
    from typer.testing import CliRunner

    from censorwatch.cli import app

    base = ["serve", "--db", str(tmp_path / "cw.duckdb"), "--archive", str(tmp_path / "a")]
    for extra, message in [
        (["--webhook", "ftp://example.org/"], "is not an http(s) URL"),
        (["--webhook", "http://127.0.0.1:9/", "--read-only"], "a read-only server"),
        (["--webhook", "http://127.0.0.1:9/", "--alert-scope", "all"], "--alert-scope"),
    ]:
        result = CliRunner().invoke(app, [*base, *extra], env={"COLUMNS": "200"})
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "a" / "alerts.sqlite").exists()


def _alerting(outbox: Path) -> Alerting:
    """Alerts at every depth, queued only (nothing is sent in these tests)."""
    return Alerting(AlertQueue(outbox), ["http://127.0.0.1:9/"], Subscription("host"))


def _commit_all(pipeline: Pipeline, rounds: list[list[dict[str, Any]]]) -> None:
    for group in rounds:
        pipeline.commit([pipeline.prepare(m) for m in group])


def test_a_crash_before_the_events_are_saved_loses_no_alert(tmp_path: Path):
    rounds = by_round(x_series())
    # the reference: one collector that never stops
    clean = DuckDBStore(tmp_path / "clean.duckdb")
    pipeline = Pipeline(Archive(tmp_path / "clean-archive"), clean)
    pipeline.events = StoredEvents.open(clean)
    pipeline.events.on_changes = _alerting(tmp_path / "clean.sqlite")
    _commit_all(pipeline, rounds)
    pipeline.close()
    clean.close()
    expected = queued(tmp_path / "clean.sqlite")
    assert len(expected) > 10

    # the same rows, the process dying as a commit saves its events (alerts already queued)
    db, archive, outbox = tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "cw.sqlite"
    store = CrashingStore(db, "save_events", after=5)
    pipeline = Pipeline(Archive(archive), store)
    pipeline.events = StoredEvents.open(store)
    pipeline.events.on_changes = _alerting(outbox)
    crashed_at = commit_until_crash(pipeline, rounds)
    assert crashed_at is not None
    store.close()
    before_restart = queued(outbox)
    assert 0 < len(before_restart) < len(expected)

    store = DuckDBStore(db)
    events = StoredEvents.open(store)
    events.on_changes = _alerting(outbox)
    pipeline = Pipeline(Archive(archive), store, events=events)
    pipeline.recover()  # replays the rows past the saved position: their changes again
    _commit_all(pipeline, rounds[crashed_at + 1 :])
    pipeline.close()
    store.close()
    assert sorted(queued(outbox)) == sorted(expected)  # each once, none lost
