"""``censorwatch reprocess SOURCE``: re-analyse OONI's files (or our archive) on a Dask cluster.

Files that may share measurements are one task; workers read and analyse them with the road
``ingest ooni`` takes, and either send the rows back (a DuckDB ``--db`` is written by this
process alone: a DuckDB file has one writer) or store them themselves (a server store such as
ClickHouse); ``--out`` adds Parquet parts partitioned by day and country, written by the
workers. Finished files are recorded, so a second run does only what is left. Exit code: 0 if
every file was read to its end, 1 if one was not, 2 for a bad option.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from censorwatch.ingest.sources import Selection
    from censorwatch.reprocess.tasks import TaskResult

SCHEDULER_HELP = "Dask scheduler (tcp://HOST:8786); default: a local cluster of this machine."


def reprocess(
    source: str = typer.Argument(
        ...,
        help="OONI's bucket layout (directory or s3://bucket/prefix) or a collector archive.",
    ),
    db: str | None = typer.Option(
        None, "--db", help="Store URL (duckdb:///file.duckdb, clickhouse://HOST/DB) or file."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Parquet directory, partitioned day=YYYY-MM-DD/probe_cc=XX."
    ),
    scheduler: str | None = typer.Option(None, "--scheduler", help=SCHEDULER_HELP),
    since: str | None = typer.Option(None, "--since", help="Inclusive; date or RFC 3339."),
    until: str | None = typer.Option(None, "--until", help="Exclusive; date or RFC 3339."),
    cc: list[str] | None = typer.Option(None, "--cc", help="Country code (repeatable)."),
    test: list[str] | None = typer.Option(None, "--test", help="Test name (repeatable)."),
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", help="S3-compatible endpoint (default: AWS, anonymous)."
    ),
    fingerprints: Path | None = typer.Option(None, "--fingerprints"),
    asn_db: Path | None = typer.Option(None, "--asn-db"),
) -> None:
    """Re-analyse every selected file not yet done, with today's analysis and fingerprints."""
    from censorwatch.reprocess.run import (
        Target,
        is_archive,
        manifest_records,
        plan,
        reprocess,
        store_records,
    )
    from censorwatch.store import UnsupportedStoreError, open_store, parse_store_url

    if db is None and out is None:
        raise typer.BadParameter("give --db, --out or both", param_hint="--db")
    selection = parse_selection(since, until, cc, test)
    if is_archive(source) and (since or until or cc or test):
        raise typer.BadParameter("an archive is reprocessed whole: no --since/--until/--cc/--test")
    store = worker_db = None
    if db is not None:
        try:
            if not parse_store_url(db).is_file:
                worker_db = db  # a server store takes every worker's writes
            store = open_store(db)
        except UnsupportedStoreError as exc:
            raise typer.BadParameter(str(exc), param_hint="--db") from None
    out_dir = out.resolve() if out is not None else None
    target = Target(store, worker_db, out_dir)
    records = store_records(store) if store is not None else manifest_records(out_dir)  # type: ignore[arg-type]
    started = time.perf_counter()
    try:
        try:
            planned = plan(
                source, selection, analysis_spec(fingerprints, asn_db), records,
                endpoint_url=endpoint_url, on_problem=_problem,
            )  # fmt: skip
        except (FileNotFoundError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="SOURCE") from None
        files = sum(len(t.files) for t in planned.tasks)
        with cluster_progress(scheduler, files, started) as advance:
            stats = reprocess(advance.client, planned.tasks, target, on_result=advance,
                              on_problem=_problem)  # fmt: skip
    finally:
        if store is not None:
            store.close()
    elapsed = time.perf_counter() - started
    stored = f"{stats.stored} new in the store, " if store is not None and not worker_db else ""
    typer.echo(
        f"reprocessed {stats.measurements} measurements from {stats.files} files in "
        f"{elapsed:.1f}s ({stats.measurements / max(elapsed, 1e-6):.0f}/s); {stored}"
        f"{planned.skipped_files} files done before; {stats.failed_files} files with errors, "
        f"{stats.invalid} bad lines"
    )
    if planned.unsupported:
        typer.echo(f"{planned.unsupported} legacy YAML reports not supported (named above)")
    if stats.failed_files:
        raise typer.Exit(1)


def _problem(text: str) -> None:
    typer.echo(text, err=True)


def parse_selection(
    since: str | None, until: str | None, cc: list[str] | None, test: list[str] | None
) -> Selection:
    """``--since/--until/--cc/--test`` as ``ingest ooni`` reads them."""
    from censorwatch.collector.reports import test_name_key
    from censorwatch.ingest.sources import Selection
    from censorwatch.store.filters import FilterError, parse_when

    try:
        return Selection(
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
            ccs=frozenset(c.upper() for c in cc or []),
            tests=frozenset(test_name_key(t) for t in test or []),
        )
    except FilterError as exc:
        raise typer.BadParameter(str(exc)) from None


def analysis_spec(fingerprints: Path | None, asn_db: Path | None) -> Any:
    """The analysis's inputs as absolute paths, which every worker can open."""
    from censorwatch.reprocess.tasks import AnalysisSpec

    return AnalysisSpec(
        str(fingerprints.resolve()) if fingerprints else None,
        str(asn_db.resolve()) if asn_db else None,
    )


class _Advance:
    """Called with each task's result: moves the bar (files, measurements, measurements/s)."""

    def __init__(self, client: Any, progress: Any, bar: Any, started: float) -> None:
        self.client = client
        self.progress = progress
        self.bar = bar
        self.started = started
        self.measurements = 0

    def __call__(self, result: TaskResult) -> None:
        self.measurements += result.stats.measurements
        seconds = max(time.perf_counter() - self.started, 1e-6)
        self.progress.update(
            self.bar,
            advance=len(result.files),
            done=self.measurements,
            rate=self.measurements / seconds,
        )


@contextmanager
def cluster_progress(scheduler: str | None, files: int, started: float) -> Iterator[_Advance]:
    """The cluster (connected, or a local one started) and a progress bar over the files of
    its tasks; the dashboard's address is printed first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from censorwatch.reprocess.cluster import ClusterUnreachable, connect

    with ExitStack() as stack:
        try:
            client = stack.enter_context(connect(scheduler))
        except ClusterUnreachable as exc:
            raise typer.BadParameter(str(exc), param_hint="--scheduler") from None
        typer.echo(f"dashboard: {client.dashboard_link}")
        progress = stack.enter_context(
            Progress(
                TextColumn("reprocessing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files, {task.fields[done]} measurements"),
                TextColumn("{task.fields[rate]:.0f} measurements/s"),
                TimeElapsedColumn(),
            )
        )
        bar = progress.add_task("files", total=files, done=0, rate=0.0)
        yield _Advance(client, progress, bar, started)
