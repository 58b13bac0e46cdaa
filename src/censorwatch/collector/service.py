"""The running collector: report handling, checks, scrubbing and the group-commit writer.

Requests are checked and analysed on many threads; one writer thread takes everything queued
since its last fsync and commits it as one block, so the cost of an fsync is shared by every
submission that arrived while the previous one ran.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from censorwatch.collector import reports
from censorwatch.collector.archive import Archive
from censorwatch.collector.derive import Analyzer, SignatureCheck
from censorwatch.collector.metrics import Metrics
from censorwatch.collector.pipeline import Outcome, Pending, Pipeline
from censorwatch.collector.validate import Invalid, check_open, check_submission, decode_json
from censorwatch.scrub import scrub_submission
from censorwatch.store.base import Store

if TYPE_CHECKING:
    from censorwatch.evidence.log import TransparencyLog

log = logging.getLogger(__name__)

BACKEND_VERSION = "censorwatch-collector/1"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
_STOP = object()


class Unavailable(RuntimeError):
    """The writer cannot make submissions durable right now (answered with 503)."""


class GroupCommitter:
    """One writer thread; callers get a Future that resolves once their batch is durable."""

    def __init__(self, pipeline: Pipeline, *, max_batch: int = 1024) -> None:
        self.pipeline = pipeline
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cw-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, item: Pending) -> Future[Outcome]:
        if not self.running:
            raise Unavailable("the writer is not running")
        future: Future[Outcome] = Future()
        self._queue.put((item, future))
        return future

    def _run(self) -> None:
        metrics = self.pipeline.metrics
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            metrics.queue_depth.set(self._queue.qsize())
            started = time.perf_counter()
            try:
                outcomes = self.pipeline.commit([item for item, _ in batch], defer_events=True)
            except Exception as exc:
                log.exception("commit of %d measurements failed", len(batch))
                for _, future in batch:
                    future.set_exception(Unavailable(f"could not store the measurement: {exc}"))
                continue
            metrics.commit_seconds.observe(time.perf_counter() - started)
            metrics.commit_batch.observe(len(batch))
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                future.set_result(outcome)
            self.pipeline.feed_events()  # after the answers: events are derived, not durable


class Collector:
    """What the HTTP routes call: open reports, accept measurements, close reports."""

    def __init__(
        self,
        pipeline: Pipeline,
        key: bytes,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        max_batch: int = 1024,
    ) -> None:
        self.pipeline = pipeline
        self.key = key
        self.max_body = max_body
        self.writer = GroupCommitter(pipeline, max_batch=max_batch)

    @classmethod
    def open(
        cls,
        archive_dir: str | Path,
        store: Store,
        *,
        analyzer: Analyzer | None = None,
        verify_signature: SignatureCheck | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        log: TransparencyLog | None = None,
    ) -> Collector:
        """A collector over ``archive_dir`` (archive segments and the report key), ``store``
        and, if given, the transparency log its commits append to."""
        pipeline = Pipeline(
            Archive(archive_dir),
            store,
            analyzer=analyzer,
            verify_signature=verify_signature,
            log=log,
        )
        return cls(pipeline, reports.load_key(archive_dir), max_body=max_body)

    @property
    def metrics(self) -> Metrics:
        return self.pipeline.metrics

    def start(self) -> int:
        """Recover the archive, bring the log and the database up to date, start the writer.

        Returns the measurements stored from the archive past the database's checkpoint.
        """
        recovery = self.pipeline.recover()
        if recovery.logged:
            log.warning("logged %d archived measurements missing from the log", recovery.logged)
        if recovery.stored:
            log.warning(
                "stored %d measurements found in the archive past the checkpoint", recovery.stored
            )
        self.writer.start()
        return recovery.stored

    def stop(self) -> None:
        self.writer.stop()
        self.pipeline.close()

    def open_report(self, body: bytes) -> dict[str, Any]:
        fields = check_open(decode_json(body))
        report_id = reports.mint(self.key, **fields)
        self.metrics.reports_opened.inc()
        return {
            "backend_version": BACKEND_VERSION,
            "report_id": report_id,
            "supported_formats": ["json"],
        }

    def report(self, report_id: str) -> reports.Report:
        report = reports.verify(self.key, report_id)
        if report is None:
            raise Invalid(f"unknown report {report_id[:80]!r}", status=404)
        return report

    def prepare(self, report_id: str, body: bytes, client_ip: str | None) -> Pending:
        """Check, scrub and analyse one submission (CPU work; runs on a worker thread)."""
        report = self.report(report_id)
        content = check_submission(decode_json(body), report)
        content = scrub_submission(content, [client_ip])
        content["report_id"] = report.report_id
        return self.pipeline.prepare(content)

    def submit(self, item: Pending) -> Future[Outcome]:
        return self.writer.submit(item)
