"""``censorwatch probe --every``: real probe processes on loopback, a real collector, real locks.

The probe measures the small internet of ``probe_loopback`` (127.77/16) and submits to
``censorwatch serve`` on 127.0.0.1 through a forwarder that the test switches off and on: a
switched-off collector refuses connections, as one that is down does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

import probe_loopback as pl
from censorwatch.control.server import BackgroundServer
from censorwatch.probe.unattended import LOG_FILE, RunLock
from collector_helpers import Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FAST = ["--dns-timeout", "1", "--connect-timeout", "1", "--tls-timeout", "1",
        "--http-timeout", "1", "--no-quic"]  # fmt: skip
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


class Switch:
    """A TCP forwarder on a fixed loopback port in front of the collector: ``down()`` closes
    the port (connections are refused), ``up()`` opens it again."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() and stops listening
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture()
def collector(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "cw.duckdb", tmp_path / "archive", tmp_path / "server.log")
    yield server
    server.stop()


def start_loop(
    net: pl.Internet, control: BackgroundServer, state: Path, err: Path, *args: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **pl.exec_env(net, control.url), "COLUMNS": "200"}
    resolver = f"{net.system_dns[0]}:{net.system_dns[1]}"
    argv = [sys.executable, "-m", "censorwatch", "probe", "--state-dir", str(state),
            "--system-resolver", resolver, *FAST, *args]  # fmt: skip
    with err.open("ab") as fh:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=fh)


def wait_for(err: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in err.read_text():
        assert proc.poll() is None, f"probe exited ({proc.returncode}): {err.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in: {err.read_text()[-2000:]}"
        time.sleep(0.05)


def cycle_files(state: Path) -> list[Path]:
    return sorted((state / "measurements").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_three_cycles_with_the_collector_down_for_the_second_deliver_everything(
    net: pl.Internet, control: BackgroundServer, collector: Server, tmp_path: Path
) -> None:
    switch = Switch(int(collector.url.rsplit(":", 1)[1]))
    state, err = tmp_path / "state", tmp_path / "probe.err"
    proc = start_loop(net, control, state, err, "--url", net.https("site.test"),
                      "--every", "3s", "--jitter", "0", "--cycles", "3",
                      "--submit", switch.url)  # fmt: skip
    try:
        wait_for(err, "cycle 1: delivered 1", proc)
        switch.down()
        wait_for(err, "cycle 2: delivered 0", proc)
        switch.up()
        assert proc.wait(60) == 0, err.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    log = err.read_text()
    assert re.search(r"cycle 2: delivered 0 to \S+; 1 waiting \(ConnectError", log), log
    assert "cycle 3: delivered 2 to" in log and "; 0 waiting" in log
    assert not list((state / "queue" / "pending").glob("*.json"))

    written = [m for path in cycle_files(state) for m in lines(path)]
    assert len(written) == 3 and len(cycle_files(state)) == 3  # one measurement per cycle
    receipts = lines(state / "queue" / "submitted.jsonl")
    assert sorted(r["local_measurement_uid"] for r in receipts) == sorted(
        m["measurement_uid"] for m in written
    )
    stored = httpx.get(collector.url + "/api/v1/measurements", params={"probe_cc": "PK"}).json()
    assert sorted(r["measurement_uid"] for r in stored["results"]) == sorted(
        r["measurement_uid"] for r in receipts
    )
    assert {r["verdict"] for r in stored["results"]} == {"ok"}
    # the three cycles measured at three times, each with its own report
    assert len({m["measurement_start_time"] for m in written}) == 3
    assert len({m["report_id"] for m in written}) == 3
    assert (state / LOG_FILE).read_text().count("measuring 1 target(s)") == 3


def _intervals(log: str) -> dict[str, tuple[datetime, datetime]]:
    """Per cycle file: when its measuring started and ended, from one process's log."""
    fmt = "%Y-%m-%d %H:%M:%S,%f"
    starts = {m[2]: datetime.strptime(m[1], fmt)
              for m in re.finditer(STAMP + r" .* measuring .* into (\S+)", log)}  # fmt: skip
    ends = {Path(m[2]).name: datetime.strptime(m[1], fmt)
            for m in re.finditer(STAMP + r" .* measured in .* written to (\S+)", log)}  # fmt: skip
    assert starts.keys() == ends.keys(), log
    return {name: (starts[name], ends[name]) for name in starts}


def test_two_loops_on_one_state_folder_never_measure_at_once(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    slow = f"https://silent.test:{net.silent_port}/"  # TLS never answers: a ~2 s cycle
    args = ["--url", slow, "--every", "1s", "--jitter", "0", "--cycles", "3"]
    errs = [tmp_path / "a.err", tmp_path / "b.err"]
    procs = [start_loop(net, control, state, e, *args) for e in errs]
    try:
        for proc in procs:
            assert proc.wait(90) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    logs = [e.read_text() for e in errs]
    spans = [
        (i, name, span) for i, log in enumerate(logs) for name, span in _intervals(log).items()
    ]
    for i, name, (start, end) in spans:
        assert start < end
        assert len(lines(state / "measurements" / name)) == 1
        for j, other, (o_start, o_end) in spans:
            if i != j:
                assert end <= o_start or o_end <= start, (name, other)
    skipped = [re.findall(r"cycle \d+ skipped: another probe run holds (.*)", log) for log in logs]
    measured = [len(_intervals(log)) for log in logs]
    assert [m + len(s) for m, s in zip(measured, skipped, strict=True)] == [3, 3]
    assert sum(len(s) for s in skipped) >= 1  # the slow cycles made the loops collide
    for i, found in enumerate(skipped):
        for message in found:  # a skip names the lock and, once written, its holder
            assert str(state / "probe.lock") in message
            pids = re.findall(r"pid (\d+)", message)
            assert pids in ([], [str(procs[1 - i].pid)])


def test_a_held_lock_skips_every_cycle(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lock = RunLock(state / "probe.lock")
    assert lock.try_acquire()
    err = tmp_path / "probe.err"
    try:
        proc = start_loop(net, control, state, err, "--url", net.https("site.test"),
                          "--every", "1s", "--jitter", "0", "--cycles", "2")  # fmt: skip
        assert proc.wait(60) == 0
    finally:
        lock.release()
    log = err.read_text()
    assert (
        log.count(f"skipped: another probe run holds {state / 'probe.lock'} (pid {os.getpid()}")
        == 2
    )
    assert not list((state / "measurements").glob("*.jsonl"))


def test_sigterm_stops_between_steps(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    state, err = tmp_path / "state", tmp_path / "probe.err"
    proc = start_loop(net, control, state, err, "--url", net.https("site.test"), "--every", "1h")
    try:
        wait_for(err, "cycle 1: 1 measured", proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - sent < 5  # it did not wait out the hour
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped by SIGTERM after 1 cycle(s)" in err.read_text()
    (done,) = cycle_files(state)
    assert len(lines(done)) == 1


def _state_bytes(state: Path) -> int:
    roots = [state / "measurements", state / "queue"]
    return sum(p.stat().st_size for r in roots for p in r.rglob("*") if p.is_file())


def test_disk_cap_deletes_delivered_oldest_first_and_never_undelivered(
    net: pl.Internet, control: BackgroundServer, collector: Server, tmp_path: Path
) -> None:
    site = net.https("site.test")
    # how large one cycle's file is, from a first probe with no cap to speak of
    calibrate = tmp_path / "calibrate"
    proc = start_loop(net, control, calibrate, tmp_path / "c.err", "--url", site,
                      "--every", "1s", "--cycles", "1")  # fmt: skip
    assert proc.wait(60) == 0
    (one,) = cycle_files(calibrate)
    cap = 5 * one.stat().st_size  # room for the next cycle (file + queue copy) and ~3 files

    up, up_err = tmp_path / "up", tmp_path / "up.err"
    proc = start_loop(net, control, up, up_err, "--url", site, "--every", "1s", "--jitter", "0",
                      "--cycles", "6", "--submit", collector.url, "--max-disk", str(cap),
                      "--log-max-bytes", "1K", "--log-backups", "2")  # fmt: skip
    assert proc.wait(90) == 0, up_err.read_text()[-2000:]
    log = up_err.read_text()
    assert log.count("measuring 1 target(s)") == 6 and "disk cap: deleted" in log
    kept = [re.search(r"-(\d+)\.jsonl$", p.name)[1] for p in cycle_files(up)]
    assert 1 <= len(kept) < 6
    assert kept == [str(n) for n in range(7 - len(kept), 7)]  # the oldest went first
    assert _state_bytes(up) <= cap
    receipts = lines(up / "queue" / "submitted.jsonl")
    stored = httpx.get(collector.url + "/api/v1/measurements", params={"probe_cc": "PK"}).json()
    assert len(stored["results"]) == 6  # everything deleted had been delivered
    assert {r["measurement_uid"] for r in receipts} <= {
        r["measurement_uid"] for r in stored["results"]
    }
    # the log is rotated: three files at most, each under its size
    logs = sorted(up.glob(LOG_FILE + "*"))
    assert [p.name for p in logs] == [LOG_FILE, LOG_FILE + ".1", LOG_FILE + ".2"]
    assert all(p.stat().st_size <= 1024 for p in logs)
    assert "cycle 6: delivered 1" in (up / LOG_FILE).read_text()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}"
    down, down_err = tmp_path / "down", tmp_path / "down.err"
    proc = start_loop(net, control, down, down_err, "--url", site, "--every", "1s",
                      "--jitter", "0", "--cycles", "5", "--submit", nobody,
                      "--max-disk", str(cap))  # fmt: skip
    assert proc.wait(90) == 0, down_err.read_text()[-2000:]
    log = down_err.read_text()
    measured = log.count("measuring 1 target(s)")
    assert 1 <= measured < 5
    assert log.count("not measured: ") == 5 - measured
    assert "they are kept" in log
    pending = list((down / "queue" / "pending").glob("*.json"))
    assert len(pending) == measured == len(cycle_files(down))  # nothing undelivered deleted
    assert _state_bytes(down) <= cap


def _outside_testbed(net: pl.Internet, control: BackgroundServer, state_home: Path) -> dict:
    """The loopback internet's environment without testbed mode, where consent applies (no
    control: outside testbed mode a loopback one is refused)."""
    env = {**pl.exec_env(net, control.url), "XDG_STATE_HOME": str(state_home)}
    del env["CENSORWATCH_TESTBED"], env["CENSORWATCH_CONTROL"]
    return env


def _probe_args(net: pl.Internet, out: Path) -> list[str]:
    resolver = f"{net.system_dns[0]}:{net.system_dns[1]}"
    return ["--url", net.https("site.test"), "--no-defaults", "--system-resolver", resolver,
            "--output", str(out), *FAST]  # fmt: skip


def test_consent_non_interactive_refuses_then_yes_records(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    env: dict[str, str | None] = {**_outside_testbed(net, control, tmp_path / "state")}
    env["CENSORWATCH_TESTBED"] = env["CENSORWATCH_CONTROL"] = None  # unset for the run
    consent_file = tmp_path / "state" / "censorwatch" / "probe" / "consent.json"
    out = tmp_path / "m.jsonl"
    refused = CliRunner().invoke(pl.probe_app(), _probe_args(net, out), env=env)
    assert refused.exit_code == 3, refused.output
    assert "no consent is recorded" in refused.stderr and "--yes" in refused.stderr
    assert not out.exists() and not consent_file.exists()  # refused before measuring

    agreed = CliRunner().invoke(pl.probe_app(), [*_probe_args(net, out), "--yes"], env=env)
    assert agreed.exit_code == 0, agreed.output
    recorded = json.loads(consent_file.read_text())
    assert (recorded["version"], recorded["how"]) == (1, "--yes")
    assert len(lines(out)) == 1

    again = CliRunner().invoke(pl.probe_app(), _probe_args(net, out), env=env)
    assert again.exit_code == 0, again.output
    assert len(lines(out)) == 2
    assert json.loads(consent_file.read_text()) == recorded  # asked once, kept


def _on_terminal(argv: list[str], env: dict[str, str], answer: str | None) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its stdin, stdout and stderr; type ``answer``
    when it asks."""
    import select

    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen, answered, deadline = b"", False, time.monotonic() + 60
    try:
        while True:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child has closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if answer is not None and not answered and b"[yes/no]" in seen:
                os.write(master, answer.encode() + b"\n")
                answered = True
            if not ready and proc.poll() is not None:
                break
        return proc.wait(30), seen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_first_interactive_run_explains_the_risks_and_asks_once(
    net: pl.Internet, control: BackgroundServer, tmp_path: Path
) -> None:
    env = {**os.environ, **_outside_testbed(net, control, tmp_path / "state")}
    for name in ("CENSORWATCH_TESTBED", "CENSORWATCH_CONTROL"):
        env.pop(name, None)
    consent_file = tmp_path / "state" / "censorwatch" / "probe" / "consent.json"
    out = tmp_path / "m.jsonl"
    argv = [sys.executable, "-m", "censorwatch", "probe", *_probe_args(net, out)]

    code, shown = _on_terminal(argv, env, "no")
    assert code == 3, shown
    for part in ("What it measures.", "Who can see it.", "Legal risk.", "What is published."):
        assert part in shown
    assert "risks were not accepted" in shown
    assert not consent_file.exists() and not out.exists()

    code, shown = _on_terminal(argv, env, "yes")
    assert code == 0, shown
    assert json.loads(consent_file.read_text())["how"] == "asked"
    assert len(lines(out)) == 1

    code, shown = _on_terminal(argv, env, None)  # remembered: not asked again
    assert code == 0, shown
    assert "[yes/no]" not in shown and "Legal risk." not in shown
    assert len(lines(out)) == 2
