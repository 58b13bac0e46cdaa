"""A small HTTP/1.1 server (h11 over asyncio) for the emulated internet's web sites.

Real servers are what the probe must face, so this one speaks real HTTP and TLS with a
certificate per name chosen by SNI, and a default certificate when no SNI is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
READ_TIMEOUT = 10.0


@dataclass
class Request:
    method: str
    target: str
    host: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: tuple[str, int]
    local: tuple[str, int]
    server_name: str | None = None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes] = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None


Handler = Callable[[Request], Awaitable[Response]]


def html_page(
    status: int, title: str, text: str, extra_headers: list[tuple[str, str]] | None = None
) -> Response:
    body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{text}</p>\n</body></html>\n"
    ).encode()
    headers = [("Content-Type", "text/html; charset=utf-8"), *(extra_headers or [])]
    return Response(status, body, headers)


def server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def sni_context(
    by_name: dict[str, tuple[Path, Path]], default: tuple[Path, Path]
) -> ssl.SSLContext:
    """A server context that presents the certificate of the name the client asked for."""
    contexts = {name: server_context(*files) for name, files in by_name.items()}
    main = server_context(*default)

    def choose(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name and server_name.lower() in contexts:
            sock.context = contexts[server_name.lower()]

    main.sni_callback = choose
    return main


async def _send(writer: asyncio.StreamWriter, conn: h11.Connection, event: object) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    peer = writer.get_extra_info("peername") or ("", 0)
    local = writer.get_extra_info("sockname") or ("", 0)
    ssl_object = writer.get_extra_info("ssl_object")
    server_name = getattr(ssl_object, "server_hostname", None) if ssl_object else None
    try:
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_REQUEST_BYTES:
                        raise h11.RemoteProtocolError("request body too large")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            assert request is not None
            headers = [
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers
            ]
            host = next((v for k, v in headers if k == "host"), "")
            req = Request(
                method=request.method.decode(),
                target=request.target.decode("latin-1"),
                host=host.split(":")[0].lower(),
                headers=headers,
                body=body,
                peer=tuple(peer[:2]),
                local=tuple(local[:2]),
                server_name=server_name,
            )
            try:
                response = await handler(req)
            except Exception:
                log.exception("handler failed for %s %s", req.host, req.target)
                response = html_page(500, "Internal Server Error", "The page failed.")
            out_headers = list(response.headers)
            if isinstance(response.body, bytes):
                out_headers.append(("Content-Length", str(len(response.body))))
            elif response.content_length is not None:
                out_headers.append(("Content-Length", str(response.content_length)))
            out_headers.append(("Server", "testbed"))
            await _send(
                writer, conn, h11.Response(status_code=response.status, headers=out_headers)
            )
            if request.method != b"HEAD":
                if isinstance(response.body, bytes):
                    if response.body:
                        await _send(writer, conn, h11.Data(data=response.body))
                else:
                    async for chunk in response.body:
                        await _send(writer, conn, h11.Data(data=chunk))
            await _send(writer, conn, h11.EndOfMessage())
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
        log.debug("protocol error from %s: %s", peer, exc)
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await _send(
                    writer,
                    conn,
                    h11.Response(
                        status_code=400, headers=[("Content-Length", "0"), ("Connection", "close")]
                    ),
                )
                await _send(writer, conn, h11.EndOfMessage())
            except Exception:
                pass
    except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def serve_http(
    host: str, port: int, handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, handler)

    tls_options = {"ssl": ssl_context, "ssl_handshake_timeout": 10} if ssl_context else {}
    return await asyncio.start_server(on_client, host, port, backlog=512, **tls_options)
