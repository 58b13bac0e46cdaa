"""The address a request came from: the connection's, or a trusted reverse proxy's word for it.

The collector looks this address up (AS and country) and then lets it go; nothing here keeps
it. ``X-Forwarded-For`` is believed only when the connection comes from a proxy the operator
named (``CENSORWATCH_TRUSTED_PROXIES``: comma-separated addresses or CIDR ranges), and then
only as far as the chain of named proxies reaches: the rightmost address that is not one of
them is the client. Anyone can write the header, so without a named proxy it is ignored.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from starlette.requests import Request

from censorwatch.netinfo import IPNetwork, parse_address

TRUSTED_PROXIES_ENV = "CENSORWATCH_TRUSTED_PROXIES"
#: Entries of ``X-Forwarded-For`` read at most (a longer header is cut from the left).
MAX_FORWARDED = 16


class ProxyConfigError(ValueError):
    """``CENSORWATCH_TRUSTED_PROXIES`` holds something that is no address or range."""


def trusted_proxies(text: str | None = None) -> tuple[IPNetwork, ...]:
    """The ranges named by ``text`` (default: ``CENSORWATCH_TRUSTED_PROXIES``); none if unset."""
    raw = os.environ.get(TRUSTED_PROXIES_ENV, "") if text is None else text
    out = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            message = f"{TRUSTED_PROXIES_ENV}: not an address or range: {item!r}"
            raise ProxyConfigError(message) from None
    return tuple(out)


def _trusted(address: str, proxies: Iterable[IPNetwork]) -> bool:
    addr = parse_address(address)
    return addr is not None and any(addr in net for net in proxies if net.version == addr.version)


def client_address(request: Request, proxies: tuple[IPNetwork, ...] = ()) -> str | None:
    """The client's address: the connection's, unless it is a trusted proxy; then the
    rightmost ``X-Forwarded-For`` entry that is not a trusted proxy (None if that entry is
    no address)."""
    peer = request.client.host if request.client else None
    if not peer or not proxies or not _trusted(peer, proxies):
        return peer
    header = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [h.strip() for h in header.split(",") if h.strip()][-MAX_FORWARDED:]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            addr = parse_address(hop)
            return str(addr) if addr is not None else None
    return peer


def request_address(request: Request) -> str | None:
    """The client's address under the app's trusted proxies (``app.state.trusted_proxies``)."""
    return client_address(request, getattr(request.app.state, "trusted_proxies", ()))


__all__ = ["ProxyConfigError", "client_address", "request_address", "trusted_proxies"]
