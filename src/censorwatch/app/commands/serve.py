"""``censorwatch serve``: the collector and the query API in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from censorwatch.app.http_guard import ReadLimits
from censorwatch.app.settings import (
    DEFAULT_ARCHIVE,
    DEFAULT_DB,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
)

#: uvicorn answers 503 beyond this many open connections or running requests: a backstop; the
#: read deadlines and ``--max-waiting-connections`` keep slow clients well below it.
DEFAULT_LIMIT_CONCURRENCY = 1024


def serve(
    db: str = typer.Option(
        str(DEFAULT_DB), "--db", help="Store URL (duckdb:///path/file.duckdb) or DuckDB file."
    ),
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
    population: list[Path] | None = typer.Option(
        None,
        "--population",
        help="Per-AS user estimates (file or directory; default censorwatch-population/).",
    ),
    max_body_bytes: int = typer.Option(
        DEFAULT_MAX_BODY_BYTES, "--max-body-bytes", help="Largest accepted submission."
    ),
    read_only: bool = typer.Option(
        False, "--read-only", help="Serve queries only; refuse submissions."
    ),
    log_dir: Path | None = typer.Option(
        None, "--log-dir", help="Transparency log (default: ARCHIVE/transparency-log)."
    ),
    head_timeout: float = typer.Option(
        ReadLimits.head_timeout,
        "--head-timeout",
        min=0.1,
        help="Seconds a client has to send a request's line and headers.",
    ),
    body_timeout: float = typer.Option(
        ReadLimits.body_timeout,
        "--body-timeout",
        min=0.1,
        help="Seconds a client has to send a body, plus 1 s per --body-min-rate bytes sent.",
    ),
    body_min_rate: int = typer.Option(
        ReadLimits.body_min_rate,
        "--body-min-rate",
        min=1,
        help="Bytes per second a slow body must keep up to keep its connection.",
    ),
    max_waiting: int = typer.Option(
        ReadLimits.max_waiting,
        "--max-waiting-connections",
        min=1,
        help="Connections waiting on their client beyond this close the longest-waiting one.",
    ),
    limit_concurrency: int = typer.Option(
        DEFAULT_LIMIT_CONCURRENCY,
        "--limit-concurrency",
        min=1,
        help="Connections or requests in progress beyond this are answered 503.",
    ),
    webhook: list[str] | None = typer.Option(
        None,
        "--webhook",
        help="POST an alert here when the stored events change (repeatable); kept in an "
        "outbox until a 2xx answer.",
    ),
    alert_scope: str = typer.Option(
        "national",
        "--alert-scope",
        help="How deep alerts go: national (one per national block), network, host.",
    ),
    alert_cc: list[str] | None = typer.Option(
        None, "--alert-cc", help="Alert only for these countries (repeatable)."
    ),
    alert_target: list[str] | None = typer.Option(
        None, "--alert-target", help="Alert only for these platforms or hosts (repeatable)."
    ),
    alert_outbox: Path | None = typer.Option(
        None, "--alert-outbox", help="The alerts' outbox (default: ARCHIVE/alerts.sqlite)."
    ),
) -> None:
    """Accept measurements (OONI collector protocol) and answer queries (OONI-shaped API)."""
    import uvicorn

    from censorwatch.app.asgi import create_app
    from censorwatch.app.commands.events import alert_subscription
    from censorwatch.app.http_guard import guarded_h11
    from censorwatch.app.services import listen_socket, open_services
    from censorwatch.evidence.log import LogBusyError
    from censorwatch.store import UnsupportedStoreError

    if (certfile is None) != (keyfile is None):
        raise typer.BadParameter("--certfile and --keyfile go together")
    if webhook and read_only:
        raise typer.BadParameter("a read-only server changes no events", param_hint="--webhook")
    for url in webhook or []:
        if not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--webhook")
    subscription = alert_subscription(alert_scope, alert_cc, alert_target)
    try:
        services = open_services(
            db,
            archive,
            fingerprints=fingerprints,
            asn_db=asn_db,
            log_dir=log_dir,
            writer=not read_only,
            collector=not read_only,
            max_body_bytes=max_body_bytes,
        )
    except UnsupportedStoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except LogBusyError as exc:
        raise typer.BadParameter(f"{exc}: is another collector running?") from None
    from censorwatch.app.population import estimates_or_exit

    estimates = estimates_or_exit(population)
    alerting = None
    if not read_only:
        _keep_events(services)
        if webhook and services.pipeline.events is not None:
            from censorwatch.events.alerts import Alerting, AlertQueue

            queue = AlertQueue(alert_outbox or archive / "alerts.sqlite")
            alerting = Alerting(queue, webhook, subscription, population=estimates).start()
            services.pipeline.events.on_changes = alerting
    app = create_app(
        services.pipeline,
        services.collector,
        extra_routers=services.routers(),
        population=estimates,
    )
    if asn_db is not None:  # check-in and people's reports look connections up in it too
        from censorwatch.geo import ip_database

        app.state.ip_database = ip_database(asn_db)

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
        access_log=False,  # no line per request: no client address in any log
        # X-Forwarded-For is read by the app, from the proxies CENSORWATCH_TRUSTED_PROXIES
        # names only (collector.client_address); uvicorn would trust 127.0.0.1 by default.
        proxy_headers=False,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        timeout_keep_alive=30,
        http=guarded_h11(ReadLimits(head_timeout, body_timeout, body_min_rate, max_waiting)),
        limit_concurrency=limit_concurrency,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        services.close()
        if alerting is not None and (left := alerting.stop()):
            typer.echo(f"{left} alert(s) still queued; sent after the next start", err=True)


def _keep_events(services: Any) -> None:
    """Let the collector keep the store's events current as it commits (state from the store).
    A store that has verdicts but no events is served as it is, and says how to build them."""
    from censorwatch.events.stored import EventsNotBuilt, StoredEvents

    try:
        services.pipeline.events = StoredEvents.open(services.store)
    except EventsNotBuilt as exc:
        typer.echo(f"warning: {exc}; until then new measurements add no events", err=True)
    except ValueError as exc:  # a state written with other detector parameters, or damaged
        typer.echo(f"warning: stored events not kept current: {exc}", err=True)
