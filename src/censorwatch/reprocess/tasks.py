"""One task -> its verdict rows: what a Dask worker runs, picklable and free of side effects.

A task is a *group* of files that may hold the same measurements: one folder of ``raw/`` (the
postcans of an hour and the ``jsonl.gz`` written from them), or one day of the older trees
(the cans of ``canned/DAY/`` and their re-packing under ``jsonl/…/DAY/``). Files of different
groups never share a measurement, so each group can be deduplicated on its own, on any worker,
in any order, and still give the rows one ``ingest ooni`` process gives.

Each file is read exactly as ``ingest ooni`` reads it (``ingest.ooni.FileIngest``: the same
readers, decoders, UIDs and limits; the analysis through ``Pipeline.prepare``); only the commit
differs: the rows are collected instead of archived. A segment of our own archive is read as
``Pipeline.catch_up`` reads it (``store rebuild``'s road), its rows pointing at their blocks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from censorwatch.collector.archive import Archive
from censorwatch.collector.derive import safe_verdict
from censorwatch.collector.pipeline import Outcome, Pending, Pipeline
from censorwatch.ingest import identity
from censorwatch.ingest.ooni import BATCH, FileIngest, IngestStats
from censorwatch.ingest.sources import RawFile, Selection, Source, open_source
from censorwatch.store.base import ArchiveLocation, MeasurementRow

#: Rows reprocessed from OONI's files are not in our archive: their bytes stay in the source.
NOT_ARCHIVED = ArchiveLocation("", 0)

OONI = "ooni"
ARCHIVE = "archive"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How a worker opens the source again (a ``Source`` holds clients that do not pickle)."""

    name: str
    kind: str = OONI  # OONI's bucket layout, or ARCHIVE: our collector's archive directory
    endpoint_url: str | None = None


@dataclass(frozen=True, slots=True)
class AnalysisSpec:
    """The analysis's inputs, as paths every worker can read."""

    fingerprints: str | None = None
    asn_db: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One file of a task: what to read, how problems name it, what records it as done."""

    file: RawFile  # for an archive, ``key`` is the segment's name
    name: str  # the source's name and the file's key
    key: str  # the record of the file (``Store.mark_ingested``, the manifest)


@dataclass(frozen=True, slots=True)
class Task:
    source: SourceSpec
    group: str  # the folder (or old-tree day) the files share, plus the selection's tag
    files: tuple[PlannedFile, ...]
    selection: Selection
    analysis: AnalysisSpec
    keep_measurements: bool = False  # ``ingest --scheduler``: send the measurements back too

    @property
    def task_id(self) -> str:
        """Stable across runs and retries: a retried task overwrites its own part files."""
        text = f"{self.source.name}\0{self.group}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class FileOutcome:
    key: str
    size: int
    accepted: int
    errors: str | None  # why the file was not read to its end (recorded with it)


@dataclass
class TaskResult:
    task_id: str
    files: list[FileOutcome] = field(default_factory=list)
    rows: list[tuple[MeasurementRow, str]] = field(default_factory=list)  # (row, content name)
    pending: list[tuple[Pending, str]] = field(default_factory=list)  # keep_measurements only
    stats: IngestStats = field(default_factory=IngestStats)
    problems: list[str] = field(default_factory=list)
    task_failed: bool = False  # every try raised: no row of it was written

    @property
    def errors(self) -> int:
        return sum(f.errors is not None for f in self.files)


class _GroupScope:
    """What ``dedupe.fresh`` asks of a store, over one group's rows: UIDs taken and aliases
    recorded so far. The real store is asked again by whoever writes the rows (``sinks``)."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.aliases: dict[str, str] = {}

    def existing(self, uids: Any) -> set[str]:
        return self.stored.intersection(uids)

    def aliased(self, aliases: Any) -> dict[str, str]:
        return {a: self.aliases[a] for a in aliases if a in self.aliases}

    def add_aliases(self, aliases: Any) -> None:
        for alias, uid in aliases.items():
            self.aliases.setdefault(alias, uid)


class _CollectingPipeline(Pipeline):
    """``Pipeline.prepare`` as the collector runs it; ``commit`` keeps rows (and, if asked,
    the prepared measurements) instead of archiving them, skipping UIDs already taken."""

    def __init__(self, analyzer: Any, result: TaskResult, keep_measurements: bool) -> None:
        from censorwatch.signing.signatures import verify_signature

        self.scope = _GroupScope()
        super().__init__(
            None,  # type: ignore[arg-type]  # never appended to: nothing is archived here
            self.scope,  # type: ignore[arg-type]
            analyzer=analyzer,
            verify_signature=verify_signature,
        )
        self.result = result
        self.keep_measurements = keep_measurements

    def commit(self, items: list[Pending], *, defer_events: bool = False) -> list[Outcome]:
        outcomes = []
        for p in items:
            new = p.measurement_uid not in self.scope.stored
            outcomes.append(Outcome(p.measurement_uid, new))
            if not new:
                continue
            self.scope.stored.add(p.measurement_uid)
            name = identity.content_name(p.measurement)
            if self.keep_measurements:  # committed by the client, which builds the rows
                self.result.pending.append((p, name))
            else:
                self.result.rows.append((self.row(p, NOT_ARCHIVED), name))
        return outcomes


# Per worker process: a source's client and the loaded fingerprints serve every task.
_SOURCES: dict[SourceSpec, Source] = {}
_ANALYZERS: dict[AnalysisSpec, Any] = {}


def _source(spec: SourceSpec) -> Source:
    if spec not in _SOURCES:
        _SOURCES[spec] = open_source(spec.name, endpoint_url=spec.endpoint_url)
    return _SOURCES[spec]


def _analyzer(spec: AnalysisSpec) -> Any:
    """Built once per worker process: loading fingerprints costs more than a small file."""
    if spec not in _ANALYZERS:
        _ANALYZERS[spec] = load_analyzer_for(spec)
    return _ANALYZERS[spec]


def analyse(task: Task) -> TaskResult:
    """Read and analyse every file of the task; bad lines and bad files are in the result
    (``problems``, ``FileOutcome.errors``), never raised."""
    if task.source.kind == ARCHIVE:
        return _analyse_segments(task)
    from censorwatch.ingest.lines import Limits

    result = TaskResult(task.task_id)
    pipeline = _CollectingPipeline(_analyzer(task.analysis), result, task.keep_measurements)
    source = _source(task.source)
    for planned in task.files:
        reader = FileIngest(
            planned.name,
            pipeline,
            Limits(),
            result.stats,
            BATCH,
            None,
            lambda problem: result.problems.append(str(problem)),
        )
        reader.wanted = task.selection.per_measurement(planned.file)
        errors = reader.run(source, planned.file, None)
        result.stats.files += 1
        result.stats.failed_files += errors is not None
        result.files.append(FileOutcome(planned.key, planned.file.size, reader.accepted, errors))
    return result


def _analyse_segments(task: Task) -> TaskResult:
    """Segments of our archive, re-analysed as ``store rebuild`` does (``catch_up``)."""
    result = TaskResult(task.task_id)
    pipeline = _CollectingPipeline(_analyzer(task.analysis), result, False)
    archive = Archive(task.source.name)
    for planned in task.files:
        segment = planned.file.key
        accepted = 0
        for block in archive.blocks(since=ArchiveLocation(segment, 0)):
            if block.location.segment != segment:
                break
            for line in block.lines:
                env = Pipeline.envelope(line, block.location)
                if env is None:
                    result.stats.invalid += 1
                    result.problems.append(f"{planned.name}@{block.location.offset}: unreadable")
                    continue
                p = Pending(
                    env.measurement_uid,
                    env.measurement,
                    safe_verdict(pipeline.analyzer, env.measurement),
                    env.signature,
                    env.source,
                    env.received_at,
                )
                result.rows.append((pipeline.row(p, block.location), env.measurement_uid))
                accepted += 1
        result.stats.files += 1
        result.stats.measurements += accepted
        result.files.append(FileOutcome(planned.key, planned.file.size, accepted, None))
    return result


def load_analyzer_for(spec: AnalysisSpec) -> Any:
    """The analysis the collector and ingest run, from paths (``app.services`` does the same
    from options; workers cannot import ``app``)."""
    from censorwatch.collector.derive import load_analyzer
    from censorwatch.geo import ip_database

    fps = None
    if spec.fingerprints is not None:
        from censorwatch.analysis.fingerprints import Fingerprints

        fps = Fingerprints.load(Path(spec.fingerprints))
    asn_db = Path(spec.asn_db) if spec.asn_db is not None else None
    return load_analyzer(fps, ip_database(asn_db))
