"""``censorwatch events``: verdicts (store or JSONL files) → block events, table or JSONL;
``censorwatch events rebuild --db URL``: detect over a store's history and store the events."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censorwatch.model import Event

if TYPE_CHECKING:  # the events package loads only when the command runs (`censorwatch` starts)
    from censorwatch.events.platforms import Platform


def read_verdicts(paths: list[Path], errors: list[str]) -> Iterator[dict[str, Any]]:
    """Verdict records from JSON/JSONL files or trees (``.gz`` too; ``-`` is standard input);
    each unreadable file or line is added to ``errors`` as ``source: reason``."""
    from censorwatch.observations.reader import iter_json_objects

    for item in iter_json_objects(paths, what="verdict"):
        if item.ok and item.record is not None:
            yield item.record
        else:
            errors.append(f"{item.source}: {item.error}")


#: ``censorwatch events rebuild --db URL``: the one word that is not a verdict file.
REBUILD = "rebuild"


def open_events_writer(store: Any) -> Any:
    """The store's events writer (``events.stored.StoredEvents``), or None when the store has
    verdicts but no events yet, or events kept with other detector parameters: then only
    ``events rebuild`` may build them (it reads all history, which a writer never does
    unasked)."""
    from censorwatch.events.stored import EventsNotBuilt, StoredEvents

    try:
        return StoredEvents.open(store)
    except (EventsNotBuilt, ValueError):
        return None


def rebuild(db: str, profile: list[Path] | None) -> None:
    """Detect over every stored verdict, with a progress bar, and store events and state.

    The store is opened for writing: stop a collector serving it first (DuckDB lets one
    process write a file; two writers of events would overwrite each other's state)."""
    from rich.progress import MofNCompleteColumn, Progress

    from censorwatch.events.platforms import load_platforms
    from censorwatch.events.stored import StoredEvents
    from censorwatch.store import StoreNotFoundError, UnsupportedStoreError, open_store

    platforms = load_platforms(profile) if profile else load_platforms()
    try:
        store = open_store(db, create=False)
    except (StoreNotFoundError, UnsupportedStoreError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except Exception as exc:  # DuckDB refuses a file another process is writing
        raise typer.BadParameter(f"{exc}: is a collector serving it?", param_hint="--db") from None
    try:
        total = store.count()
        columns = [*Progress.get_default_columns(), MofNCompleteColumn()]
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("detecting over verdicts", total=total)
            writer = StoredEvents.rebuild(
                store, platforms=platforms, progress=lambda n: progress.advance(task, n)
            )
        events = writer.events()
    finally:
        store.close()
    national = sum(e.scope == "national" for e in events)
    typer.echo(f"{len(events)} events ({national} national) stored from {total} verdicts", err=True)


def _bracket(after: str | None, before: str) -> str:
    return f"{after or '(no earlier data)'} → {before}"


def render_table(
    events: list[Event], platforms: list[Platform], *, all_hosts: bool = False
) -> None:
    from rich.table import Table

    from censorwatch.console import table_console
    from censorwatch.events.rollup import fold_hosts

    display = {p.name: p.display_name for p in platforms}
    rows = [(e, 0) for e in events] if all_hosts else fold_hosts(events, platforms)
    title = f"{len(events)} block event(s)"
    if len(rows) < len(events):
        title += f"; {len(events) - len(rows)} host event(s) shown in their platform's row"
    table = Table(title=title, show_lines=False)
    for col in (
        "scope",
        "cc",
        "networks",
        "target",
        "methods",
        "onset (after → before)",
        "end (after → before)",
        "status",
        "conf",
        "blocked/total",
    ):
        table.add_column(col, overflow="fold")
    for ev, n_hosts in rows:
        m = ev.measurements
        nets = ", ".join(ev.asns)
        if ev.scope == "national":
            nets = f"{m.get('networks_blocked', 0)} of {m.get('networks_measured', 0)}: {nets}"
        onset = _bracket(ev.onset.after, ev.onset.before)
        if m.get("onset_unknown"):
            onset += f" (gap: {m['onset_unknown']} unknown)"
        end = "—"
        if ev.end:
            end = _bracket(ev.end.after, ev.end.before)
            if m.get("end_unknown"):
                end += f" (gap: {m['end_unknown']} unknown)"
        table.add_row(
            ev.scope,
            ev.cc,
            nets,
            display.get(ev.target, ev.target) + (f" (+{n_hosts} hosts)" if n_hosts else ""),
            " / ".join(ev.methods),
            onset,
            end,
            ev.status,
            f"{ev.confidence:.2f}",
            f"{m.get('blocked', 0)}/{m.get('total', 0)}",
        )
    table_console().print(table)


def alert_subscription(scope: str, ccs: list[str] | None, targets: list[str] | None) -> Any:
    from censorwatch.events.alerts import Subscription
    from censorwatch.events.rollup import ALERT_SCOPES

    if scope not in ALERT_SCOPES:
        raise typer.BadParameter(
            f"{scope!r} is not one of {', '.join(ALERT_SCOPES)}", param_hint="--alert-scope"
        )
    return Subscription(
        scope,  # type: ignore[arg-type]
        frozenset(c.upper() for c in ccs or []),
        frozenset(t.lower() for t in targets or []),
    )


def events(
    verdicts: Annotated[
        list[Path] | None,
        typer.Argument(help="Verdict JSONL files (censorwatch analyze --json); '-' for stdin."),
    ] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Read verdicts from this store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One event record per line.")] = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Keep detector state here and continue from it next run."),
    ] = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option("--webhook", help="POST alerts here (repeatable); needs --state."),
    ] = None,
    webhook_wait: Annotated[
        float,
        typer.Option(help="Seconds to spend delivering alerts before exiting (rest stay queued)."),
    ] = 10.0,
    alert_scope: Annotated[
        str,
        typer.Option(
            "--alert-scope",
            help="How deep alerts go: national (one per national block), network, host.",
        ),
    ] = "national",
    alert_cc: Annotated[
        list[str] | None,
        typer.Option("--alert-cc", help="Alert only for these countries (repeatable)."),
    ] = None,
    alert_target: Annotated[
        list[str] | None,
        typer.Option(
            "--alert-target", help="Alert only for these platforms or hosts (repeatable)."
        ),
    ] = None,
    profile: Annotated[
        list[Path] | None,
        typer.Option("--profile", help="Platform profile TOML (default: the bundled ones)."),
    ] = None,
    population: Annotated[
        list[Path] | None,
        typer.Option(
            "--population",
            help="Per-AS user estimates (file or directory; default censorwatch-population/).",
        ),
    ] = None,
    cc: Annotated[str | None, typer.Option(help="Only events in this country.")] = None,
    asn: Annotated[str | None, typer.Option(help="Only events involving this network.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this domain or platform.")] = None,
    scope: Annotated[str | None, typer.Option(help="network or national.")] = None,
    status: Annotated[str | None, typer.Option(help="ongoing or ended.")] = None,
    all_hosts: Annotated[
        bool,
        typer.Option(
            "--all-hosts", help="Table: one row per host event, not folded into its platform's."
        ),
    ] = False,
) -> None:
    """Block events per network and national, with bracketed onset and end.

    `censorwatch events rebuild --db URL` instead re-detects over every verdict of the store
    and stores the events (what the API and the explorer read).
    """
    if verdicts and str(verdicts[0]) == REBUILD:
        if len(verdicts) > 1 or db is None:
            raise typer.BadParameter("usage: censorwatch events rebuild --db URL")
        rebuild(str(db), profile)
        return
    from censorwatch.app.population import estimates_or_exit
    from censorwatch.events.platforms import load_platforms
    from censorwatch.events.population import with_impact
    from censorwatch.events.tracker import EventTracker

    if bool(verdicts) == bool(db):
        raise typer.BadParameter("give either --db or verdict JSONL files")
    if webhook and not state:
        raise typer.BadParameter("--webhook needs --state (alerts are queued next to it)")
    subscription = alert_subscription(alert_scope, alert_cc, alert_target)
    platforms = load_platforms(profile) if profile else load_platforms()
    estimates = estimates_or_exit(population)
    tracker = EventTracker(platforms=platforms, state_path=state)
    errors: list[str] = []
    if db:
        from censorwatch.store import StoreNotFoundError, UnsupportedStoreError, open_store

        try:
            store = open_store(db, read_only=True)
        except (StoreNotFoundError, UnsupportedStoreError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--db") from None
        try:
            changes = tracker.update(store.iter_verdicts())
        finally:
            getattr(store, "close", lambda: None)()
    else:
        changes = tracker.update(read_verdicts(verdicts or [], errors))
    tracker.save()
    if errors:
        typer.echo(f"{len(errors)} input(s) not JSON objects or not readable:", err=True)
    for err in errors[:20]:
        typer.echo(f"skipped {err}", err=True)
    if len(errors) > 20:
        typer.echo(f"skipped {len(errors) - 20} more malformed lines", err=True)
    if tracker.late:
        typer.echo(f"skipped {tracker.late} verdicts older than the saved state", err=True)

    if webhook and state:
        from censorwatch.events.alerts import AlertQueue, WebhookSender

        queue = AlertQueue(state.with_name(state.name + ".alerts.sqlite"))
        current = with_impact(tracker.events(), estimates)
        by_id = {e.event_id: e for e in current}
        changes = [type(c)(c.kind, by_id.get(c.event.event_id, c.event)) for c in changes]
        queue.enqueue(subscription.messages(changes, current, platforms), webhook)
        sender = WebhookSender(queue).start()
        left = sender.drain(webhook_wait)
        sender.stop()
        if left:
            typer.echo(f"{left} alert(s) still queued; they are retried on the next run", err=True)

    shown = [
        e
        for e in with_impact(tracker.events(), estimates)
        if (cc is None or e.cc == cc.upper())
        and (asn is None or asn.upper() in e.asns)
        and (target is None or e.target == target.lower())
        and (scope is None or e.scope == scope)
        and (status is None or e.status == status)
    ]
    if as_json:
        out = sys.stdout
        for ev in shown:
            out.write(json.dumps(ev.to_record(), separators=(",", ":")) + "\n")
        return
    render_table(shown, platforms, all_hosts=all_hosts)
