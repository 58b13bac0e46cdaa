"""DNS for the emulated internet: an authoritative zone and resolvers that answer from it.

The same ``answer_from_zone`` serves the authoritative server, the public resolvers (over UDP
and DNS-over-TLS) and the DoH resolver; the ISP resolver forwards to the authoritative server
after asking its censor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)

TTL = 60
MAX_QUERY_BYTES = 4096
#: The largest message a 2-byte length prefix can announce (RFC 7766 §8, RFC 7858 §3.3).
MAX_STREAM_MESSAGE = 65535
#: Seconds a DNS-over-TLS connection may take for its handshake, or for each message
#: (length and body), before it is closed: a silent or trickling client holds nothing long.
DOT_IDLE_TIMEOUT = 10.0
#: The ALPN protocol identifier of DNS-over-TLS (IANA TLS ALPN registry).
DOT_ALPN = "dot"

#: A resolver's decision for one query: bytes to send back, or None to stay silent.
Handler = Callable[[bytes, tuple[str, int]], Awaitable[bytes | None]]


def answer_from_zone(
    query: dns.message.Message, zone: dict[str, list[str]], *, authoritative: bool
) -> dns.message.Message:
    response = dns.message.make_response(query)
    if authoritative:
        response.flags |= dns.flags.AA
    else:
        response.flags |= dns.flags.RA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    name = question.name.to_text(omit_final_dot=True).lower()
    if name not in zone:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    if question.rdtype == dns.rdatatype.A:
        rrset = dns.rrset.from_text_list(
            question.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, zone[name]
        )
        response.answer.append(rrset)
    return response


def forged_response(
    query: dns.message.Message, *, rcode: int = dns.rcode.NOERROR, address: str | None = None
) -> dns.message.Message:
    """What a censoring resolver says instead of the truth."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    if address and query.question and query.question[0].rdtype == dns.rdatatype.A:
        q = query.question[0]
        response.answer.append(
            dns.rrset.from_text_list(q.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, [address])
        )
    return response


def zone_handler(
    zone: dict[str, list[str]], *, authoritative: bool, whoami: str | None = None
) -> Handler:
    """Answers from ``zone``; the name ``whoami``, if given, answers the asker's address (how
    a probe learns which address its resolver comes from)."""

    async def handle(wire: bytes, peer: tuple[str, int]) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        if whoami and query.question:
            name = query.question[0].name.to_text(omit_final_dot=True).lower()
            if name == whoami:
                zone_now = {**zone, whoami: [peer[0]]}
                return answer_from_zone(query, zone_now, authoritative=authoritative).to_wire()
        return answer_from_zone(query, zone, authoritative=authoritative).to_wire()

    return handle


async def forward(wire: bytes, upstream: str, timeout: float = 2.0) -> bytes | None:
    """Ask the upstream server; None when it does not answer in time."""
    try:
        query = dns.message.from_wire(wire)
        response = await dns.asyncquery.udp(query, upstream, timeout=timeout)
    except Exception as exc:
        log.info("upstream %s failed: %s", upstream, exc)
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        failure = dns.message.make_response(query)
        failure.set_rcode(dns.rcode.SERVFAIL)
        return failure.to_wire()
    response.flags &= ~dns.flags.AA
    response.flags |= dns.flags.RA
    return response.to_wire()


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > MAX_QUERY_BYTES:
            return
        task = asyncio.ensure_future(self._reply(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.handler(data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_udp(host: str, port: int, handler: Handler) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _UDPServer(handler), local_addr=(host, port)
    )
    return transport


def dot_server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A TLS server context for DNS-over-TLS with the resolver's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([DOT_ALPN])
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


async def _read_message(reader: asyncio.StreamReader, idle_timeout: float) -> bytes | None:
    """One length-prefixed message, or None at a clean end of the stream. Length and body
    together must come within ``idle_timeout``; a message is never more than 65535 bytes."""
    async with asyncio.timeout(idle_timeout):
        try:
            prefix = await reader.readexactly(2)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        length = int.from_bytes(prefix, "big")
        if length == 0:
            raise ValueError("a zero-length DNS message")
        return await reader.readexactly(length)


async def serve_tls(
    host: str,
    port: int,
    handler: Handler,
    context: ssl.SSLContext,
    *,
    idle_timeout: float = DOT_IDLE_TIMEOUT,
) -> asyncio.Server:
    """DNS-over-TLS (RFC 7858) on ``host:port``: several queries per connection, each answered
    through ``handler`` as over UDP. A message that is not DNS, a silent or trickling client,
    or an answer that cannot be framed closes that connection, and only that one."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while (wire := await _read_message(reader, idle_timeout)) is not None:
                reply = await handler(wire, (peer[0], peer[1]))
                if reply is None or len(reply) > MAX_STREAM_MESSAGE:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                async with asyncio.timeout(idle_timeout):
                    await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("DoT connection from %s closed: %r", peer[0], exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(idle_timeout):
                    await writer.wait_closed()

    return await asyncio.start_server(
        connection, host, port, ssl=context, ssl_handshake_timeout=idle_timeout
    )
