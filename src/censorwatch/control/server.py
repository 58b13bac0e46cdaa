"""The control's HTTP face: a plain ASGI application served by uvicorn.

One endpoint (``POST /``, OONI's path) does not need a framework's routing; a bare ASGI app
enforces the request-size cap while the body streams in (never buffering more than the cap)
and keeps the server's import light. uvicorn supplies the HTTP/1.1 parser, TLS and its own
connection limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

from censorwatch.control.service import (
    MAX_REQUEST_BYTES,
    BadRequest,
    ControlSettings,
    measure,
)

log = logging.getLogger("censorwatch.control")
SERVER_HEADER = b"censorwatch-control"
MAX_INFLIGHT = 32
#: How long a request may wait for a free measurement slot before it is told to come back later.
#: Probes arrive in bursts (every URL of a run at once); a short queue absorbs a burst that an
#: immediate "busy" would turn into lost controls.
QUEUE_WAIT = 10.0
RETRY_AFTER_SECONDS = 2


class ControlApp:
    """ASGI callable answering web-connectivity control requests."""

    def __init__(
        self,
        settings: ControlSettings,
        *,
        max_request: int = MAX_REQUEST_BYTES,
        max_inflight: int = MAX_INFLIGHT,
        queue_wait: float = QUEUE_WAIT,
    ) -> None:
        self.settings = settings
        self.max_request = max_request
        self.max_inflight = max_inflight
        self.queue_wait = queue_wait
        self.inflight = 0
        self._slots: asyncio.Semaphore | None = None

    def _slot_pool(self) -> asyncio.Semaphore:
        # Created lazily so that it belongs to the server's event loop, not the constructor's.
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_inflight)
        return self._slots

    async def _acquire_slot(self) -> bool:
        slots = self._slot_pool()
        try:
            async with asyncio.timeout(self.queue_wait):
                await slots.acquire()
        except TimeoutError:
            return False
        return True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] not in ("/", ""):
            await _reply(send, 404, {"error": "not found; the control answers POST /"})
            return
        if scope["method"] != "POST":
            await _reply(
                send,
                405,
                {"error": "POST a web-connectivity control request"},
                [(b"allow", b"POST")],
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_request:
            await _reply(send, 413, {"error": f"request larger than {self.max_request} bytes"})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_request:
                await _reply(send, 413, {"error": f"request larger than {self.max_request} bytes"})
                return
            if not message.get("more_body"):
                break
        try:
            request = json.loads(body)
        except ValueError:
            await _reply(send, 400, {"error": "request is not JSON"})
            return
        if not await self._acquire_slot():
            url = request.get("http_request") if isinstance(request, dict) else None
            log.warning("busy: %d measurements running; refused %s", self.inflight, url)
            retry = str(RETRY_AFTER_SECONDS).encode()
            await _reply(send, 503, {"error": "busy; retry later"}, [(b"retry-after", retry)])
            return
        self.inflight += 1
        try:
            response = await measure(request, self.settings)
        except BadRequest as exc:
            await _reply(send, 400, {"error": str(exc)})
            return
        except TimeoutError:
            await _reply(send, 504, {"error": "measurement exceeded its deadline"})
            return
        finally:
            self.inflight -= 1
            self._slot_pool().release()
        log.info("measured %s (%d others running)", request.get("http_request"), self.inflight)
        await _reply(send, 200, response)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(
    send: Any, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"server", SERVER_HEADER),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def make_server(
    app: ControlApp,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    log_level: str = "warning",
) -> Any:
    """A uvicorn server for ``app`` (TLS when a certificate is given)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        log_level=log_level,
        lifespan="off",
        access_log=False,
        server_header=False,
        date_header=True,
        limit_concurrency=app.max_inflight * 4,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), IPv6 when ``host`` is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """Runs the control in a thread (for embedding in tests and the demo)."""

    def __init__(self, app: ControlApp, host: str = "127.0.0.1", port: int = 0, **kwargs: Any):
        self.sock = bind(host, port)
        self.server = make_server(app, **kwargs)
        self.scheme = "https" if kwargs.get("certfile") else "http"
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{port}/"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()
