"""``censorwatch ingest ooni SOURCE``: load OONI's open data next to our own measurements.

Bad lines and bad files are named on stderr as they are found and the run goes on. The exit
code is 0 when every file read was read to its end (bad lines are skipped and counted), 1 when
at least one was not (it is recorded as done with errors; ``--retry-failed`` reads it again), 2
for a bad option.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from censorwatch.app.settings import DEFAULT_ARCHIVE, DEFAULT_DB

if TYPE_CHECKING:
    from collections.abc import Callable

    from censorwatch.app.services import Services
    from censorwatch.ingest.ooni import IngestStats
    from censorwatch.ingest.sources import Selection

app = typer.Typer(help="Import measurements from elsewhere.", no_args_is_help=True)


@app.command("ooni")
def ooni(
    source: str = typer.Argument(
        ...,
        help="Directory or s3://bucket/prefix laid out as OONI's bucket (raw/, jsonl/, canned/).",
    ),
    db: str = typer.Option(
        str(DEFAULT_DB), "--db", help="Store URL (duckdb:///path/file.duckdb) or DuckDB file."
    ),
    archive: Path = typer.Option(DEFAULT_ARCHIVE, "--archive", help="Archive directory."),
    since: str | None = typer.Option(None, "--since", help="Inclusive; date or RFC 3339."),
    until: str | None = typer.Option(None, "--until", help="Exclusive; date or RFC 3339."),
    cc: list[str] | None = typer.Option(None, "--cc", help="Country code (repeatable)."),
    test: list[str] | None = typer.Option(None, "--test", help="Test name (repeatable)."),
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", help="S3-compatible endpoint (default: AWS, anonymous)."
    ),
    fingerprints: Path | None = typer.Option(None, "--fingerprints"),
    asn_db: Path | None = typer.Option(None, "--asn-db"),
    log_dir: Path | None = typer.Option(
        None, "--log-dir", help="Transparency log (default: ARCHIVE/transparency-log)."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Read again the files an earlier run could not finish."
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Read and analyse on this Dask scheduler's workers (tcp://HOST:8786); this "
        "process commits. Needs the `cluster` extra.",
    ),
) -> None:
    """Ingest OONI raw measurements; a second run only reads files not yet ingested.

    Exit code: 0 if every file was read to its end, 1 if one was not (done with errors)."""
    from rich.filesize import decimal
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from censorwatch.app.services import open_services
    from censorwatch.collector.reports import test_name_key
    from censorwatch.evidence.log import LogBusyError
    from censorwatch.ingest.ooni import ingest
    from censorwatch.ingest.sources import Selection, open_source
    from censorwatch.store import UnsupportedStoreError
    from censorwatch.store.filters import FilterError, parse_when

    try:
        selection = Selection(
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
            ccs=frozenset(c.upper() for c in cc or []),
            tests=frozenset(test_name_key(t) for t in test or []),
        )
    except FilterError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        src = open_source(source, endpoint_url=endpoint_url)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        services = open_services(
            db, archive, fingerprints=fingerprints, asn_db=asn_db, log_dir=log_dir
        )
    except UnsupportedStoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except LogBusyError as exc:
        raise typer.BadParameter(f"{exc}: is the collector running?") from None
    from censorwatch.app.commands.events import open_events_writer

    events_writer = open_events_writer(services.store)  # before the rows: None if not built
    started = time.perf_counter()
    done = 0
    read = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]} measurements"),
        TextColumn("{task.fields[rate]:.0f} measurements/s"),
        TextColumn("{task.fields[size]}"),
        TextColumn("{task.fields[speed]}/s"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task(
            "ingesting", total=None, done=0, rate=0.0, size=decimal(0), speed=decimal(0)
        )

        def refresh() -> None:
            seconds = max(time.perf_counter() - started, 1e-6)
            progress.update(
                task,
                done=done,
                rate=done / seconds,
                size=decimal(read),
                speed=decimal(int(read / seconds)),
            )

        def advance(n: int) -> None:
            nonlocal done
            done += n
            refresh()

        def advance_bytes(n: int) -> None:
            nonlocal read
            read += n
            refresh()

        try:
            if scheduler is not None:
                stats = _ingest_on_cluster(
                    scheduler, source, endpoint_url, selection, services, retry_failed,
                    fingerprints, asn_db, advance,
                )  # fmt: skip
            else:
                stats = ingest(
                    src,
                    services.pipeline,
                    selection,
                    retry_failed=retry_failed,
                    on_file=lambda f: progress.update(task, description=f.key),
                    on_measurements=advance,
                    on_bytes=advance_bytes,
                    on_problem=lambda problem: typer.echo(str(problem), err=True),
                )
            if events_writer is not None:
                progress.update(task, description="updating stored events")
                events_writer.catch_up()  # only the rows past the events' saved position
        finally:
            total = services.store.count()
            services.close()
    elapsed = time.perf_counter() - started
    typer.echo(
        f"ingested {stats.measurements} measurements from {stats.files} files "
        f"({stats.stored} new, {stats.invalid} unreadable, {stats.skipped_files} files already "
        f"ingested; {stats.duplicates} stored before from another layout) in {elapsed:.1f}s "
        f"({stats.measurements / max(elapsed, 1e-6):.0f}/s, "
        f"{decimal(int(stats.bytes / max(elapsed, 1e-6)))}/s of {decimal(stats.bytes)}); "
        f"{total} measurements stored"
    )
    if stats.by_kind:
        kinds = ", ".join(f"{n} from {kind}" for kind, n in sorted(stats.by_kind.items()))
        typer.echo(f"by kind of file: {kinds}")
    typer.echo(_problems_line(stats))
    if events_writer is None:
        from censorwatch.events.stored import REBUILD_HINT

        typer.echo(f"stored events not updated: {REBUILD_HINT}", err=True)
    if stats.failed:
        raise typer.Exit(1)


def _ingest_on_cluster(
    scheduler: str,
    source: str,
    endpoint_url: str | None,
    selection: Selection,
    services: Services,
    retry_failed: bool,
    fingerprints: Path | None,
    asn_db: Path | None,
    advance: Callable[[int], None],
) -> IngestStats:
    """The same run with each folder's files read and analysed on a Dask worker; this process
    commits what comes back through the pipeline (archive, log, store), as ``ingest`` does."""
    from censorwatch.app.commands.reprocess import analysis_spec
    from censorwatch.ingest.ooni import IngestStats
    from censorwatch.reprocess.cluster import ClusterUnreachable, connect
    from censorwatch.reprocess.run import add_stats, ingest_on_cluster, plan, store_records

    def problem(text: str) -> None:
        typer.echo(text, err=True)

    planned = plan(
        source, selection, analysis_spec(fingerprints, asn_db), store_records(services.store),
        endpoint_url=endpoint_url, record_prefix="", keep_measurements=True,
        retry_failed=retry_failed, on_problem=problem,
    )  # fmt: skip
    retried = sum(services.store.ingested(f.key) for t in planned.tasks for f in t.files)
    try:
        with connect(scheduler) as client:
            typer.echo(f"dashboard: {client.dashboard_link}", err=True)
            stats = ingest_on_cluster(
                client, planned.tasks, services.pipeline,
                on_result=lambda result: advance(result.stats.measurements), on_problem=problem,
            )  # fmt: skip
    except ClusterUnreachable as exc:
        raise typer.BadParameter(str(exc), param_hint="--scheduler") from None
    add_stats(stats, IngestStats(skipped_files=planned.skipped_files,
                                 skipped_failed=planned.skipped_failed,
                                 unsupported=planned.unsupported))  # fmt: skip
    stats.retried = retried
    return stats


def _problems_line(stats: IngestStats) -> str:
    """How many files and lines were bad, and what a rerun would do about the files."""
    line = (
        f"bad: {stats.failed_files} files not read to their end (done with errors), "
        f"{stats.invalid} lines"
    )
    if stats.unsupported:
        line += f"; {stats.unsupported} legacy YAML reports not supported (named above)"
    if stats.filtered:
        line += f"; {stats.filtered} measurements of cans left out (other countries or tests)"
    if stats.retried:
        line += f"; {stats.retried} files retried"
    if stats.skipped_failed:
        line += (
            f"; {stats.skipped_failed} files done with errors by an earlier run "
            "(--retry-failed reads them again)"
        )
    return line
