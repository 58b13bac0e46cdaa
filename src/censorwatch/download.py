"""One bounded HTTP download: the bytes of one URL within a byte budget and a deadline.

Every command that fetches a published file (``geo sync``, ``targets sync``) refuses the same
way: a status other than 200, a declared or streamed size over the budget, a deadline passed
while streaming, and the transport's own failures, each named with the URL. Callers turn
``DownloadError`` into their own error so that a user sees which command failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


class DownloadError(Exception):
    """The URL could not be fetched within its bounds; the message says why."""


class NotPublished(DownloadError):
    """HTTP 404: the file is not (or not yet) published there."""


@dataclass
class Budget:
    """Bounds shared by the downloads of one run: bytes per file, bytes in all, and the
    monotonic time by which the whole run must be done (``seconds`` is its length, for the
    message)."""

    max_file: int
    deadline: float
    seconds: float
    max_total: int | None = None
    used: int = 0

    @classmethod
    def starting_now(cls, max_file: int, seconds: float, max_total: int | None = None) -> Budget:
        return cls(max_file, time.monotonic() + seconds, seconds, max_total)


def fetch(client: Any, url: str, budget: Budget, *, raw: bool = False) -> bytes:
    """The body of ``url`` (an ``httpx.Client``), counted against ``budget``. ``raw`` keeps
    the bytes as sent (no content-encoding undone), for files that are compressed anyway."""
    import httpx

    try:
        with client.stream("GET", url) as response:
            if response.status_code == 404:
                raise NotPublished(f"{url}: not published (HTTP 404)")
            if response.status_code != 200:
                raise DownloadError(f"{url}: HTTP status {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > budget.max_file:
                raise DownloadError(f"{url}: refused: {declared} bytes is over {budget.max_file}")
            chunks, size = [], 0
            for chunk in response.iter_raw() if raw else response.iter_bytes():
                size += len(chunk)
                budget.used += len(chunk)
                if size > budget.max_file:
                    raise DownloadError(f"{url}: refused: more than {budget.max_file} bytes")
                if budget.max_total is not None and budget.used > budget.max_total:
                    raise DownloadError(f"{url}: refused: the run passed {budget.max_total} bytes")
                if time.monotonic() > budget.deadline:
                    raise DownloadError(f"{url}: refused: took more than {budget.seconds:g} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.ConnectError as exc:
        raise DownloadError(f"{url}: cannot connect (offline?): {exc}") from None
    except httpx.TimeoutException as exc:
        raise DownloadError(f"{url}: timed out: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"{url}: {type(exc).__name__}: {exc}") from None
