"""Which population estimates the commands read: the paths given, else the default folder."""

from __future__ import annotations

from pathlib import Path

import typer

from censorwatch.app.settings import DEFAULT_POPULATION
from censorwatch.events.population import Estimates, PopulationError, load_all


def estimates_or_exit(paths: list[Path] | None) -> list[Estimates]:
    """Estimates from ``paths`` (files or directories), or from ``censorwatch-population/``
    when it exists; none otherwise. A file that cannot be read stops the command, named."""
    chosen = list(paths or [])
    if not chosen and DEFAULT_POPULATION.is_dir():
        chosen = [DEFAULT_POPULATION]
    try:
        return load_all(chosen)
    except (PopulationError, OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--population") from None
