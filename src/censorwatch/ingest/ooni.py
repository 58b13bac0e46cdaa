"""Ingest OONI's files: each measurement is archived, analysed and stored like a submission.

Every layout of OONI's bucket is read (``layouts``): ``jsonl.gz`` files, postcans, the older
``jsonl/`` tree and the LZ4 cans; each kind of file becomes records (``readers``), each record
a measurement with the UID OONI gives it there (``identity``), and a measurement already
stored from another layout is recognised by its content and not stored again (``dedupe``).
Legacy YAML reports are not supported: each one met is named and counted, every run.

Incremental: each file is remembered (by its key) once it has been read, so a second run only
reads new files. A file read to its end is *done*; a file that could not be (not gzip, not
LZ4, not a tar, truncated, corrupt, over a limit of ``lines.Limits``, a failing read) is *done
with errors*: its measurements before the fault are stored, the reason is recorded, and later
runs move on unless asked to retry it (``retry_failed``). A run interrupted mid-file re-reads
that file next time. Either way the measurements already stored are recognised and not stored
twice.

Nothing in a file stops the run: each bad line or member (not UTF-8, not JSON, too long, too
deep, too many values, not a measurement) and each bad file becomes a ``Problem`` naming the
file, the member, the line and the reason, and reading goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec

from censorwatch.collector.pipeline import Pending, Pipeline
from censorwatch.ingest import dedupe, identity, layouts
from censorwatch.ingest.decode import decode_measurement, decode_post
from censorwatch.ingest.lines import Limits, UnreadableFile
from censorwatch.ingest.readers import Note, Record, read_records
from censorwatch.ingest.sources import RawFile, Selection, Source

log = logging.getLogger(__name__)

#: Bad lines of one file named one by one; the rest are counted in one more problem.
MAX_NAMED_LINES = 100
#: A batch is committed when it holds this many measurements or this many archive bytes.
BATCH = 1000
BATCH_BYTES = 64 << 20

YAML_CAN = "a legacy YAML report can: not supported (not read)"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something of a source file that could not be ingested, and why."""

    file: str
    line: int | None  # None: the file (or the member) as a whole
    reason: str
    member: str | None = None  # the tar member, for a container

    def __str__(self) -> str:
        where = self.file if self.member is None else f"{self.file}[{self.member}]"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class IngestStats:
    files: int = 0  # read by this run (retried ones included)
    skipped_files: int = 0  # recorded by an earlier run (done, or done with errors)
    skipped_failed: int = 0  # of those, the ones done with errors (``retry_failed`` reads them)
    retried: int = 0  # done-with-errors files read again
    measurements: int = 0  # read and accepted
    stored: int = 0  # new to the store
    duplicates: int = 0  # accepted, but already stored from another layout (by content)
    invalid: int = 0  # bad lines and members: each reported as a ``Problem``
    failed_files: int = 0  # files not read to their end: recorded as done with errors
    unsupported: int = 0  # legacy YAML files and members: each reported as a ``Problem``
    filtered: int = 0  # measurements of a can that are of another country or test
    bytes: int = 0  # bytes read from the source (as stored there: compressed)
    by_kind: Counter[str] = field(default_factory=Counter)  # accepted measurements per kind

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
    on_bytes: Callable[[int], None] | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> IngestStats:
    """Read every selected file not yet recorded (and, with ``retry_failed``, those done with
    errors); ``on_problem`` hears of each bad line, member and file as it is found,
    ``on_bytes`` of the bytes read from the source as they are read."""
    stats = IngestStats()
    store = pipeline.store
    limits = limits or Limits()
    report = on_problem or (lambda problem: log.warning("%s", problem))
    for f in source.files(selection):
        name = f"{source.name.rstrip('/')}/{f.key}"
        if f.kind == layouts.YAML_CAN:  # never recorded: named again by every run
            stats.unsupported += 1
            report(Problem(name, None, YAML_CAN))
            continue
        key = name + selection.filter_tag(f)
        if store.ingested(key):
            failed_before = store.ingest_errors(key) is not None
            if not (retry_failed and failed_before):
                stats.skipped_files += 1
                stats.skipped_failed += failed_before
                continue
            stats.retried += 1
        if on_file is not None:
            on_file(f)
        reader = FileIngest(name, pipeline, limits, stats, batch, on_measurements, report)
        reader.wanted = selection.per_measurement(f)
        errors = reader.run(source, f, on_bytes)
        store.mark_ingested(key, f.size, reader.accepted, errors)
        stats.files += 1
        stats.failed_files += errors is not None
    return stats


class _Counted:
    """The source's stream, telling ``on_bytes`` how much was read."""

    def __init__(self, raw: IO[bytes], stats: IngestStats, on_bytes: Callable[[int], None] | None):
        self._raw = raw
        self._stats = stats
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._stats.bytes += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data


class FileIngest:
    """One file's records through the pipeline, in batches, with its problems reported."""

    def __init__(
        self,
        name: str,
        pipeline: Pipeline,
        limits: Limits,
        stats: IngestStats,
        batch: int,
        on_measurements: Callable[[int], None] | None,
        report: Callable[[Problem], None],
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.limits = limits
        self.stats = stats
        self.batch = batch
        self.on_measurements = on_measurements
        self.report = report
        self.wanted: Callable[[dict], bool] | None = None
        self.kind = layouts.JSONL
        self.accepted = 0
        self.bad_lines = 0
        self._pending: list[tuple[Pending, str]] = []
        self._pending_bytes = 0

    def run(self, source: Source, f: RawFile, on_bytes: Callable[[int], None] | None) -> str | None:
        """Ingest the file; the reason it was not read to its end, or None."""
        self.kind = f.kind
        errors: str | None = None
        try:
            raw = source.open(f)
        except OSError as exc:
            errors = f"cannot open: {exc}"
        else:
            with raw:  # a failing commit is no fault of the file's: it ends the run
                counted = _Counted(raw, self.stats, on_bytes)
                try:
                    for item in read_records(f.kind, counted, self.limits):  # type: ignore[arg-type]
                        if isinstance(item, Note):
                            self._note(item)
                        else:
                            self._record(item)
                except UnreadableFile as exc:
                    errors = str(exc)
        self._flush()
        if self.bad_lines > MAX_NAMED_LINES:
            more = self.bad_lines - MAX_NAMED_LINES
            self.report(Problem(self.name, None, f"{more} more bad lines (not named)"))
        if errors is not None:
            self.report(Problem(self.name, None, f"{errors}; recorded as done with errors"))
        return errors

    def _note(self, note: Note) -> None:
        if note.unsupported:
            self.stats.unsupported += 1
            self.report(Problem(self.name, None, note.reason, note.member))
        else:
            self._bad(note.member, None, note.reason)

    def _record(self, record: Record) -> None:
        if record.data is None:
            limit = self.limits.max_line_bytes
            self._bad(record.member, record.line, f"longer than {limit} bytes")
            return
        if not record.post and not record.data.strip():
            return
        if record.post:
            found = decode_post(record.data, self.limits)
        else:
            found = decode_measurement(record.data, self.limits)
        if isinstance(found, str):
            self._bad(record.member, record.line, found)
            return
        if self.wanted is not None and not self.wanted(found):
            self.stats.filtered += 1
            return
        uid = self._uid(record, found)
        if uid is not None:
            found = {**found, "measurement_uid": uid}
        pending = self._prepare(record, found)
        if pending is None:
            return
        self._pending.append((pending, identity.content_name(found)))
        self._pending_bytes += len(pending.line)
        self.accepted += 1
        self.stats.measurements += 1
        self.stats.by_kind[self.kind] += 1
        if len(self._pending) >= self.batch or self._pending_bytes >= BATCH_BYTES:
            self._flush()

    def _uid(self, record: Record, measurement: dict[str, Any]) -> str | None:
        """The UID the layout gives (None: the line's own, or its content's)."""
        if record.post and record.member is not None:
            return identity.post_uid(record.member)
        if self.kind in (layouts.TAR_CAN, layouts.REPORT_CAN) and record.data is not None:
            return identity.can_uid(record.data, record.ended, measurement)
        return None

    def _prepare(self, record: Record, measurement: dict[str, Any]) -> Pending | None:
        try:
            return self.pipeline.prepare(measurement, source="ooni", keep_uid=True)
        except (RecursionError, ValueError, msgspec.EncodeError) as exc:
            self._bad(record.member, record.line, f"cannot be stored: {exc}")
            return None

    def _bad(self, member: str | None, number: int | None, reason: str) -> None:
        self.bad_lines += 1
        self.stats.invalid += 1
        if self.bad_lines <= MAX_NAMED_LINES:
            self.report(Problem(self.name, number, reason, member))

    def _flush(self) -> None:
        if not self._pending:
            return
        keep, duplicates = dedupe.fresh(self.pipeline.store, self._pending)
        outcomes = self.pipeline.commit(keep)
        self.stats.stored += sum(o.stored for o in outcomes)
        self.stats.duplicates += duplicates
        if self.on_measurements is not None:
            self.on_measurements(len(self._pending))
        self._pending, self._pending_bytes = [], 0
