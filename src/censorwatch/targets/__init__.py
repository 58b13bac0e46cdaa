"""Where to look: Citizen Lab test lists and platform profiles, turned into probe targets."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    """One URL to measure, with what the source knows about it."""

    url: str
    category_code: str = ""
    media: bool = False  # a platform's media host: measure throughput too
    throughput_path: str | None = None
    source: str = ""  # "url", "file:line" or "profile:name"


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be measured, or None when it can."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if not parts.hostname:
        return "no host name"
    if port == 0:
        return "port 0"
    return None
