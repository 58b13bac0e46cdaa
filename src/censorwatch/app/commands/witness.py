"""``censorwatch witness``: follow logs, check they only grow, cosign (C2SP tlog-witness)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from censorwatch.evidence.witness import Witness

app = typer.Typer(
    help="A transparency-log witness: follows logs, checks consistency, cosigns checkpoints.",
    no_args_is_help=True,
)

STATE_ENV = "CENSORWATCH_WITNESS_STATE"


def _state_dir(state: Path | None) -> Path:
    if state is not None:
        return state
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "censorwatch" / "witness"


_STATE_OPTION = typer.Option(
    "--state",
    help=f"Key and per-log state (default ${STATE_ENV} or $XDG_STATE_HOME/censorwatch/witness).",
)
_NAME_OPTION = typer.Option(
    "--name", help="The witness's name, e.g. witness.example.org/w1 (fixed at first use)."
)


def _open(state: Path | None, name: str | None) -> Witness:
    from censorwatch.evidence.witness import Witness, WitnessError

    try:
        return Witness(_state_dir(state), name)
    except (WitnessError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("key")
def key(
    state: Annotated[Path | None, _STATE_OPTION] = None,
    name: Annotated[str | None, _NAME_OPTION] = None,
) -> None:
    """Print the witness's cosigner key (give it to verifiers: evidence verify --witness KEY)."""
    typer.echo(str(_open(state, name).verifier))


@app.command("serve")
def serve(
    follow: Annotated[
        list[str] | None,
        typer.Option("--follow", help="A collector's base URL whose log to follow (repeatable)."),
    ] = None,
    state: Annotated[Path | None, _STATE_OPTION] = None,
    name: Annotated[str | None, _NAME_OPTION] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8090,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between polls of each log.")
    ] = 10.0,
) -> None:
    """Follow logs and cosign what extends what was seen; serve POST /add-checkpoint.

    A log is pinned on first contact (its key in the state directory); a checkpoint that
    rolls back or forks is refused (409/422), recorded in refused.jsonl, and never cosigned.
    """
    import uvicorn

    from censorwatch.app.services import listen_socket
    from censorwatch.evidence.witness import Follower, witness_app

    witness = _open(state, name)
    sock = listen_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"witness key: {witness.verifier}", err=True)
    typer.echo(f"censorwatch witness on http://{shown}:{bound}/ (POST /add-checkpoint)", err=True)
    follower = Follower(witness, list(follow or []), interval=max(0.2, interval))
    thread = threading.Thread(
        target=follower.run, args=(lambda line: typer.echo(line, err=True),), daemon=True
    )
    if follow:
        thread.start()
    config = uvicorn.Config(witness_app(witness), log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        follower.stop()
