"""Plan, submit, gather, resume: a run over the files of one source on a Dask cluster.

The client lists the selected files, groups those that may share measurements into tasks
(``tasks``), leaves out tasks whose files are all recorded (the store's ``ingested``; for a
Parquet-only run, the out dir's manifest) and keeps a bounded number of tasks in flight. Dask
runs a task again when it fails or its worker is lost (``retries``); writes are idempotent (one
row per UID, part files replaced whole), so a task run twice changes nothing. A task that fails
every try is named, its files recorded with the error, and the run goes on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from censorwatch.collector.archive import SEGMENT_RE
from censorwatch.ingest import dedupe, layouts
from censorwatch.ingest.ooni import BATCH, YAML_CAN, IngestStats
from censorwatch.ingest.sources import RawFile, Selection, open_source
from censorwatch.reprocess.sinks import finished_in_manifest, write_parts, write_to_store
from censorwatch.reprocess.tasks import (
    ARCHIVE,
    OONI,
    AnalysisSpec,
    FileOutcome,
    PlannedFile,
    SourceSpec,
    Task,
    TaskResult,
    analyse,
)
from censorwatch.store.base import Store

if TYPE_CHECKING:
    from censorwatch.collector.pipeline import Pipeline

#: Tries of a task beyond the first (a worker lost mid-task is counted by the scheduler).
RETRIES = 3
#: Tasks in flight per worker thread: enough to keep workers busy, few enough to bound the
#: client's memory and the scheduler's state on a history of millions of files.
IN_FLIGHT_PER_THREAD = 4
#: Prefix of the records ``reprocess`` keeps in a store, apart from those of ``ingest``.
RECORD_PREFIX = "reprocess:"


@dataclass(frozen=True, slots=True)
class Target:
    """Where rows go: ``store`` is written by this process (and holds the records a re-run
    reads) unless ``worker_db`` is set: a server store the workers write themselves."""

    store: Store | None
    worker_db: str | None
    out: Path | None


@dataclass
class Plan:
    tasks: list[Task]
    skipped_files: int = 0  # recorded by an earlier run
    skipped_failed: int = 0  # of those, done with errors
    unsupported: int = 0  # legacy YAML cans: named, never read


def is_archive(source: str) -> bool:
    """Whether ``source`` is our collector's archive (segments) rather than OONI's layout."""
    root = Path(source)
    if source.startswith("s3://") or not root.is_dir():
        return False
    if any((root / top).is_dir() for top in layouts.TREES):
        return False
    return any(SEGMENT_RE.match(p.name) for p in root.iterdir())


def group_of(f: RawFile) -> str:
    """The files that may hold the same measurement: a ``raw/`` folder (postcans and the
    ``jsonl.gz`` made from them), or a day of the older trees (cans and their ``jsonl/``)."""
    if f.kind in (layouts.JSONL, layouts.POSTCAN) and "raw/" in f.key:
        return f.key.rsplit("/", 1)[0]
    return f"before-raw/{f.hour:%Y-%m-%d}"


def plan(
    source: str,
    selection: Selection,
    analysis: AnalysisSpec,
    done: Callable[[str], str | bool | None],
    *,
    endpoint_url: str | None = None,
    record_prefix: str = RECORD_PREFIX,
    keep_measurements: bool = False,
    retry_failed: bool = False,
    on_problem: Callable[[str], None] = print,
) -> Plan:
    """The tasks still to do, in the source's order. ``done(key)`` is False for a file not
    recorded, else its recorded errors (None: read to its end)."""
    if is_archive(source):
        spec = SourceSpec(str(Path(source).resolve()), ARCHIVE)
        found = _archive_files(Path(spec.name), record_prefix)
    else:
        # Workers open the source on their own (another working directory, or machine).
        where = source if source.startswith("s3://") else str(Path(source).resolve())
        spec = SourceSpec(where, OONI, endpoint_url)
        found = _bucket_files(source, selection, endpoint_url, record_prefix)
    groups: dict[str, list[PlannedFile]] = {}
    result = Plan([])
    for group, planned in found:
        if planned is None:  # a legacy YAML can: named, as ingest names it
            result.unsupported += 1
            on_problem(f"{group}: {YAML_CAN}")
            continue
        groups.setdefault(group, []).append(planned)
    for group, files in groups.items():
        states = [done(f.key) for f in files]
        todo = [
            s is False or (retry_failed and isinstance(s, str)) for s in states
        ]  # fmt: skip
        if not any(todo):
            result.skipped_files += len(files)
            result.skipped_failed += sum(isinstance(s, str) for s in states)
            continue
        tags = "".join(sorted({f.key.partition("#")[2] for f in files}))
        task = Task(spec, group + tags, tuple(files), selection, analysis, keep_measurements)
        result.tasks.append(task)
    return result


def _bucket_files(
    source: str, selection: Selection, endpoint_url: str | None, prefix: str
) -> Iterator[tuple[str, PlannedFile | None]]:
    src = open_source(source, endpoint_url=endpoint_url)
    for f in src.files(selection):
        name = f"{src.name.rstrip('/')}/{f.key}"
        if f.kind == layouts.YAML_CAN:
            yield name, None
            continue
        yield group_of(f), PlannedFile(f, name, prefix + name + selection.filter_tag(f))


def _archive_files(root: Path, prefix: str) -> Iterator[tuple[str, PlannedFile | None]]:
    """Each segment is a task; its record carries its size, so a segment that grew (the
    newest, while the collector runs) is read again (its stored rows are kept)."""
    for path in sorted(p for p in root.iterdir() if SEGMENT_RE.match(p.name)):
        size = path.stat().st_size
        f = RawFile(path.name, size, datetime(1970, 1, 1), None, None, ARCHIVE)
        yield path.name, PlannedFile(f, f"{root}/{path.name}", f"{prefix}{root}/{path.name}@{size}")


def store_records(store: Store) -> Callable[[str], str | bool | None]:
    def done(key: str) -> str | bool | None:
        return store.ingest_errors(key) if store.ingested(key) else False

    return done


def manifest_records(out: Path) -> Callable[[str], str | bool | None]:
    finished = finished_in_manifest(out)
    return lambda key: finished.get(key, None) if key in finished else False


# -- what a worker runs ------------------------------------------------------------------------


def run_task(
    task: Task, out: str | None, worker_db: str | None, send_rows: bool = True
) -> TaskResult:
    """A worker's whole job for a task: analyse, write its parts, store it if told to. The
    rows travel back to the client only when it writes them (``send_rows``): pickling and
    moving them costs both ends CPU the analysis could use."""
    result = analyse(task)
    if out is not None:
        write_parts(Path(out), result)
    if worker_db is not None:
        write_to_store(_worker_store(worker_db), result)
    if worker_db is not None or not send_rows:
        result.rows = []  # written here: nothing to send back
    return result


_STORES: dict[str, Store] = {}


def _worker_store(url: str) -> Store:
    """One connection per worker process to the server store."""
    if url not in _STORES:
        from censorwatch.store import open_store

        _STORES[url] = open_store(url)
    return _STORES[url]


# -- the client --------------------------------------------------------------------------------


def gather(
    client: Any,
    tasks: list[Task],
    take: Callable[[TaskResult], None],
    *,
    out: Path | None = None,
    worker_db: str | None = None,
    send_rows: bool = True,
) -> None:
    """Run every task on the cluster, a bounded number at a time, and hand each result to
    ``take`` as it arrives; a task that failed every try arrives as a failed result."""
    from distributed import as_completed

    threads = max(sum(client.nthreads().values()), 1)
    window = threads * IN_FLIGHT_PER_THREAD
    run_id = uuid.uuid4().hex[:8]  # a run's keys never meet an earlier run's on the scheduler
    by_key: dict[str, Task] = {}
    queue = iter(tasks)

    def submit(task: Task) -> Any:
        key = f"reprocess-{task.task_id}-{run_id}"
        by_key[key] = task
        out_text = str(out) if out is not None else None
        return client.submit(
            run_task, task, out_text, worker_db, send_rows, key=key, retries=RETRIES, pure=False
        )

    completed = as_completed([submit(t) for _, t in zip(range(window), queue, strict=False)])
    for future in completed:
        task = by_key.pop(future.key)
        try:
            result = future.result()
        except Exception as exc:  # every try failed: name it, record it, go on
            result = failed(task, f"task failed: {type(exc).__name__}: {exc}")
        future.release()
        following = next(queue, None)
        if following is not None:
            completed.add(submit(following))
        take(result)


def failed(task: Task, reason: str) -> TaskResult:
    """The result of a task that raised every time: its files are recorded with ``reason``."""
    result = TaskResult(task.task_id, task_failed=True)
    for f in task.files:
        result.files.append(FileOutcome(f.key, f.file.size, 0, reason))
        result.problems.append(f"{f.name}: {reason}; recorded as done with errors")
    result.stats.files = result.stats.failed_files = len(task.files)
    return result


def add_stats(total: IngestStats, part: IngestStats) -> None:
    for f in fields(IngestStats):
        value = getattr(part, f.name)
        if f.name == "by_kind":
            total.by_kind.update(value)
        else:
            setattr(total, f.name, getattr(total, f.name) + value)


def reprocess(
    client: Any,
    tasks: list[Task],
    target: Target,
    *,
    on_result: Callable[[TaskResult], None] = lambda result: None,
    on_problem: Callable[[str], None] = print,
) -> IngestStats:
    """Rows to the target: the client writes a DuckDB store, the workers everything else."""
    stats = IngestStats()
    client_writes = target.store is not None and target.worker_db is None

    def take(result: TaskResult) -> None:
        for problem in result.problems:
            on_problem(problem)
        if target.store is not None and (client_writes or result.task_failed):
            write_to_store(target.store, result)
        if result.task_failed and target.out is not None:
            write_parts(target.out, result)  # the manifest records the failure
        add_stats(stats, result.stats)
        on_result(result)

    gather(client, tasks, take, out=target.out, worker_db=target.worker_db, send_rows=client_writes)
    return stats


def ingest_on_cluster(
    client: Any,
    tasks: list[Task],
    pipeline: Pipeline,
    *,
    on_result: Callable[[TaskResult], None] = lambda result: None,
    on_problem: Callable[[str], None] = print,
) -> IngestStats:
    """``ingest ooni`` with the reading and the analysis on the workers: each task's prepared
    measurements are committed here (archive, log, store) as ``ingest`` commits them."""
    stats = IngestStats()
    store = pipeline.store

    def take(result: TaskResult) -> None:
        for problem in result.problems:
            on_problem(problem)
        for start in range(0, len(result.pending), BATCH):
            keep, duplicates = dedupe.fresh(store, result.pending[start : start + BATCH])
            result.stats.stored += sum(o.stored for o in pipeline.commit(keep))
            result.stats.duplicates += duplicates
        for f in result.files:
            store.mark_ingested(f.key, f.size, f.accepted, f.errors)
        add_stats(stats, result.stats)
        on_result(result)

    gather(client, tasks, take)
    return stats
