"""``censorwatch ingest ooni SOURCE``: load OONI's open data next to our own measurements."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from censorwatch.app.settings import DEFAULT_ARCHIVE, DEFAULT_DB

app = typer.Typer(help="Import measurements from elsewhere.", no_args_is_help=True)


@app.command("ooni")
def ooni(
    source: str = typer.Argument(
        ..., help="Directory or s3://bucket/prefix laid out as raw/YYYYMMDD/HH/CC/TESTNAME/."
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
) -> None:
    """Ingest OONI raw measurements; a second run only reads files not yet ingested."""
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
    started = time.perf_counter()
    done = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} measurements"),
        TextColumn("{task.fields[rate]:.0f} measurements/s"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("ingesting", total=None, rate=0.0)

        def advance(n: int) -> None:
            nonlocal done
            done += n
            rate = done / max(time.perf_counter() - started, 1e-6)
            progress.update(task, advance=n, rate=rate)

        try:
            stats = ingest(
                src,
                services.pipeline,
                selection,
                on_file=lambda f: progress.update(task, description=f.key),
                on_measurements=advance,
            )
        finally:
            total = services.store.count()
            services.close()
    elapsed = time.perf_counter() - started
    typer.echo(
        f"ingested {stats.measurements} measurements from {stats.files} files "
        f"({stats.stored} new, {stats.invalid} unreadable, {stats.skipped_files} files already "
        f"ingested) in {elapsed:.1f}s ({stats.measurements / max(elapsed, 1e-6):.0f}/s); "
        f"{total} measurements stored"
    )
