"""Ask the control service what the same URL looks like from an uncensored vantage.

Speaks OONI's web-connectivity test-helper protocol, so the control can be censorwatch's own
(``censorwatch control serve``) or any OONI test helper.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from censorwatch import failures
from censorwatch.netinfo import is_special
from censorwatch.probe.http import DEFAULT_HEADERS
from censorwatch.scrub import Scrubber


def root_cause(exc: BaseException) -> BaseException:
    """The OS or TLS error underneath an httpx/anyio wrapper, when there is one."""
    seen: set[int] = set()
    todo = [exc]
    fallback: BaseException = exc
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current) is OSError and current.errno is None:
            fallback = current  # a summary ("all connection attempts failed"): look deeper
        elif isinstance(current, OSError | TimeoutError | ssl.SSLError):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return fallback


def build_request(url: str, endpoints: list[str], *, quic: bool = False) -> dict[str, Any]:
    """The request body OONI Probe sends (``x_control_request`` in the measurement)."""
    return {
        "http_request": url,
        "http_request_headers": {name: [value] for name, value in DEFAULT_HEADERS},
        "tcp_connect": sorted(set(endpoints)),
        "x_quic_enabled": quic,
    }


def is_reserved_host(url: str) -> bool:
    """True when the control URL names ``localhost`` or a special address (``netinfo``)."""
    host = urlsplit(url).hostname or ""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return is_special(host)
    except ValueError:
        return False


#: Statuses a busy control answers with; the request is repeated after its Retry-After.
BUSY_STATUSES = frozenset({429, 503})
#: Wait between attempts when a busy control names no Retry-After (or an unusable one).
DEFAULT_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 5.0


class _Busy(Exception):
    """The control asked us to come back later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"control busy; retry after {retry_after} s")
        self.retry_after = retry_after


def retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds only), bounded."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER
    if not seconds >= 0:  # also rejects NaN
        seconds = DEFAULT_RETRY_AFTER
    return min(seconds, MAX_RETRY_AFTER)


async def query(
    control_url: str,
    request: dict[str, Any],
    *,
    verify: ssl.SSLContext,
    timeout: float,
    max_bytes: int,
    scrubber: Scrubber | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """POST the request; returns (response, None) or (None, failure).

    A busy control (503/429) is asked again after its Retry-After for as long as ``timeout``
    allows, so a burst of probes does not turn into missing controls; when time runs out the
    failure says the control was busy.
    """
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    body = json.dumps(request).encode()
    busy = False
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False) as client,
        ):
            while True:
                try:
                    data = await _post_once(client, control_url, body, max_bytes, scrubber)
                except _Busy as wait:
                    busy = True
                    if loop.time() + wait.retry_after >= deadline:
                        return None, failures.CONTROL_BUSY
                    await asyncio.sleep(wait.retry_after)
                    continue
                if isinstance(data, str):
                    return None, data
                break
    except (TimeoutError, httpx.TimeoutException):
        return None, failures.CONTROL_BUSY if busy else failures.GENERIC_TIMEOUT
    except httpx.HTTPError as exc:
        return None, failures.classify(root_cause(exc))
    except OSError as exc:
        return None, failures.classify(exc)
    try:
        decoded = json.loads(data)
    except ValueError:
        return None, failures.HTTP_PROTOCOL_ERROR
    if not isinstance(decoded, dict):
        return None, failures.HTTP_PROTOCOL_ERROR
    return decoded, None


async def _post_once(
    client: Any, control_url: str, body: bytes, max_bytes: int, scrubber: Scrubber | None
) -> bytes | str:
    """One POST: the body (at most ``max_bytes``), or a failure string; raises _Busy."""
    async with client.stream(
        "POST",
        control_url,
        content=body,
        headers={"content-type": "application/json", "accept": "application/json"},
    ) as response:
        if scrubber is not None:
            scrubber.learn_stream(response)
        if response.status_code in BUSY_STATUSES:
            raise _Busy(retry_after(response.headers.get("retry-after")))
        if response.status_code != 200:
            return failures.CONTROL_HTTP_ERROR
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > max_bytes:
                return failures.HTTP_PROTOCOL_ERROR
        return bytes(data)
