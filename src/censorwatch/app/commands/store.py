"""``censorwatch store rebuild`` and ``censorwatch export``: the database from the archive, and
the database out to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from censorwatch.app.settings import DEFAULT_ARCHIVE, DEFAULT_DB

app = typer.Typer(help="Maintain the measurement database.", no_args_is_help=True)


@app.command("rebuild")
def rebuild(
    db: Path = typer.Option(DEFAULT_DB, "--db", help="Database file to (re)create."),
    archive: Path = typer.Option(DEFAULT_ARCHIVE, "--archive", help="Archive directory to read."),
    fingerprints: Path | None = typer.Option(None, "--fingerprints"),
    asn_db: Path | None = typer.Option(None, "--asn-db"),
) -> None:
    """Recreate the database from the archive, re-running the analysis on every measurement.

    The new database is built next to the old one and replaces it only when complete.
    """
    import os

    from rich.progress import Progress

    from censorwatch.app.services import build_analyzer
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.store import open_store

    if not archive.is_dir():
        raise typer.BadParameter(f"no archive at {archive}")
    tmp = db.with_name(db.name + ".rebuild")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    store = open_store(tmp)
    pipeline = Pipeline(Archive(archive), store, analyzer=build_analyzer(fingerprints, asn_db))
    with Progress(transient=True) as progress:
        task = progress.add_task("rebuilding", total=None)
        added = pipeline.catch_up(progress=lambda n: progress.advance(task, n))
    total = store.count()
    store.close()
    os.replace(tmp, db)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    typer.echo(f"rebuilt {db}: {total} measurements ({added} from the archive)")


@app.command("optimize")
def optimize(db: Path = typer.Option(DEFAULT_DB, "--db", help="Database file.")) -> None:
    """Re-cluster the database by country, network and time (faster per-country queries)."""
    import time

    from censorwatch.store.duckdb_store import DuckDBStore

    if not db.exists():
        raise typer.BadParameter(f"no database at {db}")
    started = time.perf_counter()
    store = DuckDBStore(db)
    try:
        n = store.optimize()
    finally:
        store.close()
    typer.echo(f"optimized {db}: {n} measurements in {time.perf_counter() - started:.1f}s")


def export(
    output: Path = typer.Argument(..., help="File to write."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="Database file."),
    report_id: str | None = typer.Option(None, "--report-id"),
    probe_cc: str | None = typer.Option(None, "--probe-cc", "--cc"),
    probe_asn: str | None = typer.Option(None, "--probe-asn", "--asn"),
    input: str | None = typer.Option(None, "--input"),
    domain: str | None = typer.Option(None, "--domain"),
    test_name: str | None = typer.Option(None, "--test-name", "--test"),
    since: str | None = typer.Option(None, "--since", help="Inclusive; date or RFC 3339."),
    until: str | None = typer.Option(None, "--until", help="Exclusive; date or RFC 3339."),
    verdict: str | None = typer.Option(None, "--verdict"),
    method: str | None = typer.Option(None, "--method"),
    confirmed: bool | None = typer.Option(None, "--confirmed/--unconfirmed"),
) -> None:
    """Export measurements and their verdicts (the API's filters) to CSV or Parquet."""
    from fastapi import HTTPException

    from censorwatch.api.params import parse_asn, parse_when
    from censorwatch.store import open_store
    from censorwatch.store.base import Filters

    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter("--format must be csv or parquet")
    if not db.exists():
        raise typer.BadParameter(f"no database at {db}")
    try:
        filters = Filters(
            report_id=report_id,
            probe_cc=probe_cc.upper() if probe_cc else None,
            probe_asn=parse_asn(probe_asn),
            input=input,
            domain=domain.lower() if domain else None,
            test_name=test_name,
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
            verdict=verdict,
            method=method,
            confirmed=confirmed,
        )
    except HTTPException as exc:
        raise typer.BadParameter(str(exc.detail)) from None
    store = open_store(db, read_only=True)
    try:
        n = store.export(str(output), fmt, filters)
    finally:
        store.close()
    typer.echo(f"wrote {n} measurements to {output}")
