"""A small internet on 127.0.0.0/8 for the probe and control tests: real servers, no mocks.

Every server runs in one background event loop: DNS over UDP (with NXDOMAIN, silence and an
on-path-style injected answer racing the real one), HTTP and HTTPS sites (certificates from
the testbed PKI), DNS-over-HTTPS, hostile servers (TLS garbage, silence, endless bodies, huge
headers, a full accept queue) and a censor-like proxy that resets a TLS connection whose
ClientHello carries a blocked name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from aioquic.asyncio import serve as quic_serve
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from censorwatch.testbed.pki import CertificateAuthority

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]], Awaitable[None]]


class LoopThread:
    """An event loop in a daemon thread; coroutines are submitted from the test thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


# -- DNS -----------------------------------------------------------------------------------
@dataclass
class Zone:
    """What a resolver answers: addresses per name, and names that misbehave."""

    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    nxdomain: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    inject: dict[str, str] = field(default_factory=dict)  # name -> forged A sent first
    real_after: dict[str, float] = field(default_factory=dict)  # injected name -> delay (s)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        if name in self.nxdomain or (name not in self.a and name not in self.aaaa):
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        table = self.a if question.rdtype == dns.rdatatype.A else self.aaaa
        kind = "A" if question.rdtype == dns.rdatatype.A else "AAAA"
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and table.get(name):
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", kind, *table[name]))
        return response


class _DNSProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries += 1
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        response = self.zone.answer(query)
        if response is None or self.transport is None:
            return
        name = query.question[0].name.to_text().rstrip(".").lower()
        forged = self.zone.inject.get(name)
        if forged and query.question[0].rdtype == dns.rdatatype.A:
            fake = dns.message.make_response(query)
            fake.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", forged))
            self.transport.sendto(fake.to_wire(), addr)
            delay = self.zone.real_after.get(name, 0.05)
            asyncio.get_running_loop().call_later(
                delay, self.transport.sendto, response.to_wire(), addr
            )
            return
        self.transport.sendto(response.to_wire(), addr)


async def start_dns(host: str, zone: Zone) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _DNSProtocol(zone), local_addr=(host, 0)
    )
    return transport, transport.get_extra_info("sockname")[1]


# -- HTTP(S) -------------------------------------------------------------------------------
async def read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" "), "", "", ""][:3]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if method == "POST" and "content-length" in headers:
        n = min(int(headers["content-length"]), 65536)
        headers["_body"] = await reader.readexactly(n)
    host = (
        headers.get("host", "").rsplit(":", 1)[0]
        if "]" not in headers.get("host", "")
        else headers["host"]
    )
    return {"method": method, "path": target, "headers": headers, "host": host}


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    reason = {200: "OK", 301: "Moved", 302: "Found", 404: "Not Found"}.get(status, "X")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    for k, v in headers or []:
        head += f"{k}: {v}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()


def page(title: str, status: int = 200, extra: bytes = b"") -> Handler:
    body = (
        f"<html><head><title>{title}</title></head><body>{title}".encode()
        + extra
        + (b"</body></html>")
    )

    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        await respond(
            writer, status, body, [("Content-Type", "text/html"), ("X-Site", req["host"])]
        )

    return handler


def redirect(location: str) -> Handler:
    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        await respond(writer, 302, b"", [("Location", location)])

    return handler


def redirect_loop() -> Handler:
    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        n = int(req["path"].rsplit("/", 1)[-1] or 0)
        await respond(writer, 302, b"", [("Location", f"/loop/{n + 1}")])

    return handler


def gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """True once the client went away (reset or closed): stop writing."""
    return writer.is_closing() or reader.exception() is not None or reader.at_eof()


async def endless(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
        b"<html><title>endless</title>"
    )
    chunk = b"x" * 65536
    with contextlib.suppress(OSError):
        while not gone(reader, writer):
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)  # a dead peer never blocks drain(): let the loop notice


async def huge_headers(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    with contextlib.suppress(OSError):
        for i in range(100000):
            if gone(reader, writer):
                break
            writer.write(f"X-Filler-{i}: {'y' * 100}\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0)


async def echo_ip(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    peer = writer.get_extra_info("peername")[0]
    body = f"<html><title>your address</title>you are {peer}</html>".encode()
    await respond(writer, 200, body, [("X-Client-IP", peer)])


async def echo_user_agent(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    agent = req["headers"].get("user-agent", "")
    await respond(writer, 200, f"<html><title>UA: {agent}</title></html>".encode())


def blob(size: int) -> Handler:
    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n"
            "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode()
        )
        sent, chunk = 0, b"\0" * 65536
        with contextlib.suppress(OSError):
            while sent < size and not gone(reader, writer):
                writer.write(chunk[: size - sent])
                sent += min(len(chunk), size - sent)
                await writer.drain()

    return handler


def slow_blob(size: int, bytes_per_second: int) -> Handler:
    """Like ``blob`` but paced, as a throttling censor would deliver it."""

    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        sent, chunk = 0, b"\0" * 8192
        with contextlib.suppress(OSError):
            while sent < size and not gone(reader, writer):
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
                await asyncio.sleep(len(chunk) / bytes_per_second)

    return handler


def stall_once(size: int, bytes_per_second: int) -> Handler:
    """Slow the first time only, as one transfer stalling on a lossy network."""
    calls = [0]
    slow, fast = slow_blob(size, bytes_per_second), blob(size)

    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        calls[0] += 1
        await (slow if calls[0] == 1 else fast)(reader, writer, req)

    return handler


def doh(zone: Zone) -> Handler:
    async def handler(reader: Any, writer: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        query = dns.message.from_wire(req["headers"].get("_body", b""))
        response = zone.answer(query)
        if response is None:
            await asyncio.sleep(30)
            return
        await respond(
            writer, 200, response.to_wire(), [("Content-Type", "application/dns-message")]
        )

    return handler


class Site:
    """Routes (host, path) or path to handlers; serves HTTP and, with a context, HTTPS."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str | None, str], Handler] = {}

    def route(self, path: str, handler: Handler, host: str | None = None) -> None:
        self.routes[(host, path)] = handler

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await read_request(reader)
            if req is None:
                return
            path = req["path"].split("?", 1)[0]
            handler = self.routes.get((req["host"], path)) or self.routes.get((None, path))
            if handler is None and path.startswith("/loop/"):
                handler = self.routes.get((None, "/loop/"))
            if handler is None:
                handler = self.routes.get((req["host"], "*")) or self.routes.get((None, "*"))
            if handler is None:
                await respond(writer, 404, b"<html><title>not found</title></html>")
            else:
                await handler(reader, writer, req)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


# -- hostile servers -----------------------------------------------------------------------
async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await reader.read(4096)
        writer.write(os.urandom(4096))
        await writer.drain()
        await asyncio.sleep(0.2)
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await asyncio.sleep(60)
    writer.close()


def rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def sni_reset_proxy(upstream: tuple[str, int], blocked: bytes) -> Callable[..., Awaitable[None]]:
    """Pass traffic to ``upstream`` unless the ClientHello names ``blocked``: then RST."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(reader.read(16384), 5)
        except (OSError, TimeoutError):
            writer.close()
            return
        if blocked in first:
            rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            rst(writer)
            return
        up_writer.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return handler


def full_backlog(host: str) -> tuple[socket.socket, list[socket.socket], int]:
    """A listener whose accept queue is full: further SYNs are dropped, connects time out."""
    lsock = socket.socket()
    lsock.bind((host, 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((host, port))
        fillers.append(s)
    return lsock, fillers, port


# -- PKI -----------------------------------------------------------------------------------
@dataclass
class PKI:
    directory: Path
    ca_file: Path
    good: ssl.SSLContext
    wrong_name: ssl.SSLContext
    unknown_ca: ssl.SSLContext


def make_pki(directory: Path, names: list[str], ips: list[str]) -> PKI:
    ca = CertificateAuthority.create()
    ca.save(directory / "ca.pem", directory / "ca.key")
    good = ca.issue(names, ips, directory=directory, stem="good")
    wrong = ca.issue(["unrelated.test"], directory=directory, stem="wrong")
    rogue = CertificateAuthority.create("rogue root").issue(
        names, directory=directory, stem="rogue"
    )

    def ctx(cert: Any) -> ssl.SSLContext:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(cert.certfile, cert.keyfile)
        c.set_alpn_protocols(["http/1.1"])
        return c

    return PKI(directory, directory / "ca.pem", ctx(good), ctx(wrong), ctx(rogue))


def sni_router(pki: PKI, wrong: set[str], rogue: set[str]) -> ssl.SSLContext:
    """The good context, switching to a bad certificate for the names listed."""
    base = pki.good

    def pick(sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name in wrong:
            sslobj.context = pki.wrong_name
        elif name in rogue:
            sslobj.context = pki.unknown_ca

    base.sni_callback = pick
    return base


# -- the assembled little internet ----------------------------------------------------------
BASE = "127.77.0."
WEB, GARBAGE, SILENT, REFUSED, DROP, PROXY = (BASE + str(i) for i in (2, 3, 4, 5, 6, 7))
SYSTEM_DNS, PUBLIC_DNS, CONTROL = BASE + "10", BASE + "11", BASE + "9"
BOGON = BASE + "66"  # stands in for 10.10.34.34: tests never leave loopback
THROUGHPUT_SIZE = 2 * 1024 * 1024


@dataclass
class Internet:
    pki: PKI
    http_port: int
    https_port: int
    garbage_port: int
    silent_port: int
    drop_port: int
    proxy_port: int
    system_dns: tuple[str, int]
    public_dns: tuple[str, int]
    doh_url: str
    clean: Zone
    censoring: Zone
    loop: LoopThread
    closers: list[Any] = field(default_factory=list)

    def https(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def http(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.http_port}{path}"

    def close(self) -> None:
        for closer in self.closers:
            with contextlib.suppress(Exception):
                closer()
        self.loop.stop()


NAMES = {
    "site.test": [WEB],
    "wrong.test": [WEB],
    "rogue.test": [WEB],
    "redirect.test": [WEB],
    "loop.test": [WEB],
    "endless.test": [WEB],
    "huge.test": [WEB],
    "echo.test": [WEB],
    "media.test": [WEB],
    "reference.test": [WEB],
    "inject.test": [WEB],
    "lateinject.test": [WEB],
    "censored.test": [WEB],
    "dnsto.test": [WEB],
    "bogon.test": [WEB],
    "garbage.test": [GARBAGE],
    "silent.test": [SILENT],
    "refused.test": [REFUSED],
    "drop.test": [DROP],
    "blocked.test": [PROXY],
    "twohomes.test": [WEB, REFUSED],
    "slow.test": [WEB],
    "stall.test": [WEB],
    "hijack.test": [WEB],
}


def build_internet(directory: Path) -> Internet:
    pki = make_pki(directory, sorted(NAMES), [WEB, PROXY])
    tls_ctx = sni_router(pki, wrong={"wrong.test"}, rogue={"rogue.test"})
    clean = Zone(a={k: list(v) for k, v in NAMES.items()}, nxdomain={"nx.test"})
    censoring = Zone(
        a={**clean.a, "bogon.test": [BOGON], "hijack.test": [GARBAGE]},
        nxdomain={"nx.test", "censored.test"},
        silent={"dnsto.test"},
        inject={"inject.test": BOGON, "lateinject.test": BOGON},
        real_after={"lateinject.test": 0.8},
    )
    site = Site()
    site.route("/", page("Welcome to the test site"))
    site.route("/loop/", redirect_loop())
    site.route("/endless", endless)
    site.route("/huge", huge_headers)
    site.route("/echo", echo_ip)
    site.route("/ua", echo_user_agent)
    site.route("/censorwatch/throughput.bin", blob(THROUGHPUT_SIZE))
    site.route("/censorwatch/throughput.bin", slow_blob(THROUGHPUT_SIZE, 400_000), "slow.test")
    stall = stall_once(THROUGHPUT_SIZE, 400_000)
    site.route("/censorwatch/throughput.bin", stall, "stall.test")
    site.route("/dns-query", doh(clean))
    loop = LoopThread()

    async def start() -> Internet:
        http_srv = await asyncio.start_server(site, WEB, 0)
        https_srv = await asyncio.start_server(site, WEB, 0, ssl=tls_ctx)
        https_port = https_srv.sockets[0].getsockname()[1]
        http_port = http_srv.sockets[0].getsockname()[1]
        # the redirect target needs the HTTPS port, known only now
        site.route("/", redirect(f"https://site.test:{https_port}/"), host="redirect.test")
        garbage_srv = await asyncio.start_server(garbage, GARBAGE, 0)
        silent_srv = await asyncio.start_server(silent, SILENT, 0)
        proxy_srv = await asyncio.start_server(
            sni_reset_proxy((WEB, https_port), b"blocked.test"), PROXY, 0
        )
        # HTTP/3's transport on the HTTPS port number, over UDP (no handler: the handshake is
        # what the probe measures)
        quic_config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        quic_config.load_cert_chain(pki.directory / "good.pem", pki.directory / "good.key")
        quic_srv = await quic_serve(WEB, https_port, configuration=quic_config)
        sys_t, sys_port = await start_dns(SYSTEM_DNS, censoring)
        pub_t, pub_port = await start_dns(PUBLIC_DNS, clean)
        lsock, fillers, drop_port = full_backlog(DROP)
        net = Internet(
            pki=pki,
            http_port=http_port,
            https_port=https_port,
            garbage_port=garbage_srv.sockets[0].getsockname()[1],
            silent_port=silent_srv.sockets[0].getsockname()[1],
            drop_port=drop_port,
            proxy_port=proxy_srv.sockets[0].getsockname()[1],
            system_dns=(SYSTEM_DNS, sys_port),
            public_dns=(PUBLIC_DNS, pub_port),
            doh_url=f"https://{WEB}:{https_port}/dns-query",
            clean=clean,
            censoring=censoring,
            loop=loop,
        )
        for srv in (http_srv, https_srv, garbage_srv, silent_srv, proxy_srv):
            net.closers.append(srv.close)
        net.closers += [sys_t.close, pub_t.close, lsock.close, *(s.close for s in fillers)]
        net.closers.append(quic_srv.close)
        return net

    return loop.run(start())


def probe_config(net: Internet, control_url: str | None = None, **budgets: Any) -> Any:
    """A probe configuration for this internet, with short budgets unless overridden."""
    from censorwatch.probe.budget import Budgets
    from censorwatch.probe.config import ProbeConfig

    short = dict(
        connect_timeout=1.0,
        tls_timeout=1.0,
        quic_timeout=1.0,
        dns_timeout=1.0,
        http_timeout=3.0,
        dns_duplicate_window=0.2,
        throughput_seconds=1.5,
        control_timeout=5.0,
    )
    short.update(budgets)
    return ProbeConfig(
        system_resolver=net.system_dns,
        udp_resolver=net.public_dns,
        doh_url=net.doh_url,
        control_url=control_url,
        cafile=str(net.pki.ca_file),
        testbed="loopback",
        probe_asn="AS64500",
        probe_cc="PK",
        probe_network_name="Loopback Telecom",
        reference_url=net.https("reference.test", "/censorwatch/throughput.bin"),
        budgets=Budgets(**short),
        report_id="20240217T000000Z_webconnectivity_PK_64500_n1_test",
    )


def control_settings(net: Internet, *, testbed: bool = True, plan: Any = None) -> Any:
    from censorwatch.control.service import ControlSettings
    from censorwatch.netinfo import AddressPlan
    from censorwatch.probe.budget import Budgets
    from censorwatch.probe.tls import TrustAnchors

    return ControlSettings(
        resolver=net.public_dns,
        anchors=TrustAnchors(net.pki.ca_file, system=False),
        plan=plan or AddressPlan().freeze(),
        testbed=testbed,
        budgets=Budgets(
            connect_timeout=1.0,
            tls_timeout=1.0,
            quic_timeout=1.0,
            dns_timeout=1.0,
            http_timeout=3.0,
        ),
        deadline=8.0,
    )


def exec_env(net: Internet, control_url: str) -> dict[str, str]:
    """What ``censorwatch testbed exec`` puts in the environment, for this internet."""
    return {
        "CENSORWATCH_CA": str(net.pki.ca_file),
        "CENSORWATCH_CONTROL": control_url,
        "CENSORWATCH_UDP_RESOLVER": f"{net.public_dns[0]}:{net.public_dns[1]}",
        "CENSORWATCH_DOH_URL": net.doh_url,
        "CENSORWATCH_PROBE_ASN": "AS17557",
        "CENSORWATCH_PROBE_CC": "PK",
        "CENSORWATCH_PROBE_NETWORK_NAME": "PTCL",
        "CENSORWATCH_REFERENCE_URL": net.https("reference.test", "/censorwatch/throughput.bin"),
        "CENSORWATCH_TESTBED": "loopback",
    }


def probe_app() -> Any:
    """``censorwatch probe`` as a one-command typer app, for CliRunner."""
    import typer

    from censorwatch.app.commands.probe import probe

    app = typer.Typer()
    app.command()(probe)
    return app
