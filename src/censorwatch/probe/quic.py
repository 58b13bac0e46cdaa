"""QUIC handshakes (HTTP/3's transport) to the same addresses as TLS over TCP.

Censors that cannot parse QUIC often drop UDP 443 outright; a QUIC handshake that times out
while TLS over TCP to the same address succeeds shows exactly that. As with TLS, the handshake
runs without verification (the certificate is recorded) and is judged afterwards against the
probe's trust anchors. Entries go to ``quic_handshakes``, OONI's key.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography.hazmat.primitives.serialization import Encoding

from censorwatch import failures
from censorwatch.probe.tcp import endpoint
from censorwatch.probe.tls import MAX_CHAIN, TLSResult, TrustAnchors
from censorwatch.scrub import Scrubber


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _classify(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return failures.GENERIC_TIMEOUT
    if type(exc) is ConnectionError and exc.errno is None:
        # aioquic's way of saying the connection closed before the handshake completed
        return failures.SSL_FAILED_HANDSHAKE
    return failures.classify(exc)


async def handshake(
    ip: str,
    port: int,
    server_name: str,
    *,
    clock: float,
    timeout: float,
    anchors: TrustAnchors,
    scrubber: Scrubber | None = None,
) -> TLSResult:
    """One QUIC handshake with ``server_name`` as SNI; the connection is closed right after."""
    result = TLSResult(endpoint(ip, port), server_name, time.monotonic() - clock)
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=server_name,
        verify_mode=ssl.CERT_NONE,
        # longer than our own deadline, so that silence ends as a timeout, not as a close
        idle_timeout=timeout + 1.0,
    )
    loop = asyncio.get_running_loop()
    transport = proto = None
    try:
        # our own connected UDP endpoint (rather than aioquic's connect()): closing it is
        # immediate, so a silent peer costs the budget and nothing more
        transport, proto = await loop.create_datagram_endpoint(
            lambda: QuicConnectionProtocol(QuicConnection(configuration=config)),
            remote_addr=(ip, port),
        )
        if scrubber is not None:
            scrubber.learn(transport.get_extra_info("socket"))
        proto.connect((ip, port))
        try:
            async with asyncio.timeout(timeout):
                await proto.wait_connected()
        finally:
            # aioquic settles this future when the connection closes; nobody else reads it
            waiter = getattr(proto, "_connected_waiter", None)
            if waiter is not None:
                waiter.add_done_callback(_consume)
        result.t = time.monotonic() - clock
        tls_ctx: Any = proto._quic.tls
        leaf = tls_ctx._peer_certificate
        chain = [leaf, *tls_ctx._peer_certificate_chain] if leaf is not None else []
        result.chain_der = [c.public_bytes(Encoding.DER) for c in chain][:MAX_CHAIN]
        result.tls_version = "TLSv1.3"
        result.negotiated_protocol = tls_ctx.alpn_negotiated or ""
        cipher = getattr(getattr(tls_ctx, "key_schedule", None), "cipher_suite", None)
        result.cipher_suite = f"TLS_{cipher.name}" if cipher is not None else ""
        proto.close()  # CONNECTION_CLOSE, sent at once
        result.verification_failure = anchors.verify(chain, server_name)
        result.failure = result.verification_failure
    except (OSError, TimeoutError) as exc:
        result.failure = _classify(exc)
        result.t = time.monotonic() - clock
    finally:
        if proto is not None and getattr(proto, "_timer", None) is not None:
            proto._timer.cancel()
        if transport is not None:
            transport.close()
    return result


def to_entry(result: TLSResult, transaction_id: int, tags: list[str]) -> dict[str, Any]:
    entry = result.to_entry(transaction_id, tags)
    entry["network"] = "quic"
    return entry
