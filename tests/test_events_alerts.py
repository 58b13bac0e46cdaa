"""Webhook alerts reach a real receiver on loopback exactly once, also when it was down."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.events import EventTracker
from censorwatch.events.alerts import AlertQueue, WebhookSender, alert_message
from test_events_cli import verdicts, write


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records every request it acknowledges."""

    def __init__(self, port: int = 0) -> None:
        received = self.received = []
        keys = self.keys = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                keys.append(self.headers["Idempotency-Key"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_alerts_survive_a_receiver_that_is_down_and_arrive_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    queue = AlertQueue(tmp_path / "state.json.alerts.sqlite")
    tracker = EventTracker(state_path=tmp_path / "state.json")
    records = verdicts()
    expected: list[str] = []
    sender = WebhookSender(queue, timeout=2.0, base_delay=0.05, max_delay=0.3).start()
    try:
        # Detection goes on in three batches while nobody listens on the port.
        for part in (records[:300], records[300:600], records[600:]):
            started = time.monotonic()
            messages = [alert_message(c) for c in tracker.update(part)]
            queue.enqueue(messages, [url])
            sender.wake()
            assert time.monotonic() - started < 2.0  # detection is not held up by the hook
            expected += [m["alert_id"] for m in messages]
        time.sleep(0.5)  # several failed attempts, each rescheduled with back-off
        assert queue.pending() == len(expected) > 0
        receiver = Receiver(port)
        try:
            assert sender.drain(20.0) == 0
        finally:
            receiver.close()
    finally:
        sender.stop()
    ids = [m["alert_id"] for m in receiver.received]
    assert sorted(ids) == sorted(expected)  # every alert, none twice
    assert receiver.keys == ids
    kinds = {(m["kind"], m["event"]["scope"]) for m in receiver.received}
    assert ("opened", "national") in kinds and ("ended", "network") in kinds
    national = [m for m in receiver.received if m["event"]["scope"] == "national"]
    assert any("on 4 of 5 networks" in m["summary"] for m in national)


@pytest.mark.slow
def test_cli_queues_alerts_and_delivers_them_on_a_later_run(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    state = tmp_path / "state.json"
    data = write(tmp_path / "v.jsonl", verdicts())
    runner = CliRunner()
    args = ["events", "--json", "--state", str(state), "--webhook", url]
    result = runner.invoke(app, [*args, "--webhook-wait", "0.5", str(data)])
    assert result.exit_code == 0, result.output
    assert "still queued" in result.stderr
    queued = AlertQueue(tmp_path / "state.json.alerts.sqlite").pending()
    assert queued > 0
    receiver = Receiver(port)
    try:
        # No new verdicts: the run only delivers what the first one queued.
        empty = write(tmp_path / "none.jsonl", [])
        result = runner.invoke(app, [*args, "--webhook-wait", "20", str(empty)])
        assert result.exit_code == 0, result.output
    finally:
        receiver.close()
    ids = [m["alert_id"] for m in receiver.received]
    assert len(ids) == len(set(ids)) == queued
