"""Ingest OONI raw files: each measurement is archived, analysed and stored like a submission.

Incremental: each file is remembered (by its key) once it has been read, so a second run only
reads new files. A file read to its end is *done*; a file that could not be (not gzip,
truncated, corrupt, over a limit of ``lines.Limits``, a failing read) is *done with errors*:
its measurements before the fault are stored, the reason is recorded, and later runs move on
unless asked to retry it (``retry_failed``). A run interrupted mid-file re-reads that file next
time. Either way the measurements already stored are recognised by their UID and not stored
twice.

Nothing in a file stops the run: each bad line (not UTF-8, not JSON, too long, too deep, too
many values, not a measurement) and each bad file becomes a ``Problem`` naming the file, the
line and the reason, and reading goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from censorwatch.collector.pipeline import Pending, Pipeline
from censorwatch.ingest.decode import decode_measurement
from censorwatch.ingest.lines import Limits, UnreadableFile, iter_lines
from censorwatch.ingest.sources import RawFile, Selection, Source

log = logging.getLogger(__name__)

#: Bad lines of one file named one by one; the rest are counted in one more problem.
MAX_NAMED_LINES = 100
#: A batch is committed when it holds this many measurements or this many archive bytes.
BATCH = 1000
BATCH_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Problem:
    """Something of a source file that could not be ingested, and why."""

    file: str
    line: int | None  # None: the file as a whole
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class IngestStats:
    files: int = 0  # read by this run (retried ones included)
    skipped_files: int = 0  # recorded by an earlier run (done, or done with errors)
    skipped_failed: int = 0  # of those, the ones done with errors (``retry_failed`` reads them)
    retried: int = 0  # done-with-errors files read again
    measurements: int = 0  # read and accepted
    stored: int = 0  # new to the store
    invalid: int = 0  # bad lines: each reported as a ``Problem``
    failed_files: int = 0  # files not read to their end: recorded as done with errors

    @property
    def failed(self) -> bool:
        """Whether a file of this run could not be read to its end."""
        return self.failed_files > 0


def ingest(
    source: Source,
    pipeline: Pipeline,
    selection: Selection,
    *,
    retry_failed: bool = False,
    limits: Limits | None = None,
    batch: int = BATCH,
    on_file: Callable[[RawFile], None] | None = None,
    on_measurements: Callable[[int], None] | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> IngestStats:
    """Read every selected file not yet recorded (and, with ``retry_failed``, those done with
    errors); ``on_problem`` hears of each bad line and bad file as it is found."""
    stats = IngestStats()
    store = pipeline.store
    limits = limits or Limits()
    report = on_problem or (lambda problem: log.warning("%s", problem))
    for f in source.files(selection):
        key = f"{source.name.rstrip('/')}/{f.key}"
        if store.ingested(key):
            failed_before = store.ingest_errors(key) is not None
            if not (retry_failed and failed_before):
                stats.skipped_files += 1
                stats.skipped_failed += failed_before
                continue
            stats.retried += 1
        if on_file is not None:
            on_file(f)
        reader = _FileIngest(key, pipeline, limits, stats, batch, on_measurements, report)
        errors = reader.run(source, f)
        store.mark_ingested(key, f.size, reader.accepted, errors)
        stats.files += 1
        stats.failed_files += errors is not None
    return stats


class _FileIngest:
    """One file's lines through the pipeline, in batches, with its problems reported."""

    def __init__(
        self,
        key: str,
        pipeline: Pipeline,
        limits: Limits,
        stats: IngestStats,
        batch: int,
        on_measurements: Callable[[int], None] | None,
        report: Callable[[Problem], None],
    ) -> None:
        self.key = key
        self.pipeline = pipeline
        self.limits = limits
        self.stats = stats
        self.batch = batch
        self.on_measurements = on_measurements
        self.report = report
        self.accepted = 0
        self.bad_lines = 0
        self._pending: list[Pending] = []
        self._pending_bytes = 0

    def run(self, source: Source, f: RawFile) -> str | None:
        """Ingest the file; the reason it was not read to its end, or None."""
        errors: str | None = None
        try:
            raw = source.open(f)
        except OSError as exc:
            errors = f"cannot open: {exc}"
        else:
            with raw:  # a failing commit is no fault of the file's: it ends the run
                try:
                    for number, line in iter_lines(raw, self.limits):
                        self._line(number, line)
                except UnreadableFile as exc:
                    errors = str(exc)
        self._flush()
        if self.bad_lines > MAX_NAMED_LINES:
            more = self.bad_lines - MAX_NAMED_LINES
            self.report(Problem(self.key, None, f"{more} more bad lines (not named)"))
        if errors is not None:
            self.report(Problem(self.key, None, f"{errors}; recorded as done with errors"))
        return errors

    def _line(self, number: int, line: bytes | None) -> None:
        if line is None:
            self._bad(number, f"longer than {self.limits.max_line_bytes} bytes")
            return
        if not line.strip():
            return
        found = decode_measurement(line, self.limits)
        if isinstance(found, str):
            self._bad(number, found)
            return
        pending = self._prepare(number, found)
        if pending is None:
            return
        self._pending.append(pending)
        self._pending_bytes += len(pending.line)
        self.accepted += 1
        self.stats.measurements += 1
        if len(self._pending) >= self.batch or self._pending_bytes >= BATCH_BYTES:
            self._flush()

    def _prepare(self, number: int, measurement: dict[str, Any]) -> Pending | None:
        try:
            return self.pipeline.prepare(measurement, source="ooni", keep_uid=True)
        except (RecursionError, ValueError, msgspec.EncodeError) as exc:
            self._bad(number, f"cannot be stored: {exc}")
            return None

    def _bad(self, number: int, reason: str) -> None:
        self.bad_lines += 1
        self.stats.invalid += 1
        if self.bad_lines <= MAX_NAMED_LINES:
            self.report(Problem(self.key, number, reason))

    def _flush(self) -> None:
        if not self._pending:
            return
        outcomes = self.pipeline.commit(self._pending)
        self.stats.stored += sum(o.stored for o in outcomes)
        if self.on_measurements is not None:
            self.on_measurements(len(self._pending))
        self._pending, self._pending_bytes = [], 0
