"""``censorwatch testbed``: build, change, inspect, use and remove the emulated censored country."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    help="The emulated censored network (Linux network namespaces).", no_args_is_help=True
)


@cache
def _err() -> Console:
    """The console for messages, built on first use: importing this module stays cheap (rich
    loads only when a message is printed)."""
    from rich.console import Console

    return Console(stderr=True)


IdOption = Annotated[
    str | None,
    typer.Option(
        "--id", help="Testbed id (several can run side by side); env CENSORWATCH_TESTBED_ID."
    ),
]


def _id(value: str | None) -> str:
    from censorwatch.testbed.state import testbed_id

    try:
        return testbed_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _fail(exc: Exception) -> typer.Exit:
    _err().print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command()
def up(
    scenario: Annotated[str, typer.Argument(help="A scenario file, or the name of a shipped one.")],
    tb_id: IdOption = None,
    replace: Annotated[
        bool, typer.Option(help="Take down a testbed with the same id first.")
    ] = False,
) -> None:
    """Build the networks of SCENARIO and start its censors' schedule."""
    from censorwatch.testbed import manager
    from censorwatch.testbed.scenario import ScenarioError

    try:
        state = manager.up(scenario, _id(tb_id), replace=replace)
    except (manager.TestbedError, ScenarioError, OSError) as exc:
        raise _fail(exc) from exc
    info = manager.status(state.id)
    _err().print(
        f"testbed [bold]{state.id}[/bold] is up with scenario {info['scenario']} "
        f"({len(info['networks'])} networks); state in {state.folder}"
    )


@app.command()
def down(tb_id: IdOption = None) -> None:
    """Remove every namespace, process, rule and file the testbed created (also after a crash)."""
    from censorwatch.testbed import manager

    removed = manager.down(_id(tb_id))
    _err().print(f"removed {len(removed)} item(s)" if removed else "nothing to remove")


@app.command("set")
def set_(
    network: Annotated[str, typer.Argument(help="The network, e.g. AS17557.")],
    method: Annotated[str, typer.Argument(help="A censor method, e.g. tls-rst.")],
    targets: Annotated[list[str], typer.Argument(help="Host names (space or comma separated).")],
    on: Annotated[bool, typer.Option("--on/--off", help="Switch the method on or off.")] = True,
    rate: Annotated[str | None, typer.Option(help="For throttle, e.g. 1mbit.")] = None,
    loss: Annotated[str | None, typer.Option(help="For packet-loss, e.g. 5%.")] = None,
    hop: Annotated[
        str, typer.Option(help="The router that censors: access, core, gateway, transit or 1-4.")
    ] = "access",
    tb_id: IdOption = None,
) -> None:
    """Change a censor live: switch METHOD on or off for TARGETS on NETWORK."""
    from censorwatch.testbed import manager

    hosts = [h for t in targets for h in t.split(",") if h]
    try:
        active = manager.set_method(_id(tb_id), network, method, hosts, on, rate, loss, hop)
    except (manager.TestbedError, ValueError) as exc:
        raise _fail(exc) from exc
    now = active.get(network.upper(), {})
    summary = ", ".join(f"{m} ({len(s['targets'])} hosts)" for m, s in now.items()) or "nothing"
    _err().print(f"{network.upper()} now applies: {summary}")


@app.command()
def status(
    tb_id: IdOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the networks, the censorship in force, what is scheduled next, and the processes."""
    from censorwatch.testbed import manager

    try:
        info = manager.status(_id(tb_id))
    except manager.TestbedError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.table import Table

    from censorwatch.console import table_console

    console = table_console()
    console.print(
        f"testbed [bold]{info['id']}[/bold] · scenario {info['scenario']} · "
        f"up {info['elapsed_seconds']}s · {info['state_dir']}"
    )
    table = Table("network", "cc", "name", "probe ip", "censorship in force")
    for net in info["networks"]:
        active = "; ".join(
            f"{m}: {', '.join(s['targets'])}" + (f" @ {s['rate']}" if s.get("rate") else "")
            for m, s in net["active"].items()
        )
        table.add_row(net["asn"], net["cc"], net["name"], net["probe_ip"], active or "—")
    console.print(table)
    if info["upcoming"]:
        up_table = Table("in (s)", "network", "method", "switch", "targets")
        for u in info["upcoming"]:
            up_table.add_row(
                str(u["in"]),
                u["network"],
                u["method"],
                "on" if u["on"] else "off",
                ", ".join(u["targets"]),
            )
        console.print(up_table)
    dead = [name for name, alive in info["processes"].items() if not alive]
    console.print(
        "processes: "
        + ("all running" if not dead else f"[red]not running: {', '.join(dead)}[/red]")
    )


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(help="The network whose probe namespace to use.")],
    tb_id: IdOption = None,
    defaults: Annotated[
        bool,
        typer.Option(
            "--defaults",
            help="Set only CENSORWATCH_CA (and the probe host's own XDG folders): the probe "
            "uses its built-in defaults, STUN and check-in, served by the testbed.",
        ),
    ] = False,
) -> None:
    """Run a command inside NETWORK's probe namespace: testbed exec AS17557 -- CMD ..."""
    from censorwatch.testbed import manager

    command = [a for a in ctx.args]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise _fail(ValueError("no command given: testbed exec NETWORK -- CMD ..."))
    try:
        argv, env = manager.exec_argv(_id(tb_id), network, command, defaults=defaults)
    except manager.TestbedError as exc:
        raise _fail(exc) from exc
    os.execvpe(argv[0], argv, env)


@app.command()
def scenarios() -> None:
    """List the scenarios shipped with censorwatch."""
    from censorwatch.testbed.scenario import shipped

    for name in shipped():
        typer.echo(name)
