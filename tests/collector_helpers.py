"""Shared helpers for the collector, store, API and ingest tests: a real server on loopback,
and measurements built from real OONI files."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
OONI = REPO.parent / "shared" / "data" / "ooni"
TEMPLATE = OONI / "wc05_qa" / "successWithHTTPS.json"


class Server:
    """``censorwatch serve`` in a child process, listening on a free loopback port."""

    def __init__(self, db: Path | str, archive: Path, log: Path, *extra: str) -> None:
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "censorwatch", "serve", "--db", str(db),
                 "--archive", str(archive), "--host", "127.0.0.1", "--port", "0", *extra],
                stdout=subprocess.DEVNULL, stderr=err, env=env,
            )  # fmt: skip
        self.url = self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            for line in reversed(self.log.read_text().splitlines()):
                if "censorwatch collector and API on " in line:
                    url = line.split(" on ", 1)[1].split()[0].rstrip("/")
                    try:
                        if httpx.get(url + "/health", timeout=2).status_code == 200:
                            return url
                    except httpx.HTTPError:
                        pass
                    break
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not become ready")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def make_measurement(
    i: int,
    *,
    base: dict[str, Any] | None = None,
    probe_cc: str = "PK",
    probe_asn: str = "AS17557",
    when: datetime | None = None,
) -> dict[str, Any]:
    """A distinct, valid web_connectivity measurement (a real OONI one, re-addressed)."""
    m = copy.deepcopy(base) if base is not None else template()
    when = when or datetime(2024, 2, 17, tzinfo=UTC) + timedelta(seconds=37 * i)
    m.update(
        probe_cc=probe_cc,
        probe_asn=probe_asn,
        report_id="",
        input=f"https://site{i}.example.org/",
        measurement_start_time=when.strftime("%Y-%m-%d %H:%M:%S"),
        test_start_time=when.strftime("%Y-%m-%d %H:%M:%S"),
    )
    return m


def open_report(client: httpx.Client, m: dict[str, Any]) -> str:
    r = client.post(
        "/report",
        json={"format": "json", "test_name": m["test_name"], "probe_cc": m["probe_cc"],
              "probe_asn": m["probe_asn"], "software_name": "tests", "software_version": "1"},
    )  # fmt: skip
    r.raise_for_status()
    return r.json()["report_id"]
