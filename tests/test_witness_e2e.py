"""End to end on loopback: a witness process follows a collector's log, checks every new
checkpoint's consistency proof and cosigns; an exported bundle then verifies offline with
``--witness KEY --quorum 1``; a rollback or a fork presented to the witness gets 409 and no
cosignature."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from censorwatch.cli import app
from censorwatch.evidence.log import TransparencyLog
from censorwatch.evidence.note import Checkpoint, NoteSigner, sign_checkpoint
from censorwatch.evidence.witness import SIZE_CONTENT_TYPE, add_checkpoint_body
from censorwatch.probe.submit import submit_or_queue
from collector_helpers import Server, make_measurement, template

WITNESS_NAME = "witness.test/w1"


class WitnessProcess:
    """``censorwatch witness serve`` in a child process, following ``follow`` on loopback."""

    def __init__(self, state: Path, log: Path, *follow: str) -> None:
        self.log = log
        args = [
            sys.executable,
            "-m",
            "censorwatch",
            "witness",
            "serve",
            "--state",
            str(state),
            "--name",
            WITNESS_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--interval",
            "0.3",
        ]
        for url in follow:
            args += ["--follow", url]  # fmt: skip
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.url, self.key = self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"witness exited: {self.log.read_text()[-2000:]}")
            lines = self.log.read_text().splitlines()
            keys = [line.split(": ", 1)[1] for line in lines if line.startswith("witness key: ")]
            urls = [line.split(" on ", 1)[1].split()[0] for line in lines if " witness on " in line]
            if keys and urls:
                try:
                    answer = httpx.get(urls[-1], timeout=2)
                    if answer.status_code == 200:
                        assert answer.text.strip() == keys[-1]
                        return urls[-1].rstrip("/"), keys[-1]
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("witness did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def witnessed_size(state: Path, origin: str) -> int:
    path = state / "state" / f"{hashlib.sha256(origin.encode()).hexdigest()}.json"
    if not path.exists():
        return 0
    return Checkpoint.parse(json.loads(path.read_text())["checkpoint"]).tree_size


def wait_for(state: Path, origin: str, size: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while witnessed_size(state, origin) < size:
        if time.monotonic() > deadline:
            raise AssertionError(f"witness stuck at {witnessed_size(state, origin)}: "
                                 f"{log.read_text()[-2000:]}")  # fmt: skip
        time.sleep(0.1)


@pytest.mark.slow
def test_a_witness_process_follows_the_log_and_its_cosignature_verifies(tmp_path: Path) -> None:
    base = template()
    db, archive = tmp_path / "cw.duckdb", tmp_path / "archive"
    server = Server(db, archive, tmp_path / "server.log")
    state = tmp_path / "witness-state"
    witness = None
    try:
        key_doc = httpx.get(server.url + "/api/v1/log/key", timeout=10).json()
        origin = f"censorwatch/log/{key_doc['log_id']}"
        checkpoint = httpx.get(server.url + "/api/v1/log/checkpoint", timeout=10)
        assert checkpoint.status_code == 200 and checkpoint.text.startswith(origin + "\n0\n")
        witness = WitnessProcess(state, tmp_path / "witness.log", server.url)
        first = [make_measurement(i, base=base) for i in range(3)]
        assert len(submit_or_queue(first, server.url, tmp_path / "q1").sent) == 3
        wait_for(state, origin, 3, witness.log)
        more = [make_measurement(i, base=base) for i in range(3, 8)]
        assert len(submit_or_queue(more, server.url, tmp_path / "q2").sent) == 5
        wait_for(state, origin, 8, witness.log)  # 3 -> 8 needs a consistency proof over HTTP
        assert "OK " + server.url in witness.log.read_text()
    except BaseException:
        if witness is not None:
            witness.stop()
        raise
    finally:
        server.stop()
    assert witness.proc.poll() is None, witness.log.read_text()[-2000:]
    try:
        out = tmp_path / "witnessed.zip"
        runner = CliRunner()
        done = runner.invoke(app, ["evidence", "export", "--db", str(db), "--archive",
                                   str(archive), "--out", str(out), "--witness-url",
                                   witness.url])  # fmt: skip
        assert done.exit_code == 0, done.output
        assert f"cosigned by {WITNESS_NAME}" in done.output
        trust = ["--trust-file", str(tmp_path / "empty-trust-file")]
        checked = runner.invoke(app, ["evidence", "verify", str(out), "--witness", witness.key,
                                      "--quorum", "1", *trust])  # fmt: skip
        assert checked.exit_code == 0, checked.output
        assert checked.output.startswith("VERIFIED") and WITNESS_NAME in checked.output
        unvouched = runner.invoke(app, ["evidence", "verify", str(out), *trust])
        assert unvouched.exit_code == 3, unvouched.output

        # Rollback and fork, signed with the log's own key, presented to the witness process.
        with TransparencyLog(archive / "transparency-log") as log:
            heads = log.heads()
            older = next(h for h in heads if 0 < h.tree_size < 8)
            rollback = log.checkpoint_for(older)
            fork = sign_checkpoint(Checkpoint(log.origin, 8, bytes(32)),
                                   NoteSigner(log.origin, log._key))  # fmt: skip
        for old, note in ((older.tree_size, rollback), (8, fork), (0, fork)):
            answer = httpx.post(witness.url + "/add-checkpoint",
                                content=add_checkpoint_body(old, [], note), timeout=10)  # fmt: skip
            assert answer.status_code == 409, (old, answer.text)
            assert answer.headers["content-type"].startswith(SIZE_CONTENT_TYPE)
            assert answer.text == "8\n" and "—" not in answer.text
        assert witnessed_size(state, origin) == 8
        refused = (state / "refused.jsonl").read_text()
        assert "same size, another root" in refused
    finally:
        witness.stop()
