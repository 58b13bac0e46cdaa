"""``censorwatch probe --submit``: a real probe run on loopback, into a real collector."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import probe_loopback as pl
from censorwatch.control.server import BackgroundServer
from collector_helpers import Server

pytestmark = pytest.mark.timeout(120)


def run_probe(net: pl.Internet, control: BackgroundServer, url: str, *args: str):
    env = pl.exec_env(net, control.url)
    resolver = f"{net.system_dns[0]}:{net.system_dns[1]}"
    argv = ["--url", url, "--system-resolver", resolver, "--dns-timeout", "1",
            "--connect-timeout", "1", "--tls-timeout", "1", *args]  # fmt: skip
    result = CliRunner().invoke(pl.probe_app(), argv, env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_probe_queues_while_the_collector_is_down_then_submits(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    queue = tmp_path / "queue"
    out = tmp_path / "m.jsonl"
    first = run_probe(net, control, net.https("censored.test"), "--output", str(out),
                      "--submit", down, "--queue", str(queue))  # fmt: skip
    assert "submitted 0" in first.stderr and "1 waiting" in first.stderr
    assert len(list((queue / "pending").glob("*.json"))) == 1
    assert len(out.read_text().splitlines()) == 1  # the output is written as before

    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    try:
        second = run_probe(net, control, net.https("site.test"), "--output", str(out),
                           "--submit", server.url, "--queue", str(queue))  # fmt: skip
        assert "submitted 2" in second.stderr and "0 waiting" in second.stderr
        body = httpx.get(server.url + "/api/v1/measurements", params={"probe_cc": "PK"}).json()
    finally:
        server.stop()
    by_input = {r["input"]: r for r in body["results"]}
    assert set(by_input) == {net.https("censored.test"), net.https("site.test")}
    assert by_input[net.https("censored.test")]["verdict"] == "blocked"
    assert by_input[net.https("site.test")]["verdict"] == "ok"
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert {m["input"] for m in written} == set(by_input)
    # the receipts say which collector UID each printed measurement became
    receipts = [json.loads(line) for line in (queue / "submitted.jsonl").read_text().splitlines()]
    assert {r["local_measurement_uid"] for r in receipts} == {m["measurement_uid"] for m in written}
    for r in receipts:
        assert r["measurement_uid"] == by_input[r["input"]]["measurement_uid"]
        assert r["report_id"] == by_input[r["input"]]["report_id"]
        assert r["collector"] == server.url
