"""DNS for the emulated internet: an authoritative zone and resolvers that answer from it.

The same ``answer_from_zone`` serves the authoritative server, the public resolver and the
DoH resolver; the ISP resolver forwards to the authoritative server after asking its censor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

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
