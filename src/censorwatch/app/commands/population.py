"""``censorwatch population``: per-AS user estimates, so events can say how many people a
block touches."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from censorwatch.app.settings import DEFAULT_POPULATION

app = typer.Typer(
    help="Per-AS internet-user estimates (APNIC's layout): how many people a block touches.",
    no_args_is_help=True,
)


@app.command("load")
def load(
    files: Annotated[list[Path], typer.Argument(help="APNIC per-AS estimates: CSV or JSON.")],
    into: Annotated[
        Path, typer.Option("--into", help="Where events and serve read estimates from.")
    ] = DEFAULT_POPULATION,
    estimated_on: Annotated[
        str | None,
        typer.Option("--date", help="The estimate's date (YYYY-MM-DD) when the name lacks it."),
    ] = None,
    source: Annotated[str, typer.Option(help="Who made the estimate.")] = "APNIC",
) -> None:
    """Check estimate files and keep them, dated, for ``events`` and ``serve``."""
    from censorwatch.durable import write_atomic
    from censorwatch.events.population import PopulationError, load_estimates

    when = None
    if estimated_on is not None:
        try:
            when = date.fromisoformat(estimated_on)
        except ValueError:
            raise typer.BadParameter("not a YYYY-MM-DD date", param_hint="--date") from None
    into.mkdir(parents=True, exist_ok=True)
    for path in files:
        try:
            est = load_estimates(path, estimated_on=when, source=source)
        except (PopulationError, OSError) as exc:
            typer.echo(f"{path}: {exc}", err=True)
            raise typer.Exit(1) from None
        stem = "".join(c if c.isalnum() else "-" for c in est.source)
        target = into / f"{stem}-{'-'.join(sorted(est.countries))[:40]}-{est.estimated_on}.json"
        write_atomic(target, json.dumps(est.to_json(), indent=1, sort_keys=True).encode())
        networks = sum(len(c.users) for c in est.countries.values())
        typer.echo(
            f"{path}: {networks} networks in {len(est.countries)} countries, estimated on "
            f"{est.estimated_on} by {est.source} -> {target}"
        )


@app.command("list")
def list_estimates(
    into: Annotated[
        Path, typer.Option("--into", help="The estimates folder.")
    ] = DEFAULT_POPULATION,
) -> None:
    """The estimates kept, per country: networks, users and the date."""
    from censorwatch.events.population import PopulationError, load_all

    if not into.is_dir():
        typer.echo(f"no estimates in {into} (censorwatch population load FILE)", err=True)
        raise typer.Exit(1)
    try:
        found = load_all([into])
    except PopulationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for est in found:
        for cc, country in sorted(est.countries.items()):
            total, basis = country.total
            typer.echo(
                f"{cc}  {len(country.users)} networks  {total:,} users ({basis})  "
                f"{est.source} {est.estimated_on}"
            )
