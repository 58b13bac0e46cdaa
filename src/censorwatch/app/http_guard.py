"""Read deadlines for the HTTP server: a client that sends slowly cannot hold a connection.

uvicorn waits for a request's head and body as long as the client keeps the socket open, and
any byte cancels its keep-alive timer, so a client trickling a byte a second holds a
connection for ever. ``guarded_h11(limits)`` is uvicorn's h11 protocol with three rules:

* **head**: a request's line and headers must arrive within ``head_timeout`` seconds of its
  first byte (of the connection's opening, for a new connection);
* **body**: a body gets ``body_timeout`` seconds plus one second per ``body_min_rate`` bytes
  received (Apache's ``mod_reqtimeout`` rule), so a client keeps its connection only by
  sending at least at the minimum rate; after a response sent before the body is complete
  (a refusal), the rest is read and dropped under the same rule, up to ``max_drain`` bytes;
* **at most ``max_waiting`` connections wait on their client** (a head or body in progress,
  or idle between requests); a new connection beyond that closes the one waiting longest.
  Connections whose request the application is working on are never closed by this rule.

A client that misses a deadline before any response gets ``408 Request Timeout`` and the
connection is closed; the application, if it was reading the body, sees a disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadLimits:
    """How long a client may take to send a request (see the module's rules)."""

    head_timeout: float = 10.0
    body_timeout: float = 20.0
    body_min_rate: int = 4096  # bytes per second
    max_waiting: int = 256
    max_drain: int = 32 * 1024 * 1024

    def body_deadline(self, started: float, received: int) -> float:
        return started + self.body_timeout + received / self.body_min_rate


def _timeout_response(reason: str) -> bytes:
    body = f"request timeout: {reason}\n".encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def guarded_h11(limits: ReadLimits) -> type[H11Protocol]:
    """An h11 protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``.

    Each call makes a class with its own registry of waiting connections (one per server).
    """
    import h11  # uvicorn's own parser; imported here so the command line starts fast
    from uvicorn.protocols.http.h11_impl import H11Protocol

    # Connections waiting on their client, oldest first (a dict keeps insertion order).
    waiting: dict[GuardedH11Protocol, None] = {}

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._phase = "idle"  # idle | head | body | drain | app
            self._phase_started = 0.0
            self._body_received = 0
            self._deadline: asyncio.TimerHandle | None = None

        # -- the phases ------------------------------------------------------------------
        def _enter(self, phase: str) -> None:
            if phase == self._phase:
                return
            self._phase = phase
            self._phase_started = time.monotonic()
            self._body_received = 0
            waiting.pop(self, None)
            if phase != "app":
                waiting[self] = None  # re-inserted: now the newest
            self._arm()

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if self._phase == "head":
                due = self._phase_started + limits.head_timeout
            elif self._phase in ("body", "drain"):
                due = limits.body_deadline(self._phase_started, self._body_received)
            else:
                return
            delay = max(0.0, due - time.monotonic())
            self._deadline = self.loop.call_later(delay, self._on_deadline)

        def _on_deadline(self) -> None:
            self._deadline = None
            if self._phase in ("body", "drain"):
                due = limits.body_deadline(self._phase_started, self._body_received)
                if time.monotonic() < due:  # it kept up with the minimum rate: check later
                    self._arm()
                    return
                self._drop("body too slow")
            elif self._phase == "head":
                self._drop("request head too slow")

        def _settle(self) -> None:
            """Move to the phase h11's view of the client implies."""
            if self.transport is None or self.transport.is_closing():
                return
            their = self.conn.their_state
            if their is h11.SEND_BODY:
                self._enter("drain" if self.conn.our_state is h11.DONE else "body")
            elif their is h11.IDLE:
                if self._phase not in ("head", "idle"):
                    self._enter("idle")
            else:
                self._enter("app")

        def _drop(self, reason: str | None) -> None:
            """Close the connection; a 408 first if nothing was answered yet."""
            if self.transport is None or self.transport.is_closing():
                return
            if reason is not None:
                log.debug("closing %s: %s", self.client, reason)
                # A request in progress and nothing answered yet (an idle connection between
                # requests is closed silently: a 408 there could be read as the next answer).
                answerable = self._phase in ("head", "body")
                if answerable and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    if self.cycle is not None and not self.cycle.response_complete:
                        self.cycle.disconnected = True  # the app's answer, if any, is dropped
                    self.transport.write(_timeout_response(reason))
            self.transport.close()

        # -- uvicorn's protocol ----------------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._enter("head")  # a connection that sends nothing is a slow head too
            while len(waiting) > limits.max_waiting:
                oldest = next(iter(waiting))
                waiting.pop(oldest)
                oldest._drop("too many connections waiting on their clients")

        def data_received(self, data: bytes) -> None:
            if self._phase == "idle":
                self._enter("head")
            elif self._phase in ("body", "drain"):
                self._body_received += len(data)
                if self._phase == "drain" and self._body_received > limits.max_drain:
                    self._drop(None)
                    return
            super().data_received(data)
            self._settle()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._settle()

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._phase = "closed"
            super().connection_lost(exc)

    return GuardedH11Protocol
