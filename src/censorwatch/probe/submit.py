"""The probe side of submission: a durable local queue in front of the collector.

Every measurement is first written to ``queue_dir/pending`` (fsync'd), then sent; it leaves
the queue only once the collector has acknowledged it. When the collector is unreachable the
measurements simply wait for the next ``flush``. A report ID, once opened for a measurement,
is saved next to it, so a resend after a lost acknowledgement reaches the same report and the
collector recognises the duplicate. A measurement the collector refuses (4xx) is moved to
``queue_dir/rejected`` with the reason, never deleted. Every acknowledgement is recorded in
``queue_dir/submitted.jsonl``: the collector's UID next to the probe's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from censorwatch.durable import write_atomic
from censorwatch.times import rfc3339, utcnow

DEFAULT_TIMEOUT = 15.0
MAX_RESPONSE_BYTES = 64 * 1024
RECEIPTS = "submitted.jsonl"  # one line per acknowledged measurement, in the queue folder


class CollectorUnavailable(Exception):
    """The collector answered with a server error; try again later."""


@dataclass(frozen=True)
class _Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def check(self) -> None:
        if not 200 <= self.status_code < 300:
            raise CollectorUnavailable(f"HTTP {self.status_code}: {self.text[:200]}")


@dataclass
class SubmitResult:
    sent: list[str] = field(default_factory=list)  # measurement UIDs acknowledged
    queued: int = 0  # still waiting in the queue
    rejected: int = 0  # refused by the collector, kept in queue_dir/rejected
    error: str | None = None  # why the last flush stopped early


class SubmissionQueue:
    """A directory of measurements waiting to be acknowledged by a collector."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.pending = self.directory / "pending"
        self.rejected = self.directory / "rejected"
        for d in (self.pending, self.rejected):
            d.mkdir(parents=True, exist_ok=True)

    def put(self, measurement: dict[str, Any]) -> Path:
        data = json.dumps({"report_id": None, "measurement": measurement}).encode()
        name = f"{time.time_ns():020d}-{hashlib.sha256(data).hexdigest()[:16]}.json"
        path = self.pending / name
        write_atomic(path, data)
        return path

    def __len__(self) -> int:
        return sum(1 for p in self.pending.glob("*.json"))

    def items(self) -> list[Path]:
        return sorted(self.pending.glob("*.json"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def flush(
        self,
        url: str,
        *,
        ca: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        should_stop: Callable[[], bool] | None = None,
    ) -> SubmitResult:
        """Send everything queued, oldest first; stop at the first transport or server error,
        or before the next measurement once ``should_stop()`` says so (a probe asked to stop)."""
        result = SubmitResult()
        verify: ssl.SSLContext | bool = True
        if ca is not None:
            verify = ssl.create_default_context(cafile=str(ca))
        with (
            self._locked(),
            httpx.Client(base_url=url.rstrip("/"), timeout=timeout, verify=verify) as client,
        ):
            reports: dict[tuple[str, str, str], str] = {}
            for path in self.items():
                if should_stop is not None and should_stop():
                    result.error = "stopped before the queue was empty"
                    break
                try:
                    outcome = self._send_one(client, path, reports)
                except (
                    httpx.HTTPError,
                    OSError,
                    ValueError,
                    KeyError,
                    CollectorUnavailable,
                ) as exc:
                    result.error = f"{type(exc).__name__}: {exc}"
                    break
                if outcome is None:
                    result.rejected += 1
                elif isinstance(outcome, str):
                    result.sent.append(outcome)
        result.queued = len(self)
        return result

    def trim_receipts(self, max_bytes: int) -> int:
        """Keep ``submitted.jsonl`` within ``max_bytes`` by dropping its oldest lines (they
        describe delivered measurements); the bytes freed."""
        path = self.directory / RECEIPTS
        with self._locked():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return 0
            if len(data) <= max_bytes:
                return 0
            start = len(data) - max_bytes
            if data[start - 1 : start] != b"\n":  # cut inside a line: start at the next one
                after = data.find(b"\n", start)
                start = len(data) if after < 0 else after + 1
            keep = data[start:]
            write_atomic(path, keep)
            return len(data) - len(keep)

    def _post(self, client: httpx.Client, path: str, body: dict[str, Any]) -> _Reply:
        with client.stream("POST", path, json=body) as response:
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_RESPONSE_BYTES:
                    raise ValueError("collector response too large")
            return _Reply(response.status_code, data)

    def _send_one(
        self, client: httpx.Client, path: Path, reports: dict[tuple[str, str, str], str]
    ) -> str | None:
        """The acknowledged UID, or None when the collector refused the measurement."""
        item = json.loads(path.read_bytes())
        m = item["measurement"]
        for _attempt in range(2):
            if not item.get("report_id"):
                key = (str(m.get("test_name")), str(m.get("probe_cc")), str(m.get("probe_asn")))
                if key not in reports:
                    opened = self._post(
                        client,
                        "/report",
                        {
                            "format": "json",
                            "test_name": key[0],
                            "probe_cc": key[1],
                            "probe_asn": key[2],
                            "software_name": str(m.get("software_name") or "censorwatch"),
                            "software_version": str(m.get("software_version") or ""),
                        },
                    )
                    if 400 <= opened.status_code < 500:
                        return self._reject(path, item, opened)
                    opened.check()
                    reports[key] = opened.json()["report_id"]
                item["report_id"] = reports[key]
                write_atomic(path, json.dumps(item).encode())
            content = {**m, "report_id": item["report_id"]}
            resp = self._post(
                client, f"/report/{item['report_id']}", {"format": "json", "content": content}
            )
            if resp.status_code == 404:  # report unknown to this collector: open a new one
                item["report_id"] = None
                continue
            if 400 <= resp.status_code < 500:
                return self._reject(path, item, resp)
            resp.check()
            uid = resp.json()["measurement_uid"]
            self._receipt(str(client.base_url), item["report_id"], uid, m)
            path.unlink()
            return uid
        return self._reject(path, item, resp)

    def _receipt(self, collector: str, report_id: str, uid: str, m: dict[str, Any]) -> None:
        """Append to ``submitted.jsonl`` which UID the collector gave a measurement.

        The collector names a measurement after its report, so its UID differs from the one
        the probe printed; this is where a user finds the one to cite.
        """
        line = {
            "submitted_at": rfc3339(utcnow()),
            "collector": collector,
            "report_id": report_id,
            "measurement_uid": uid,
            "local_measurement_uid": m.get("measurement_uid"),
            "input": m.get("input"),
        }
        with open(self.directory / RECEIPTS, "ab") as fh:
            fh.write(json.dumps(line, sort_keys=True).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _reject(self, path: Path, item: dict[str, Any], resp: _Reply) -> None:
        item["rejected"] = {"status": resp.status_code, "reason": resp.text[:2000]}
        write_atomic(self.rejected / path.name, json.dumps(item).encode())
        path.unlink()
        return None


def submit_or_queue(
    measurements: Iterable[dict[str, Any]],
    url: str,
    queue_dir: str | Path,
    ca: str | Path | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> SubmitResult:
    """Queue ``measurements`` durably, then send all that is queued to the collector at ``url``."""
    queue = SubmissionQueue(queue_dir)
    for m in measurements:
        queue.put(m)
    return queue.flush(url, ca=ca, timeout=timeout)


class QueueingWriter:
    """A text stream for the probe's JSONL output that also queues each measurement.

    Every complete line is written through to ``out`` and put in the queue (fsync'd) as soon as
    the probe writes it, so a probe killed mid-run loses nothing it already measured.
    """

    def __init__(self, out: Any, queue: SubmissionQueue) -> None:
        self.out = out
        self.queue = queue
        self._partial = ""
        self.queued = 0

    def write(self, text: str) -> int:
        self.out.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self.queue.put(json.loads(line))
                self.queued += 1
        return len(text)

    def flush(self) -> None:
        self.out.flush()
