"""A STUN Binding server (RFC 8489): tells each client the address its packets come from.

Operators who run a control can run this beside it, so that their probes learn their public
address from a service they trust; the testbed runs it as the internet's STUN servers. It
answers Binding requests only, keeps no state and logs no address.
"""

from __future__ import annotations

import asyncio
import logging

from censorwatch.probe import stun

log = logging.getLogger("stun")
SOFTWARE = "censorwatch"


class _Responder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0
        self.ignored = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = stun.decode(data)
        except stun.StunError:
            self.ignored += 1  # not STUN, or damaged: a server stays silent (RFC 8489 §6.3)
            return
        if request.message_type != stun.BINDING_REQUEST or self.transport is None:
            self.ignored += 1
            return
        reply = stun.binding_response(request, (addr[0], addr[1]), SOFTWARE)
        self.transport.sendto(stun.encode(reply), addr)
        self.answered += 1


async def serve(host: str, port: int) -> tuple[asyncio.DatagramTransport, _Responder]:
    """Listen on ``host:port`` (UDP) until the transport is closed."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _Responder, local_addr=(host, port), reuse_port=False
    )
    return transport, protocol


async def serve_forever(listen: list[tuple[str, int]]) -> None:
    for host, port in listen:
        transport, _ = await serve(host, port)
        log.info("STUN listening on %s:%s (udp)", *transport.get_extra_info("sockname")[:2])
    await asyncio.Event().wait()


__all__ = ["serve", "serve_forever"]
