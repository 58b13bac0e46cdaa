"""The probe-side queue: nothing is lost while the collector is down, nothing stored twice."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from censorwatch.probe.submit import SubmissionQueue, submit_or_queue
from collector_helpers import Server, make_measurement, open_report, template


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_measurements_wait_while_the_collector_is_down_and_go_later(tmp_path: Path) -> None:
    base = template()
    measurements = [make_measurement(i, base=base) for i in range(5)]
    down = f"http://127.0.0.1:{free_port()}"
    result = submit_or_queue(measurements, down, tmp_path / "queue", timeout=2)
    assert result.sent == [] and result.queued == 5 and result.error
    queued = [
        json.loads(p.read_text())["measurement"]
        for p in SubmissionQueue(tmp_path / "queue").items()
    ]
    assert [m["input"] for m in queued] == [m["input"] for m in measurements]

    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    try:
        result = submit_or_queue([make_measurement(5, base=base)], server.url, tmp_path / "queue")
        assert result.error is None and result.queued == 0 and len(result.sent) == 6
        assert httpx.get(server.url + "/health").json()["measurements"] == 6
    finally:
        server.stop()


@pytest.mark.slow
def test_a_lost_acknowledgement_does_not_store_twice(tmp_path: Path) -> None:
    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    try:
        m = make_measurement(1, base=template())
        with httpx.Client(base_url=server.url) as client:
            report_id = open_report(client, m)
            first = client.post(
                f"/report/{report_id}",
                json={"format": "json", "content": {**m, "report_id": report_id}},
            ).json()["measurement_uid"]
        # The probe never saw that answer: the measurement is still queued, with its report.
        queue = SubmissionQueue(tmp_path / "queue")
        path = queue.put(m)
        path.write_text(json.dumps({"report_id": report_id, "measurement": m}))
        result = queue.flush(server.url)
        assert result.sent == [first]
        assert httpx.get(server.url + "/health").json()["measurements"] == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_unknown_reports_are_reopened_and_refusals_are_kept(tmp_path: Path) -> None:
    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    try:
        queue = SubmissionQueue(tmp_path / "queue")
        good = make_measurement(2, base=template())
        path = queue.put(good)
        stale = "20240101T000000Z_webconnectivity_PK_17557_n1_AAAAAAAABBBBBBBB"
        path.write_text(json.dumps({"report_id": stale, "measurement": good}))
        bad = make_measurement(3, base=template())
        bad["measurement_start_time"] = "2999-01-01 00:00:00"
        queue.put(bad)
        result = queue.flush(server.url)
        assert len(result.sent) == 1 and result.rejected == 1 and result.queued == 0
        kept = [json.loads(p.read_text()) for p in queue.rejected.glob("*.json")]
        assert len(kept) == 1 and kept[0]["rejected"]["status"] == 400
        assert "plausible" in kept[0]["rejected"]["reason"]
        assert kept[0]["measurement"]["input"] == bad["input"]
    finally:
        server.stop()
