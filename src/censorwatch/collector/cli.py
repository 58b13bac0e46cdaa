"""``censorwatch serve``: the collector and the query API in one process."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_DB = Path("censorwatch.duckdb")
DEFAULT_ARCHIVE = Path("censorwatch-archive")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def analyzer_options(fingerprints: Path | None, asn_db: Path | None):
    """The analysis function configured from the command line."""
    from censorwatch.collector.derive import load_analyzer

    fps = None
    if fingerprints is not None:
        from censorwatch.analysis.fingerprints import Fingerprints

        fps = Fingerprints.load(fingerprints)
    plan = None
    if asn_db is not None:
        from censorwatch.netinfo import address_plan

        plan = address_plan(asn_db)
    return load_analyzer(fps, plan)


def listen_socket(host: str, port: int):
    """A listening TCP socket; created with IPPROTO_TCP so asyncio sets TCP_NODELAY on the
    connections it accepts (without it, small responses wait for delayed ACKs: ~40 ms each)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    db: Path = typer.Option(DEFAULT_DB, "--db", help="DuckDB database file (derived data)."),
    archive: Path = typer.Option(
        DEFAULT_ARCHIVE, "--archive", help="Archive directory: the durable copy of everything."
    ),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="TCP port (0 picks a free one)."),
    certfile: Path | None = typer.Option(None, "--certfile", help="TLS certificate (PEM)."),
    keyfile: Path | None = typer.Option(None, "--keyfile", help="TLS private key (PEM)."),
    fingerprints: Path | None = typer.Option(
        None, "--fingerprints", help="Directory of blockpage/DNS fingerprint files."
    ),
    asn_db: Path | None = typer.Option(None, "--asn-db", help="IP-to-ASN database."),
    max_body_bytes: int = typer.Option(
        16 * 1024 * 1024, "--max-body-bytes", help="Largest accepted submission."
    ),
    read_only: bool = typer.Option(
        False, "--read-only", help="Serve queries only; refuse submissions."
    ),
    log_dir: Path | None = typer.Option(
        None, "--log-dir", help="Transparency log (default: ARCHIVE/transparency-log)."
    ),
) -> None:
    """Accept measurements (OONI collector protocol) and answer queries (OONI-shaped API)."""
    import uvicorn

    from censorwatch.api.app import create_app
    from censorwatch.collector.archive import Archive
    from censorwatch.collector.pipeline import Pipeline
    from censorwatch.collector.reports import load_key
    from censorwatch.collector.service import Collector
    from censorwatch.store import open_store

    if (certfile is None) != (keyfile is None):
        raise typer.BadParameter("--certfile and --keyfile go together")
    store = open_store(db)
    from censorwatch.evidence.api import log_router
    from censorwatch.evidence.log import TransparencyLog
    from censorwatch.evidence.signing import verify_signature

    pipeline = Pipeline(
        Archive(archive),
        store,
        analyzer=analyzer_options(fingerprints, asn_db),
        verify_signature=verify_signature,
    )
    collector = log = None
    if not read_only:
        log = TransparencyLog(log_dir or archive / "transparency-log")  # one writer per log
        # One fsync of the log per commit, however many measurements the commit holds.
        pipeline.on_accepted_batch.append(
            lambda batch: log.append_many((uid, m) for uid, _, m in batch)
        )
        collector = Collector(pipeline, load_key(archive), max_body=max_body_bytes)
    app = create_app(pipeline, collector, extra_routers=[log_router(log)] if log else [])

    sock = listen_socket(host, port)
    bound = sock.getsockname()[1]
    scheme = "https" if certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"censorwatch collector and API on {scheme}://{shown}:{bound}/ "
        f"(OpenAPI at /openapi.json, submissions at /report)",
        err=True,
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        timeout_keep_alive=30,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if log is not None:
            log.close()
        store.close()
