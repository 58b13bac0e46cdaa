"""``censorwatch demo``: the whole flow on the emulated Pakistan of February 2024."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path | None = typer.Option(
        None, "--out", help="Keep everything the demo produces in this folder."
    ),
    rounds: int = typer.Option(8, "--rounds", min=2, help="Measurement rounds."),
    interval: float = typer.Option(12.0, "--interval", min=5, help="Seconds between rounds."),
) -> None:
    """The whole flow on the emulated Pakistan of February 2024 (needs root)."""
    from censorwatch.app.demo import main_environment_ok, run_demo

    problem = main_environment_ok()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)
    run_demo(out, rounds=rounds, interval=interval)
