"""The log API served for real on 127.0.0.1, and the monitor that catches a rewritten log."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from censorwatch.cli import app as cli_app
from censorwatch.evidence import merkle
from censorwatch.evidence.formats import InclusionProof, TreeHead, consistency_from_json
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.monitor import check_log


@contextmanager
def serve(log: TransparencyLog) -> Iterator[str]:
    """The log's routes in a real HTTP server on a free loopback port."""
    from censorwatch.evidence.api import log_router

    api = FastAPI()
    api.include_router(log_router(log))
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def fill(log: TransparencyLog, start: int, stop: int, tag: str = "") -> None:
    log.append_many((f"uid-{i}", {"n": i, "tag": tag}) for i in range(start, stop))


def test_api_serves_heads_and_proofs_that_verify(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path / "log") as log, serve(log) as url:
        fill(log, 0, 37)
        with httpx.Client(base_url=url, timeout=5) as client:
            key = client.get("/api/v1/log/key").json()
            head = TreeHead.from_json(client.get("/api/v1/log/sth").json())
            assert head.tree_size == 37 and key["log_id"] == head.log_id
            assert head.verify(log.public_key)

            doc = client.get("/api/v1/log/proof/inclusion", params={"measurement_uid": "uid-9"})
            body = doc.json()
            assert TreeHead.from_json(body.pop("sth")) == head
            proof = InclusionProof.from_json(body)
            assert merkle.verify_inclusion(
                proof.leaf_index, proof.tree_size, proof.leaf_hash, proof.audit_path, head.root_hash
            )

            fill(log, 37, 50)
            newer = TreeHead.from_json(client.get("/api/v1/log/sth").json())
            first, second, path = consistency_from_json(
                client.get(
                    "/api/v1/log/proof/consistency", params={"first": 37, "second": 50}
                ).json()
            )
            assert merkle.verify_consistency(first, second, head.root_hash, newer.root_hash, path)

            older = client.get(
                "/api/v1/log/proof/inclusion", params={"measurement_uid": "uid-9", "tree_size": 37}
            ).json()
            assert older["tree_size"] == 37
            missing = client.get("/api/v1/log/proof/inclusion", params={"measurement_uid": "nope"})
            assert missing.status_code == 404
            too_far = client.get(
                "/api/v1/log/proof/consistency", params={"first": 10, "second": 500}
            )
            assert too_far.status_code == 400
            unsigned = client.get(
                "/api/v1/log/proof/inclusion", params={"measurement_uid": "uid-9", "tree_size": 40}
            )
            assert unsigned.status_code == 400  # no head of size 40 was ever published


def test_monitor_follows_an_honest_log(tmp_path: Path) -> None:
    state = tmp_path / "monitor.json"
    with TransparencyLog(tmp_path / "log") as log, serve(log) as url:
        fill(log, 0, 5)
        first = check_log(url, state)
        assert first.ok and "first contact" in first.notes[0]
        assert json.loads(state.read_text())["sth"]["tree_size"] == 5
        fill(log, 5, 23)
        grown = check_log(url, state)
        assert grown.ok and grown.message == "consistent: 5 -> 23 leaves"
        same = check_log(url, state)
        assert same.ok and "unchanged" in same.message
        wrong = check_log(url, tmp_path / "other.json", expected_log_id="00" * 32)
        assert not wrong.ok and "not the expected" in wrong.message


def test_a_log_rewritten_behind_the_api_is_caught_by_consistency(tmp_path: Path) -> None:
    """An operator (or intruder) changes leaf 3 in storage, drops the history that would
    betray it, restarts the log and keeps signing. The monitor's earlier head exposes it."""
    state = tmp_path / "monitor.json"
    directory = tmp_path / "log"
    with TransparencyLog(directory) as log:
        fill(log, 0, 10)
        with serve(log) as url:
            assert check_log(url, state).ok

    # The rewrite: same key, same size, one leaf different, history removed.
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    shutil.copy(directory / "log.key", rebuilt / "log.key")
    with TransparencyLog(rebuilt) as log:
        fill(log, 0, 3)
        log.append("uid-3", {"n": 3, "tag": "rewritten"})
        fill(log, 4, 10)
    shutil.rmtree(directory)
    rebuilt.rename(directory)

    with TransparencyLog(directory) as log, serve(log) as url:
        fill(log, 10, 12)
        result = check_log(url, state)
        assert not result.ok
        assert "INCONSISTENT" in result.message
        conflicts = list(tmp_path.glob("monitor.conflict-*.json"))
        assert len(conflicts) == 1
        saved = json.loads(conflicts[0].read_text())
        earlier, later = TreeHead.from_json(saved["earlier"]), TreeHead.from_json(saved["later"])
        # Both heads carry valid signatures of the same log: a portable proof of misbehaviour.
        assert earlier.verify(log.public_key) and later.verify(log.public_key)
        # The state still holds the honest head, so the alarm repeats until someone looks.
        assert json.loads(state.read_text())["sth"]["tree_size"] == 10

        runner = CliRunner()
        out = runner.invoke(cli_app, ["evidence", "monitor", url, "--state", str(state)])
        assert out.exit_code == 1
        assert "ALERT" in out.output and "INCONSISTENT" in out.output


@pytest.mark.slow
def test_same_size_with_another_root_is_caught(tmp_path: Path) -> None:
    state = tmp_path / "monitor.json"
    directory = tmp_path / "log"
    with TransparencyLog(directory) as log, serve(log) as url:
        fill(log, 0, 6)
        assert check_log(url, state).ok
    (directory / "sth.jsonl").unlink()
    (directory / "leaves.bin").unlink()
    with TransparencyLog(directory) as log, serve(log) as url:
        fill(log, 0, 6, tag="other")
        result = check_log(url, state)
        assert not result.ok and "two different roots" in result.message
    with TransparencyLog(directory) as log, serve(log) as url:
        runner = CliRunner()
        fresh = tmp_path / "fresh.json"
        ok = runner.invoke(cli_app, ["evidence", "monitor", url, "--state", str(fresh)])
        assert ok.exit_code == 0 and "OK" in ok.output


@pytest.mark.parametrize("status", [404, 500])
def test_monitor_reports_an_unreachable_log(tmp_path: Path, status: int) -> None:
    api = FastAPI()

    @api.get("/api/v1/log/key")
    def key() -> dict:
        from fastapi import HTTPException

        raise HTTPException(status, "gone")

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        out = CliRunner().invoke(
            cli_app,
            ["evidence", "monitor", f"http://127.0.0.1:{port}", "--state", str(tmp_path / "s")],
        )
        assert out.exit_code == 2
        assert f"HTTP {status}" in out.output
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
