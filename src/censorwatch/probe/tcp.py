"""TCP connect with a deadline, recorded as an OONI ``tcp_connect`` entry."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from censorwatch import failures
from censorwatch.scrub import Scrubber

STREAM_LIMIT = 64 * 1024  # asyncio's reader buffer: never grows past this


@dataclass
class TCPResult:
    ip: str
    port: int
    t0: float
    t: float
    failure: str | None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    def to_entry(self, transaction_id: int, tags: list[str]) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "port": self.port,
            "status": {"blocked": None, "failure": self.failure, "success": self.failure is None},
            "t0": round(self.t0, 6),
            "t": round(self.t, 6),
            "tags": tags,
            "transaction_id": transaction_id,
        }

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None


async def connect(
    ip: str, port: int, *, clock: float, timeout: float, scrubber: Scrubber | None = None
) -> TCPResult:
    """Open a TCP connection; the caller owns (and must close) the streams on success."""
    t0 = time.monotonic() - clock
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(ip, port, limit=STREAM_LIMIT)
    except (OSError, TimeoutError) as exc:
        return TCPResult(ip, port, t0, time.monotonic() - clock, failures.classify(exc))
    if scrubber is not None:
        scrubber.learn(writer.get_extra_info("socket"))
    return TCPResult(ip, port, t0, time.monotonic() - clock, None, reader, writer)


def endpoint(ip: str, port: int) -> str:
    """OONI's ``ip:port`` spelling (brackets for IPv6)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
