"""The probe's built-in configuration for the real internet, and the file that overrides it.

``defaults.toml`` beside this module names public resolvers of several operators, controls
tried in order, a throughput reference, STUN servers, the geolocation database and the check-in
services. A user file (``--config FILE``, else ``$XDG_CONFIG_HOME/censorwatch/probe.toml``)
replaces any of its keys. Every value is checked when loaded, so a typo fails with the file and
the key rather than as a strange measurement.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Bytes read from a configuration file at most: it is a few hundred bytes long.
MAX_CONFIG_BYTES = 256 * 1024

#: Every table and key a configuration file may have, and its kind.
_SCHEMA: dict[str, dict[str, type]] = {
    "dns": {"udp": list, "doh": list, "dot": list},
    "control": {"urls": list},
    "throughput": {"reference_url": str},
    "geolocation": {"stun": list, "database": str, "public_prefixes": list},
    "checkin": {"urls": list},
    "workarounds": {"enabled": bool},
}


#: A host name as a certificate names it: dot-separated labels of letters, digits, hyphens.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")
DOT_PORT = 853


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; names the file and the key."""


@dataclass(frozen=True)
class DoTResolver:
    """A DNS-over-TLS resolver (RFC 7858): the address connected to and the name its
    certificate must carry. A DoT client connects to an address, so it needs both; a name
    alone would have to be resolved first, by the very resolver a censor may be lying through."""

    address: str
    port: int
    name: str

    @classmethod
    def parse(cls, value: str) -> DoTResolver:
        """``ADDRESS[:PORT]#NAME`` (systemd-resolved's spelling: ``1.1.1.1#cloudflare-dns.com``,
        ``[2001:db8::1]:853#dns.example``); ValueError when it is not one."""
        where, sep, name = value.strip().partition("#")
        if not sep or not _HOST_NAME.fullmatch(name.rstrip(".")):
            raise ValueError(f"{value!r} is not ADDRESS[:PORT]#NAME")
        host, port = where, str(DOT_PORT)
        if where.startswith("["):
            host, _, rest = where[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{value!r} is not ADDRESS[:PORT]#NAME")
                port = rest[1:]
        elif where.count(":") == 1:
            host, port = where.split(":")
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r}: {port!r} is not a port")
        return cls(address, int(port), name.rstrip(".").lower())

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}#{self.name}"


@dataclass(frozen=True)
class ProbeDefaults:
    """The values a probe falls back on when neither options nor environment name them."""

    udp_resolvers: tuple[str, ...] = ()
    doh_urls: tuple[str, ...] = ()
    dot_resolvers: tuple[DoTResolver, ...] = ()
    control_urls: tuple[str, ...] = ()
    reference_url: str = ""
    stun_servers: tuple[str, ...] = ()
    geo_database: str = ""
    public_prefixes: tuple[str, ...] = ()
    checkin_urls: tuple[str, ...] = ()
    workarounds: bool = True  # try the ways around a block once one is seen
    sources: tuple[str, ...] = field(default=(), compare=False)  # the files read, in order


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/censorwatch/probe.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "censorwatch" / "probe.toml"


def default_geo_dir() -> Path:
    """Where ``censorwatch geo sync`` writes by default: ``$XDG_DATA_HOME/censorwatch/geoip``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "censorwatch" / "geoip"


def _read(text: str, label: str) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{label}: not valid TOML ({exc})") from None
    for table, values in data.items():
        if table not in _SCHEMA:
            known = ", ".join(sorted(_SCHEMA))
            raise ConfigFileError(f"{label}: unknown table [{table}] (known: {known})")
        if not isinstance(values, dict):
            raise ConfigFileError(f"{label}: [{table}] must be a table")
        for key, value in values.items():
            kind = _SCHEMA[table].get(key)
            if kind is None:
                known = ", ".join(sorted(_SCHEMA[table]))
                raise ConfigFileError(f"{label}: [{table}] has no key {key!r} (known: {known})")
            if not isinstance(value, kind) or (
                kind is list and not all(isinstance(v, str) for v in value)
            ):
                what = {list: "a list of strings", bool: "true or false"}.get(kind, "a string")
                raise ConfigFileError(f"{label}: [{table}] {key} must be {what}")
            _check_value(table, key, value, label)
    return data


def _check_value(table: str, key: str, value: Any, label: str) -> None:
    where = f"{label}: [{table}] {key}"
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not item:
            continue
        if key in ("doh", "urls", "reference_url"):
            parts = urlsplit(item)
            if parts.scheme != "https" or not parts.hostname:
                raise ConfigFileError(f"{where}: {item!r} is not an https:// URL")
        elif key == "dot":
            try:
                DoTResolver.parse(item)
            except ValueError as exc:
                raise ConfigFileError(f"{where}: {exc}") from None
        elif key in ("udp", "stun"):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigFileError(f"{where}: {item!r} is not HOST:PORT")
        elif key == "public_prefixes":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ConfigFileError(f"{where}: {item!r} is not an address prefix") from None


def _file_text(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8") from None


def load(path: str | os.PathLike[str] | None = None) -> ProbeDefaults:
    """The shipped defaults, overridden by ``path`` (which must exist) or, when None, by the
    user file if there is one."""
    shipped = resources.files("censorwatch.probe") / "defaults.toml"
    merged = _read(shipped.read_text(encoding="utf-8"), "defaults.toml")
    sources = ["defaults.toml"]
    override = Path(path) if path is not None else user_config_path()
    if path is not None or override.is_file():
        for table, values in _read(_file_text(override), str(override)).items():
            merged.setdefault(table, {}).update(values)
        sources.append(str(override))

    def get(table: str, key: str, default: Any) -> Any:
        return merged.get(table, {}).get(key, default)

    return ProbeDefaults(
        udp_resolvers=tuple(get("dns", "udp", [])),
        doh_urls=tuple(get("dns", "doh", [])),
        dot_resolvers=tuple(DoTResolver.parse(v) for v in get("dns", "dot", []) if v),
        control_urls=tuple(get("control", "urls", [])),
        reference_url=get("throughput", "reference_url", ""),
        stun_servers=tuple(get("geolocation", "stun", [])),
        geo_database=get("geolocation", "database", ""),
        public_prefixes=tuple(get("geolocation", "public_prefixes", [])),
        checkin_urls=tuple(get("checkin", "urls", [])),
        workarounds=bool(get("workarounds", "enabled", True)),
        sources=tuple(sources),
    )


__all__ = [
    "ConfigFileError",
    "DoTResolver",
    "ProbeDefaults",
    "default_geo_dir",
    "load",
    "user_config_path",
]
