"""The ``censorwatch`` command: a thin shell that hands each verb to the module that owns it."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="censorwatch",
    help="An open observatory of internet censorship: probe, analyse, detect, keep evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register() -> None:
    """Attach each stage's commands. Each module keeps its own heavy imports inside commands."""
    from censorwatch.testbed.cli import app as testbed_app

    app.add_typer(testbed_app, name="testbed")

    from censorwatch.analysis.cli import register as register_analysis

    register_analysis(app)

    from censorwatch.control.cli import app as control_app
    from censorwatch.probe.cli import probe

    app.command("probe")(probe)
    app.add_typer(control_app, name="control")

    from censorwatch.collector.cli import serve
    from censorwatch.store.cli import app as store_app
    from censorwatch.store.cli import export

    app.command("serve")(serve)
    app.add_typer(store_app, name="store")
    app.command("export")(export)

    from censorwatch.events.cli import events

    app.command("events")(events)

    from censorwatch.ingest.cli import app as ingest_app

    app.add_typer(ingest_app, name="ingest")

    from censorwatch.evidence.cli import evidence_app, keys_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(evidence_app, name="evidence")

    app.command("demo")(demo)


def demo(
    out: Path | None = typer.Option(
        None, "--out", help="Keep everything the demo produces in this folder."
    ),
    rounds: int = typer.Option(8, "--rounds", min=2, help="Measurement rounds."),
    interval: float = typer.Option(12.0, "--interval", min=5, help="Seconds between rounds."),
) -> None:
    """The whole flow on the emulated Pakistan of February 2024 (needs root)."""
    from censorwatch.demo import main_environment_ok, run_demo

    problem = main_environment_ok()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)
    run_demo(out, rounds=rounds, interval=interval)


_register()


def main() -> None:
    app()
