"""The ``censorwatch`` command: a thin root that registers each command of ``app.commands``."""

from __future__ import annotations

import typer

from censorwatch.app.commands import (
    analyze,
    control,
    demo,
    events,
    evidence,
    ingest,
    probe,
    serve,
    store,
    testbed,
)

app = typer.Typer(
    name="censorwatch",
    help="An open observatory of internet censorship: probe, analyse, detect, keep evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

app.add_typer(testbed.app, name="testbed")
app.command("analyze")(analyze.analyze)
app.add_typer(analyze.fingerprints_app, name="fingerprints")
app.command("probe")(probe.probe)
app.add_typer(control.app, name="control")
app.command("serve")(serve.serve)
app.add_typer(store.app, name="store")
app.command("export")(store.export)
app.command("events")(events.events)
app.add_typer(ingest.app, name="ingest")
app.add_typer(evidence.keys_app, name="keys")
app.add_typer(evidence.evidence_app, name="evidence")
app.command("demo")(demo.demo)


def main() -> None:
    app()
