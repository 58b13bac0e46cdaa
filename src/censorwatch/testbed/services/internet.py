"""The emulated public internet: authoritative DNS, public resolvers and every web site.

Runs inside the testbed's internet namespace as three processes, one per role, as on the real
internet where name servers, web servers and QUIC front ends are different machines: a busy
HTTPS or QUIC server (TLS and aioquic are CPU-bound) must never delay a DNS answer past a
probe's timeout and so fake a DNS failure.

    python -m censorwatch.testbed.services.internet STATE_DIR dns|web|quic
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import dns.message

from censorwatch.console import service_logging
from censorwatch.testbed import plan as planmod
from censorwatch.testbed.services import dns as dnsservice
from censorwatch.testbed.services import quic, web
from censorwatch.testbed.state import TestbedState

log = logging.getLogger("internet")

CHUNK = 64 * 1024


def throughput_object() -> bytes:
    """The large static object: incompressible and the same every time."""
    return hashlib.shake_256(b"censorwatch throughput object").digest(planmod.THROUGHPUT_SIZE)


def site_page(host: str, path: str) -> bytes:
    """A recognisable page per host and path, long enough for body comparisons to mean something."""
    paragraphs = "\n".join(
        f"<p>{host} paragraph {i}: the latest posts, trends and conversations.</p>"
        for i in range(40)
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{host} – home</title></head>\n<body><h1>Welcome to {host}</h1>\n"
        f"<p>You asked for {path} on {host}.</p>\n{paragraphs}\n</body></html>\n"
    ).encode()


def h3_page(plan: planmod.TestbedPlan, host: str, path: str) -> tuple[int, str, bytes]:
    """The same pages over HTTP/3 (no large objects: QUIC is measured for reachability)."""
    site = plan.hosts.get(host)
    if site is None:
        return 404, "text/plain", b"unknown site\n"
    if path in site.target.paths:
        return 200, "text/html; charset=utf-8", site_page(host, path)
    return 404, "text/plain", b"not found\n"


def make_handler(plan: planmod.TestbedPlan, blob: bytes) -> web.Handler:
    zone = plan.zone()

    async def stream(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]

    def throughput() -> web.Response:
        return web.Response(
            200,
            stream(blob),
            [("Content-Type", "application/octet-stream")],
            content_length=len(blob),
        )

    async def doh(req: web.Request) -> web.Response:
        try:
            if req.method == "POST":
                wire = req.body
            else:
                params = dict(p.split("=", 1) for p in req.query.split("&") if "=" in p)
                value = params.get("dns", "")
                wire = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            query = dns.message.from_wire(wire)
        except Exception:
            return web.html_page(400, "Bad Request", "Not a DNS query.")
        answer = dnsservice.answer_from_zone(query, zone, authoritative=False).to_wire()
        return web.Response(200, answer, [("Content-Type", "application/dns-message")])

    async def handle(req: web.Request) -> web.Response:
        local_ip = req.local[0]
        if local_ip == planmod.DOH_RESOLVER or local_ip in planmod.PUBLIC_RESOLVERS:
            if req.path == "/dns-query":
                return await doh(req)
            return web.html_page(404, "Not Found", "DNS-over-HTTPS lives at /dns-query.")
        host = req.host or (req.server_name or "")
        if local_ip == planmod.REFERENCE or host == planmod.REFERENCE_HOST:
            if req.path in (planmod.THROUGHPUT_PATH, planmod.DEFAULT_REFERENCE_PATH):
                return throughput()
            return web.html_page(200, "Reference network", "A host that is no target.")
        site = plan.hosts.get(host)
        if site is None:
            return web.html_page(404, "Unknown site", f"No site called {host!r} here.")
        if req.path == planmod.THROUGHPUT_PATH:
            return throughput()
        if req.path in site.target.paths:
            if req.path == "/robots.txt":
                return web.Response(
                    200, b"User-agent: *\nDisallow:\n", [("Content-Type", "text/plain")]
                )
            return web.Response(
                200,
                site_page(host, req.path),
                [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Cache-Control", "no-store"),
                    ("Alt-Svc", 'h3=":443"; ma=86400'),
                ],
            )
        return web.html_page(404, "Not Found", f"{req.path} is not on {host}.")

    return handle


def _certificates(state: TestbedState, plan: planmod.TestbedPlan) -> dict[str, tuple[Path, Path]]:
    certs = state.pki_dir / "sites"
    by_name = {}
    for host in [*plan.hosts, planmod.REFERENCE_HOST, planmod.DEFAULT_REFERENCE_NAME]:
        by_name[host] = (certs / f"{host}.pem", certs / f"{host}.key")
    return by_name


async def serve_dns(state: TestbedState, plan: planmod.TestbedPlan) -> str:
    zone = plan.zone()
    await dnsservice.serve_udp(
        planmod.AUTHORITATIVE_DNS,
        53,
        dnsservice.zone_handler(zone, authoritative=True, whoami=planmod.WHOAMI_NAME),
    )
    for resolver in (planmod.PUBLIC_RESOLVER, *planmod.PUBLIC_RESOLVERS):
        await dnsservice.serve_udp(resolver, 53, dnsservice.zone_handler(zone, authoritative=False))
    # DNS-over-TLS on the public resolvers, with the certificates their DoH serves.
    for address, (name, _asn, _org) in planmod.PUBLIC_RESOLVERS.items():
        files = (state.pki_dir / "sites" / f"{name}.pem", state.pki_dir / "sites" / f"{name}.key")
        await dnsservice.serve_tls(
            address,
            853,
            dnsservice.zone_handler(zone, authoritative=False),
            dnsservice.dot_server_context(*files),
        )
    return f"{len(zone)} names, DoT on {len(planmod.PUBLIC_RESOLVERS)} resolvers"


async def serve_web(state: TestbedState, plan: planmod.TestbedPlan) -> str:
    handler = make_handler(plan, throughput_object())
    by_name = _certificates(state, plan)
    default = (state.pki_dir / "sites" / "default.pem", state.pki_dir / "sites" / "default.key")
    tls = web.sni_context(by_name, default)
    doh_tls = web.server_context(
        state.pki_dir / "sites" / "doh.pem", state.pki_dir / "sites" / "doh.key"
    )
    web_addresses = plan.site_addresses()
    for address in web_addresses:
        await web.serve_http(address, 80, handler)
        await web.serve_http(address, 443, handler, tls)
    await web.serve_http(planmod.DOH_RESOLVER, 443, handler, doh_tls)
    for address, (name, _asn, _org) in planmod.PUBLIC_RESOLVERS.items():
        files = (state.pki_dir / "sites" / f"{name}.pem", state.pki_dir / "sites" / f"{name}.key")
        await web.serve_http(address, 443, handler, web.server_context(*files))
    return f"{len(web_addresses)} web addresses"


async def serve_quic(state: TestbedState, plan: planmod.TestbedPlan) -> str:
    quic_cert = (state.pki_dir / "sites" / "quic.pem", state.pki_dir / "sites" / "quic.key")
    web_addresses = plan.site_addresses()
    for address in web_addresses:
        await quic.serve_h3(address, *quic_cert, page=lambda host, path: h3_page(plan, host, path))
    return f"HTTP/3 on {len(web_addresses)} addresses"


async def serve(state: TestbedState, role: str) -> None:
    """Bind one role's sockets, say so in the state folder (the manager waits for it), serve."""
    plan = state.plan()
    serving = {"dns": serve_dns, "web": serve_web, "quic": serve_quic}[role]
    what = await serving(state, plan)
    state.mark_ready(f"internet-{role}")
    log.info("internet %s ready: %s", role, what)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    service_logging()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(argv) != 2 or argv[1] not in planmod.INTERNET_ROLES:
        sys.exit(f"usage: internet STATE_DIR {'|'.join(planmod.INTERNET_ROLES)}")
    asyncio.run(serve(TestbedState(Path(argv[0])), argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
