"""HTTPS GETs whose ClientHello is shaped to slip past an SNI filter, on a memory BIO.

``ssl`` normally writes the ClientHello to the socket itself. Here it writes into a memory
buffer instead (``SSLContext.wrap_bio``), so the probe decides how those bytes leave:

- ``sni=None`` or a decoy name: the filter has no blocked name to read (the server then
  answers with its default certificate, which is recorded as not valid for the host);
- ``split="tcp"``: the ClientHello goes out in two writes, cut in the middle of the server
  name, with ``TCP_NODELAY`` and a short pause between them, so it travels as two TCP
  segments. A censor that reads each packet on its own sees half a name in each and matches
  neither; one that reassembles the stream first (as a proxy or a stateful DPI box does)
  sees the whole name and is not fooled;
- ``split="record"``: the ClientHello is re-framed as two TLS records, cut inside the name
  (RFC 8446 §5.1 lets a handshake message span records), sent in one write. A parser that
  reads a single record finds no complete name; one that reassembles records does.

Every exchange is bounded in time (``timeout``, for everything) and in bytes read
(``max_bytes``); the page's status, title and length are kept, never its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Literal

import h11
from cryptography import x509

from censorwatch import failures
from censorwatch.observations.text import title_of
from censorwatch.probe import tcp, tls
from censorwatch.probe.http import DEFAULT_HEADERS
from censorwatch.scrub import Scrubber

Split = Literal["tcp", "record"] | None
READ_CHUNK = 16 * 1024
#: Bytes of body kept in memory to read the page's title from.
TITLE_BYTES = 16 * 1024
#: Pause between the two halves of a split ClientHello: long enough for the first half to
#: leave as its own segment, short beside any handshake timeout.
SPLIT_PAUSE = 0.05


@dataclass
class PageResult:
    """What one attempt got: the failure, or the response's status, title and size."""

    address: str
    server_name: str | None
    t0: float
    t: float = 0.0
    failure: str | None = None
    status_code: int | None = None
    title: str = ""
    body_length: int = 0
    bytes_received: int = 0
    certificate_valid: bool | None = None  # for ``verify_name`` (the Host, or a front's name)
    negotiated_protocol: str = ""


def split_point(hello: bytes, name: str) -> int | None:
    """Where to cut ``hello`` so that ``name`` is in neither half whole (None: not in it)."""
    at = hello.find(name.encode("ascii", "ignore"))
    if at < 0 or len(name) < 2:
        return None
    return at + len(name) // 2


def as_two_records(hello: bytes, cut: int) -> bytes:
    """The one-record ClientHello ``hello`` framed as two records split at byte ``cut``."""
    content_type, version = hello[0], hello[1:3]
    body = hello[5:]
    first, second = body[: cut - 5], body[cut - 5 :]
    header = struct.Struct("!B2sH")
    return (
        header.pack(content_type, version, len(first))
        + first
        + header.pack(content_type, version, len(second))
        + second
    )


class BudgetSpent(Exception):
    """The byte budget of one attempt is used up."""


class _Channel:
    """A TLS client over an asyncio stream, through memory BIOs; counts bytes read."""

    def __init__(self, conn: tcp.TCPResult, sni: str | None, max_bytes: int) -> None:
        assert conn.reader is not None and conn.writer is not None
        self.reader, self.writer = conn.reader, conn.writer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = tls.handshake_context(["http/1.1"]).wrap_bio(
            self.incoming, self.outgoing, server_hostname=sni
        )
        self.max_bytes = max_bytes
        self.received = 0

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def fill(self) -> None:
        """Read what the server sent into the TLS object; EOF is passed on to it."""
        if self.received >= self.max_bytes:
            raise BudgetSpent
        data = await self.reader.read(min(READ_CHUNK, self.max_bytes - self.received))
        self.received += len(data)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    async def send_first_flight(self, name: str | None, split: Split) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()  # writes the ClientHello, then waits for the server
        hello = self.outgoing.read()
        cut = split_point(hello, name) if split and name else None
        if cut is None or len(hello) < 6 or hello[0] != 0x16:
            self.writer.write(hello)
        elif split == "record":
            self.writer.write(as_two_records(hello, cut))
        else:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.writer.write(hello[:cut])
            await self.writer.drain()
            await asyncio.sleep(SPLIT_PAUSE)
            self.writer.write(hello[cut:])
        await self.writer.drain()

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                await self.flush()
                return
            except ssl.SSLWantReadError:
                await self.flush()
                await self.fill()

    async def read(self) -> bytes:
        """Decrypted bytes (b"" at the end of the stream)."""
        while True:
            try:
                return self.tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                await self.fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""


def _leaf_valid(channel: _Channel, host: str, anchors: tls.TrustAnchors) -> bool | None:
    der = channel.tls.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        chain = [x509.load_der_x509_certificate(der)]
    except ValueError:
        return False
    return anchors.verify(chain, host) is None


async def https_get(
    ip: str,
    port: int,
    host: str,
    path: str,
    *,
    sni: str | None,
    split: Split = None,
    clock: float,
    timeout: float,
    max_bytes: int,
    anchors: tls.TrustAnchors,
    scrubber: Scrubber | None = None,
    verify_name: str | None = None,
) -> PageResult:
    """GET ``https://host/path`` from ``ip:port`` with ``sni`` in the ClientHello (None: no
    SNI), the hello sent whole or ``split``; the certificate is judged afterwards against
    ``verify_name`` (default ``host``)."""
    result = PageResult(tcp.endpoint(ip, port), sni, time.monotonic() - clock)
    conn: tcp.TCPResult | None = None
    channel: _Channel | None = None
    try:
        async with asyncio.timeout(timeout):
            conn = await tcp.connect(ip, port, clock=clock, timeout=timeout, scrubber=scrubber)
            if conn.failure:
                result.failure = conn.failure
                return result
            channel = _Channel(conn, sni, max_bytes)
            await channel.send_first_flight(sni, split)
            await channel.handshake()
            result.negotiated_protocol = channel.tls.selected_alpn_protocol() or ""
            result.certificate_valid = _leaf_valid(channel, verify_name or host, anchors)
            await _exchange(channel, host, path, result)
    except TimeoutError:
        result.failure = failures.GENERIC_TIMEOUT
    except ssl.SSLError as exc:
        result.failure = failures.classify(exc)
    except (OSError, EOFError) as exc:
        result.failure = failures.classify(exc)
    except (h11.ProtocolError, BudgetSpent):
        # a byte budget spent before any response is a server that only talks
        result.failure = failures.HTTP_PROTOCOL_ERROR
    finally:
        result.t = time.monotonic() - clock
        if channel is not None:
            result.bytes_received = channel.received
        if conn is not None:
            conn.close()
    return result


async def _exchange(channel: _Channel, host: str, path: str, result: PageResult) -> None:
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=READ_CHUNK * 4)
    request = h11.Request(
        method="GET",
        target=path,
        headers=[*DEFAULT_HEADERS, ("Host", host), ("Connection", "close")],
    )
    channel.tls.write(client.send(request) + client.send(h11.EndOfMessage()))
    await channel.flush()
    kept = bytearray()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await channel.read()
            except BudgetSpent:
                if result.status_code is None:
                    raise
                break  # the head and the first bytes arrived: enough to judge the page
            if not data and result.status_code is None:
                raise EOFError("connection closed before a response")
            client.receive_data(data)
            if not data:
                break
            continue
        if isinstance(event, h11.Response):
            result.status_code = event.status_code
        elif isinstance(event, h11.Data):
            result.body_length += len(event.data)
            if len(kept) < TITLE_BYTES:
                kept += event.data[: TITLE_BYTES - len(kept)]
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    result.title = title_of(bytes(kept))
