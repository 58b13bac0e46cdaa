"""Which platform a host belongs to, read from the platform profiles (``targets/profiles``).

A platform groups registrable domains (X = x.com, twitter.com, twimg.com, t.co); a host belongs
to it when it equals one of them or is a subdomain of one. Events are detected per host and per
platform, so a block of the whole platform reads as one line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Platform:
    name: str
    display_name: str
    domains: tuple[str, ...]

    def owns(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == d or host.endswith("." + d) for d in self.domains)


def _from_toml(data: dict) -> Platform:
    name = str(data["name"])
    domains = tuple(str(d).lower().rstrip(".") for d in data.get("domains", ()))
    return Platform(name=name, display_name=str(data.get("display_name", name)), domains=domains)


def load_platforms(paths: Iterable[str | Path] | None = None) -> list[Platform]:
    """Profiles from the given TOML files, or the ones shipped with censorwatch."""
    if paths is not None:
        return [_from_toml(tomllib.loads(Path(p).read_text())) for p in paths]
    folder = resources.files("censorwatch.targets") / "profiles"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            found.append(_from_toml(tomllib.loads(entry.read_text())))
    return found


def host_of(target: str | None, url: str | None) -> str | None:
    """The host a verdict is about: its ``target``, else the host of its ``input`` URL."""
    if target:
        host = target.strip().lower().rstrip(".")
        if "://" in host:
            host = urlsplit(host).hostname or ""
        return host or None
    if url:
        return (urlsplit(url).hostname or "").lower().rstrip(".") or None
    return None


def platforms_of(host: str, platforms: Iterable[Platform]) -> list[str]:
    return [p.name for p in platforms if p.owns(host)]
