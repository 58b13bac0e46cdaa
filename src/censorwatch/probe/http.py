"""HTTP/1.1 GET over h11, following redirects, with every byte counted and capped.

Each hop opens its own connection to an address the caller chose (the probe's own DNS result),
so what is recorded is exactly what this network delivered. A hop is one OONI ``requests``
entry; OONI lists the most recent hop first, and so does this module.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import h11

from censorwatch import failures
from censorwatch.observations.text import title_of
from censorwatch.probe import tcp, tls
from censorwatch.probe.budget import Budgets
from censorwatch.scrub import Scrubber

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36"
)
DEFAULT_HEADERS = [
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("User-Agent", USER_AGENT),
]
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
READ_CHUNK = 64 * 1024

Resolver = Callable[[str], Awaitable[tuple[list[str], str | None]]]
ByteCallback = Callable[[int], None]


def body_field(body: bytes) -> str | dict[str, str]:
    """OONI's body encoding: text when valid UTF-8, else base64."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": base64.b64encode(body).decode()}


@dataclass
class Exchange:
    """One request and its response (or failure)."""

    url: str
    address: str
    t0: float
    t: float = 0.0
    failure: str | None = None
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    status_code: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    body_length: int = 0  # bytes received (counted even when not kept)
    body_is_truncated: bool = False
    tls: tls.TLSResult | None = None

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None

    @property
    def title(self) -> str:
        return title_of(self.body)

    def to_entry(self, transaction_id: int, tags: list[str]) -> dict[str, Any]:
        response: dict[str, Any] = {
            "body": body_field(self.body) if self.status_code is not None else None,
            "body_is_truncated": self.body_is_truncated,
            "code": self.status_code if self.status_code is not None else 0,
            "headers_list": [list(h) for h in self.headers],
            "headers": dict(self.headers),
            "x_body_length": self.body_length,
        }
        return {
            "network": "tcp",
            "address": self.address,
            "alpn": "http/1.1" if self.url.startswith("https") else "",
            "failure": self.failure,
            "request": {
                "body": "",
                "body_is_truncated": False,
                "headers_list": [list(h) for h in self.request_headers],
                "headers": dict(self.request_headers),
                "method": "GET",
                "tor": {"exit_ip": None, "exit_name": None, "is_tor": False},
                "x_transport": "tcp",
                "url": self.url,
            },
            "response": response,
            "t0": round(self.t0, 6),
            "t": round(self.t, 6),
            "tags": tags,
            "transaction_id": transaction_id,
        }


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _host_header(host: str, port: int | None, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port in (None, default_port(scheme)) else f"{shown}:{port}"


async def fetch_once(
    url: str,
    ip: str,
    *,
    clock: float,
    budgets: Budgets,
    anchors: tls.TrustAnchors,
    scrubber: Scrubber | None = None,
    max_body: int | None = None,
    keep_body: bool = True,
    timeout: float | None = None,
    on_bytes: ByteCallback | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Exchange:
    """GET ``url`` from ``ip``; never more than the time and byte budgets allow.

    ``headers`` replace the default browser-like Accept, Accept-Language and User-Agent.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or default_port(parts.scheme)
    exchange = Exchange(url, tcp.endpoint(ip, port), time.monotonic() - clock)
    max_body = budgets.http_max_body if max_body is None else max_body
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    exchange.request_headers = [
        *(DEFAULT_HEADERS if headers is None else headers),
        ("Host", _host_header(host, parts.port, parts.scheme)),
    ]
    exchange.request_headers.sort(key=lambda h: h[0])
    conn: tcp.TCPResult | None = None
    try:
        async with asyncio.timeout(timeout or budgets.http_timeout):
            conn = await tcp.connect(
                ip, port, clock=clock, timeout=budgets.connect_timeout, scrubber=scrubber
            )
            if conn.failure:
                exchange.failure = conn.failure
                return exchange
            if parts.scheme == "https":
                exchange.tls = await tls.handshake(
                    conn, host, clock=clock, timeout=budgets.tls_timeout, anchors=anchors
                )
                if exchange.tls.failure:
                    exchange.failure = exchange.tls.failure
                    return exchange
            await _exchange(conn, exchange, target, budgets, max_body, keep_body, on_bytes)
    except TimeoutError:
        exchange.failure = failures.GENERIC_TIMEOUT
    except h11.RemoteProtocolError as exc:
        if exchange.status_code is None and "buffer" in str(exc).lower():
            exchange.failure = failures.HTTP_HEADERS_TOO_LARGE
        else:
            exchange.failure = failures.HTTP_PROTOCOL_ERROR
    except (OSError, EOFError) as exc:
        exchange.failure = _classify_read_error(exc)
    finally:
        exchange.t = time.monotonic() - clock
        exchange.body = bytes(exchange.body)
        if conn is not None:
            conn.close()
    return exchange


def _classify_read_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError) and exc.errno is None and not exc.args:
        return failures.EOF_ERROR
    return failures.classify(exc)


async def _exchange(
    conn: tcp.TCPResult,
    exchange: Exchange,
    target: str,
    budgets: Budgets,
    max_body: int,
    keep_body: bool,
    on_bytes: ByteCallback | None,
) -> None:
    assert conn.reader is not None and conn.writer is not None
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=budgets.http_max_headers)
    request = h11.Request(
        method="GET", target=target, headers=[*exchange.request_headers, ("Connection", "close")]
    )
    conn.writer.write(client.send(request) + client.send(h11.EndOfMessage()))
    await conn.writer.drain()
    kept = bytearray()  # on the exchange at once, so a deadline keeps what arrived
    exchange.body = kept  # type: ignore[assignment]
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            data = await conn.reader.read(READ_CHUNK)
            if not data and exchange.status_code is None:
                raise EOFError("connection closed before a response")
            client.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            exchange.status_code = event.status_code
            exchange.headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()
            ]
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Data):
            size = len(event.data)
            exchange.body_length += size
            if keep_body and len(kept) < max_body:
                kept += event.data[: max_body - len(kept)]
            if on_bytes is not None:
                on_bytes(exchange.body_length)
            if exchange.body_length >= max_body:
                exchange.body_is_truncated = True
                break
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break


async def fetch(
    url: str,
    resolve: Resolver,
    *,
    clock: float,
    budgets: Budgets,
    anchors: tls.TrustAnchors,
    scrubber: Scrubber | None = None,
    first_ip: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> tuple[list[Exchange], str | None]:
    """Follow redirects from ``url``; returns the hops (first to last) and the final failure."""
    hops: list[Exchange] = []
    current = url
    ip = first_ip
    for _ in range(budgets.max_redirects + 1):
        if ip is None:
            host = urlsplit(current).hostname or ""
            addresses, failure = await resolve(host)
            if not addresses:
                return hops, failure or failures.DNS_NO_ANSWER
            ip = addresses[0]
        hop = await fetch_once(
            current,
            ip,
            clock=clock,
            budgets=budgets,
            anchors=anchors,
            scrubber=scrubber,
            headers=headers,
        )
        hops.append(hop)
        if hop.failure or hop.status_code not in REDIRECT_CODES or not hop.location:
            return hops, hop.failure
        following = urljoin(current, hop.location.strip())
        nxt = urlsplit(following)
        if nxt.scheme not in ("http", "https") or not nxt.hostname:
            return hops, failures.HTTP_INVALID_REDIRECT
        current, ip = following, None
        if nxt.hostname == urlsplit(hop.url).hostname and nxt.scheme == urlsplit(hop.url).scheme:
            ip = hop.address.rsplit(":", 1)[0].strip("[]")
    return hops, failures.HTTP_TOO_MANY_REDIRECTS
