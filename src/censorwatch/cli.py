"""The ``censorwatch`` command: a thin root over the commands of ``app.commands``.

A command's module is imported, and its options built, only when that command runs (or when
help lists every command): ``censorwatch analyze`` is run over and over on files, and its
start-up should not pay for the server's, the testbed's or the probe's imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group
from typer.models import CommandInfo

#: Command name -> (its module in ``censorwatch.app.commands``, the attribute there): a
#: function is one command, a ``typer.Typer`` a group of them. Help lists them in this order.
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("analyze", "analyze"),
    "probe": ("probe", "probe"),
    "serve": ("serve", "serve"),
    "export": ("store", "export"),
    "events": ("events", "events"),
    "demo": ("demo", "demo"),
    "testbed": ("testbed", "app"),
    "fingerprints": ("analyze", "fingerprints_app"),
    "geo": ("geo", "app"),
    "targets": ("targets", "app"),
    "population": ("population", "app"),
    "control": ("control", "app"),
    "store": ("store", "app"),
    "ingest": ("ingest", "app"),
    "reprocess": ("reprocess", "reprocess"),
    "keys": ("evidence", "keys_app"),
    "evidence": ("evidence", "evidence_app"),
    "witness": ("witness", "app"),
}


class LazyCommands(TyperGroup):
    """The root group: each command is built from its module the first time it is asked for."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _CommandTable()

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)  # the names only: nothing is imported to list them


class _CommandTable(MutableMapping[str, Any]):
    """``COMMANDS`` by name, each command built on first access (and kept), so that lookups,
    suggestions for a mistyped name and help all read one table."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        command = self._built.get(name)
        if command is None:
            if name not in COMMANDS:
                raise KeyError(name)
            command = self._built[name] = _build(name)
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("the root's commands are fixed by COMMANDS")

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(1 for name in self._built if name not in COMMANDS)


def _build(name: str):  # -> click Command
    module_name, attribute = COMMANDS[name]
    module = importlib.import_module(f"censorwatch.app.commands.{module_name}")
    target = getattr(module, attribute)
    if isinstance(target, typer.Typer):
        group = get_group(target)  # as ``add_typer`` would build it
        group.name = name
        return group
    return get_command_from_info(
        CommandInfo(name=name, callback=target),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


app = typer.Typer(
    name="censorwatch",
    cls=LazyCommands,
    help="An open observatory of internet censorship: probe, analyse, detect, keep evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    # Nothing to do before a command; a callback makes typer build the root as a group.
    pass


def main() -> None:
    app()
