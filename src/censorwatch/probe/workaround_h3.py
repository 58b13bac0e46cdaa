"""A full HTTP/3 GET (aioquic), for when TLS over TCP is what the censor interferes with.

The handshake alone (``probe/quic.py``) says UDP 443 gets through; a request says the page
does. Bounded like every attempt: one deadline for handshake and response, and a cap on the
body bytes counted (the body itself is not kept, only its length and title).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent

from censorwatch import failures
from censorwatch.observations.text import title_of
from censorwatch.probe import quic, tcp
from censorwatch.probe.http import USER_AGENT
from censorwatch.probe.tls import TrustAnchors
from censorwatch.probe.workaround_tls import TITLE_BYTES, PageResult
from censorwatch.scrub import Scrubber


class _H3Client(QuicConnectionProtocol):
    """Collects one response: status, the first body bytes, the length, the end."""

    def __init__(self, *args: Any, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.status: int | None = None
        self.kept = bytearray()
        self.length = 0
        self.max_bytes = max_bytes
        self.done = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.http.handle_event(event):
            self._on_h3(h3_event)

    def _on_h3(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            for name, value in event.headers:
                if name == b":status":
                    self.status = int(value)
        elif isinstance(event, DataReceived):
            self.length += len(event.data)
            if len(self.kept) < TITLE_BYTES:
                self.kept += event.data[: TITLE_BYTES - len(self.kept)]
        else:
            return
        ended = getattr(event, "stream_ended", False) or self.length >= self.max_bytes
        if ended and not self.done.done():
            self.done.set_result(None)

    def get(self, host: str, path: str) -> None:
        stream_id = self._quic.get_next_available_stream_id()
        self.http.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", host.encode("idna")),
                (b":path", path.encode()),
                (b"user-agent", USER_AGENT.encode()),
            ],
            end_stream=True,
        )
        self.transmit()


async def get(
    ip: str,
    port: int,
    host: str,
    path: str,
    *,
    clock: float,
    timeout: float,
    max_bytes: int,
    anchors: TrustAnchors,
    scrubber: Scrubber | None = None,
) -> PageResult:
    """GET ``https://host/path`` over HTTP/3 from ``ip:port`` with the real SNI."""
    result = PageResult(tcp.endpoint(ip, port), host, time.monotonic() - clock)
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=host,
        verify_mode=ssl.CERT_NONE,  # judged afterwards, as every handshake
        idle_timeout=timeout + 1.0,
    )
    loop = asyncio.get_running_loop()
    transport = proto = None
    try:
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _H3Client(QuicConnection(configuration=config), max_bytes=max_bytes),
            remote_addr=(ip, port),
        )
        if scrubber is not None:
            scrubber.learn(transport.get_extra_info("socket"))
        proto.connect((ip, port))
        async with asyncio.timeout(timeout):
            await proto.wait_connected()
            tls_ctx: Any = proto._quic.tls
            leaf = tls_ctx._peer_certificate
            chain = [leaf, *tls_ctx._peer_certificate_chain] if leaf is not None else []
            result.certificate_valid = anchors.verify(chain, host) is None if chain else None
            result.negotiated_protocol = tls_ctx.alpn_negotiated or ""
            proto.get(host, path)
            await proto.done
        result.status_code = proto.status
        result.body_length = proto.length
        result.title = title_of(bytes(proto.kept))
        if result.status_code is None:
            result.failure = failures.HTTP_PROTOCOL_ERROR
    except (OSError, TimeoutError) as exc:
        result.failure = quic._classify(exc)
        if proto is not None and proto.status is not None:  # the head came, the rest did not
            result.status_code, result.body_length = proto.status, proto.length
    finally:
        result.t = time.monotonic() - clock
        if proto is not None:
            result.bytes_received = proto.length
            proto.close()
            waiter = getattr(proto, "_connected_waiter", None)
            if waiter is not None:
                waiter.add_done_callback(quic._consume)
            if getattr(proto, "_timer", None) is not None:
                proto._timer.cancel()
        if transport is not None:
            transport.close()
    return result
