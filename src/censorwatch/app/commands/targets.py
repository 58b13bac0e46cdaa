"""``censorwatch targets sync``: a thin shell over ``censorwatch.targets.sync``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Where to look: the Citizen Lab test lists.", no_args_is_help=True)


@app.command("sync")
def sync(
    country: list[str] | None = typer.Option(
        None,
        "--cc",
        help="A country's list besides global.csv (repeatable; 'all': every country's).",
    ),
    directory: Path | None = typer.Option(
        None,
        "--dir",
        help="Where to write [default: $XDG_DATA_HOME/censorwatch/test-lists]",
        file_okay=False,
    ),
    base_url: str | None = typer.Option(
        None,
        "--url",
        help="Base URL serving the lists' files (a mirror) "
        "[default: github.com/citizenlab/test-lists, lists/]",
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds without progress."),
    max_seconds: float = typer.Option(300.0, "--max-seconds", help="Seconds for the whole sync."),
) -> None:
    """Fetch the current Citizen Lab lists (needs a network); on any failure none is replaced."""
    from censorwatch.targets.sync import UPSTREAM, ListSyncError, default_lists_dir, sync_lists

    target = directory or default_lists_dir()
    try:
        results = sync_lists(
            target,
            country or [],
            base_url=base_url or UPSTREAM,
            timeout=timeout,
            deadline_seconds=max_seconds,
        )
    except ListSyncError as exc:
        typer.echo(f"error: {exc}", err=True)
        typer.echo(f"the lists in {target} were left as they were", err=True)
        raise typer.Exit(1) from None
    for result in results:
        skipped = f", {result.bad_rows} bad rows skipped" if result.bad_rows else ""
        typer.echo(f"{result.path}: {result.status} ({result.urls} URLs{skipped})")
    typer.echo(f"use with: censorwatch probe --list {target}/<cc>.csv")
