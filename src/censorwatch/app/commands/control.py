"""``censorwatch control serve``: run the control service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The control service (web-connectivity test helper).", no_args_is_help=True)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8080,
    certfile: Annotated[
        Path | None,
        typer.Option("--certfile", help="TLS certificate chain (PEM).", exists=True),
    ] = None,
    keyfile: Annotated[
        Path | None,
        typer.Option("--keyfile", help="TLS private key (PEM).", exists=True),
    ] = None,
    resolver: Annotated[
        str | None,
        typer.Option(
            "--resolver",
            help="Upstream DNS HOST[:PORT] for the control's lookups "
            "(default: first nameserver of /etc/resolv.conf).",
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="Trust anchor (PEM) for TLS checks; in testbed mode the only one.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    asn_db: Annotated[
        Path | None,
        typer.Option(
            "--asn-db",
            help="IP-to-ASN database or address plan. (env CENSORWATCH_ASN_DB)",
            dir_okay=False,
        ),
    ] = None,
    testbed: Annotated[
        bool,
        typer.Option("--testbed", help="Allow private and reserved target addresses."),
    ] = False,
    max_request: Annotated[int, typer.Option(help="Largest request body, bytes.")] = 64 * 1024,
    max_inflight: Annotated[int, typer.Option(help="Concurrent measurements.")] = 32,
    queue_wait: Annotated[
        float,
        typer.Option(help="Seconds a request may wait for a free slot before a 503.", min=0),
    ] = 10.0,
) -> None:
    """Answer OONI web-connectivity control requests (POST /) over HTTP or HTTPS."""
    import asyncio
    import logging

    from rich.console import Console

    from censorwatch.console import service_logging
    from censorwatch.control.server import ControlApp, bind, make_server
    from censorwatch.control.service import ControlSettings
    from censorwatch.geo import ip_database
    from censorwatch.probe.config import system_resolver
    from censorwatch.probe.dns import parse_hostport
    from censorwatch.probe.tls import TrustAnchors

    if (certfile is None) != (keyfile is None):
        raise typer.BadParameter("--certfile and --keyfile go together")
    service_logging()
    logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic logs every handshake
    upstream = parse_hostport(resolver) if resolver else system_resolver()
    settings = ControlSettings(
        resolver=upstream,
        anchors=TrustAnchors(ca, system=not testbed),
        plan=ip_database(asn_db),
        testbed=testbed,
    )
    control = ControlApp(
        settings, max_request=max_request, max_inflight=max_inflight, queue_wait=queue_wait
    )
    sock = bind(host, port)
    bound = sock.getsockname()
    scheme = "https" if certfile else "http"
    err = Console(stderr=True)
    err.print(
        f"control listening on {scheme}://{bound[0]}:{bound[1]}/ (resolver "
        f"{upstream[0] + ':' + str(upstream[1]) if upstream else 'none'}; "
        + (
            "testbed mode: private and reserved addresses allowed)"
            if testbed
            else "refusing loopback, private, link-local and reserved targets)"
        ),
        highlight=False,
        soft_wrap=True,
    )
    server = make_server(control, certfile=certfile, keyfile=keyfile)
    asyncio.run(server.serve(sockets=[sock]))


@app.command("stun")
def stun(
    listen: Annotated[
        list[str],
        typer.Option("--listen", help="HOST:PORT to answer on, UDP (repeatable)."),
    ],
) -> None:
    """Answer STUN Binding requests (RFC 8489): each probe learns its public address."""
    import asyncio

    from censorwatch.console import service_logging
    from censorwatch.control.stun_server import serve_forever
    from censorwatch.probe.dns import parse_hostport

    service_logging()
    try:
        where = [parse_hostport(spec, 3478) for spec in listen]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from exc
    asyncio.run(serve_forever(where))
