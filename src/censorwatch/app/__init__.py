"""The one place that wires censorwatch together.

The stage packages (probe, collector, analysis, store, events, evidence, api, web, …) each do
one job and import only the stages below them. Everything that joins several of them lives
here: the defaults a user relies on (``settings``), the objects a command or ``serve`` builds
(``services``), the HTTP application (``asgi``), the demo, and every command of the CLI
(``commands/``). ``censorwatch.cli`` is the thin root that registers those commands.
"""
