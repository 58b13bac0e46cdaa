"""``censorwatch serve``: the collector and the query API in one process."""

from __future__ import annotations

from pathlib import Path

import typer

from censorwatch.app.settings import (
    DEFAULT_ARCHIVE,
    DEFAULT_DB,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    log_dir_for,
)


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
        DEFAULT_MAX_BODY_BYTES, "--max-body-bytes", help="Largest accepted submission."
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

    from censorwatch.app.asgi import create_app
    from censorwatch.app.services import build_analyzer, listen_socket
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
    from censorwatch.signing.signatures import verify_signature

    pipeline = Pipeline(
        Archive(archive),
        store,
        analyzer=build_analyzer(fingerprints, asn_db),
        verify_signature=verify_signature,
    )
    collector = log = None
    if not read_only:
        log = TransparencyLog(log_dir_for(archive, log_dir))  # one writer per log
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
