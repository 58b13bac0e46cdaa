"""Ask the control service what the same URL looks like from an uncensored vantage.

Speaks OONI's web-connectivity test-helper protocol, so the control can be censorwatch's own
(``censorwatch control serve``) or any OONI test helper.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from censorwatch import failures
from censorwatch.probe.http import DEFAULT_HEADERS
from censorwatch.probe.scrub import Scrubber


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
    """True when the control URL names an address in a private or special-purpose range."""
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return not addr.is_global


async def query(
    control_url: str,
    request: dict[str, Any],
    *,
    verify: ssl.SSLContext,
    timeout: float,
    max_bytes: int,
    scrubber: Scrubber | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """POST the request; returns (response, None) or (None, failure)."""
    import httpx

    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False) as client,
            client.stream(
                "POST",
                control_url,
                content=json.dumps(request).encode(),
                headers={"content-type": "application/json", "accept": "application/json"},
            ) as response,
        ):
            if scrubber is not None:
                scrubber.learn_stream(response)
            data = b""
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    return None, failures.HTTP_PROTOCOL_ERROR
            if response.status_code != 200:
                return None, failures.HTTP_PROTOCOL_ERROR
    except (TimeoutError, httpx.TimeoutException):
        return None, failures.GENERIC_TIMEOUT
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
