"""``censorwatch store rebuild`` and ``censorwatch export``: the database from the archive, and
the database out to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from censorwatch.app.settings import DEFAULT_ARCHIVE, DEFAULT_DB

app = typer.Typer(help="Maintain the measurement database.", no_args_is_help=True)


@app.command("rebuild")
def rebuild(
    db: str = typer.Option(
        str(DEFAULT_DB),
        "--db",
        help="Store to (re)create: duckdb:///path/file.duckdb, a file, or a new "
        "ClickHouse database (clickhouse://HOST:8123/DB).",
    ),
    archive: Path = typer.Option(DEFAULT_ARCHIVE, "--archive", help="Archive directory to read."),
    fingerprints: Path | None = typer.Option(None, "--fingerprints"),
    asn_db: Path | None = typer.Option(None, "--asn-db"),
    log_dir: Path | None = typer.Option(
        None, "--log-dir", help="Transparency log (default: ARCHIVE/transparency-log)."
    ),
) -> None:
    """Recreate the database from the archive, re-running the analysis on every measurement.

    The new database is built next to the old one and replaces it only when complete. Like
    ``serve`` on start-up, it first appends to the transparency log any archived measurement
    the log is missing.
    """
    import os

    from rich.progress import Progress

    from censorwatch.app.services import open_services
    from censorwatch.evidence.log import LogBusyError
    from censorwatch.store import UnsupportedStoreError, parse_store_url

    try:
        parsed = parse_store_url(db)
    except UnsupportedStoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    if not archive.is_dir():
        raise typer.BadParameter(f"no archive at {archive}")
    if not parsed.is_file:
        _rebuild_on_server(db, archive, fingerprints, asn_db, log_dir)
        return
    target = parsed.path
    tmp = target.with_name(target.name + ".rebuild")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        services = open_services(
            tmp, archive, fingerprints=fingerprints, asn_db=asn_db, log_dir=log_dir
        )
    except LogBusyError as exc:
        tmp.unlink(missing_ok=True)
        raise typer.BadParameter(f"{exc}: stop the collector first") from None
    with services, Progress(transient=True) as progress:
        task = progress.add_task("rebuilding", total=None)
        recovery = services.pipeline.recover(progress=lambda n: progress.advance(task, n))
        total = services.store.count()
    os.replace(tmp, target)
    Path(str(target) + ".wal").unlink(missing_ok=True)
    logged = f"; {recovery.logged} appended to the log" if recovery.logged else ""
    typer.echo(
        f"rebuilt {target}: {total} measurements ({recovery.stored} from the archive{logged})"
    )


def _rebuild_on_server(
    db: str, archive: Path, fingerprints: Path | None, asn_db: Path | None, log_dir: Path | None
) -> None:
    """A server's store (ClickHouse) cannot be swapped like a file: build into a new database,
    then point ``--db`` at it."""
    from censorwatch.app.services import open_services
    from censorwatch.evidence.log import LogBusyError
    from censorwatch.store import StoreNotFoundError, UnsupportedStoreError

    try:
        services = open_services(
            db, archive, fingerprints=fingerprints, asn_db=asn_db, log_dir=log_dir
        )
    except (StoreNotFoundError, UnsupportedStoreError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except LogBusyError as exc:
        raise typer.BadParameter(f"{exc}: stop the collector first") from None
    with services:
        held = services.store.count()
        if held:
            raise typer.BadParameter(
                f"{db} already holds {held} measurements; rebuild into a new database",
                param_hint="--db",
            )
        recovery = services.pipeline.recover()
        total = services.store.count()
    logged = f"; {recovery.logged} appended to the log" if recovery.logged else ""
    typer.echo(f"rebuilt {db}: {total} measurements ({recovery.stored} from the archive{logged})")


@app.command("optimize")
def optimize(
    db: str = typer.Option(
        str(DEFAULT_DB), "--db", help="Store URL (duckdb:///path/file.duckdb) or DuckDB file."
    ),
) -> None:
    """Re-cluster the database by country, network and time (faster per-country queries)."""
    import time

    from censorwatch.store import StoreNotFoundError, UnsupportedStoreError, open_store

    started = time.perf_counter()
    try:
        store = open_store(db, create=False)
    except (StoreNotFoundError, UnsupportedStoreError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    try:
        n = store.optimize()
    finally:
        store.close()
    typer.echo(f"optimized {db}: {n} measurements in {time.perf_counter() - started:.1f}s")


def export(
    output: Path = typer.Argument(..., help="File to write."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    db: str = typer.Option(
        str(DEFAULT_DB), "--db", help="Store URL (duckdb:///path/file.duckdb) or DuckDB file."
    ),
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
    from censorwatch.store import StoreNotFoundError, UnsupportedStoreError, open_store
    from censorwatch.store.filters import FilterError, option_names, parse_filters

    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter("--format must be csv or parquet")
    try:
        filters = parse_filters(
            {
                "report_id": report_id,
                "probe_cc": probe_cc,
                "probe_asn": probe_asn,
                "input": input,
                "domain": domain,
                "test_name": test_name,
                "since": since,
                "until": until,
                "verdict": verdict,
                "method": method,
                "confirmed": confirmed,
            },
            option_names({}),
        )
    except FilterError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        store = open_store(db, read_only=True)
    except (StoreNotFoundError, UnsupportedStoreError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    try:
        n = store.export(str(output), fmt, filters)
    finally:
        store.close()
    typer.echo(f"wrote {n} measurements to {output}")
