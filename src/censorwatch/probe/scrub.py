"""Remove the probe's own IP addresses from a measurement before it leaves the probe.

A probe may run where measuring is dangerous. Its addresses are learned from the local end
(``getsockname``) of every socket it opens and from the host's interface addresses; every
occurrence in any string (bodies, headers, answers, dictionary keys) becomes ``[scrubbed]``,
OONI's convention. ``probe_ip`` is then set to ``127.0.0.1``, as OONI does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from pathlib import Path
from typing import Any

SCRUBBED = "[scrubbed]"
PROBE_IP_PLACEHOLDER = "127.0.0.1"


def _normalise(ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def interface_addresses() -> set[str]:
    """The host's non-loopback interface addresses (Linux /proc; empty elsewhere)."""
    found: set[str] = set()
    try:
        trie = Path("/proc/net/fib_trie").read_text(encoding="ascii", errors="replace")
    except OSError:
        trie = ""
    previous = ""
    for line in trie.splitlines():
        stripped = line.strip()
        if stripped.startswith("/32 host LOCAL") and previous.startswith("|--"):
            found.add(previous.split()[-1])
        previous = stripped
    try:
        v6 = Path("/proc/net/if_inet6").read_text(encoding="ascii", errors="replace")
    except OSError:
        v6 = ""
    for line in v6.splitlines():
        raw = line.split()[0] if line.split() else ""
        if len(raw) == 32:
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    return {a for a in found if not ipaddress.ip_address(a).is_loopback}


class Scrubber:
    """Collects the probe's addresses while measuring, then scrubs a measurement in place."""

    def __init__(self, addresses: set[str] | None = None, *, interfaces: bool = True) -> None:
        self._addresses: set[str] = set()
        for ip in addresses or ():
            self.add(ip)
        if interfaces:
            for ip in interface_addresses():
                self.add(ip)
        self._pattern: re.Pattern[str] | None = None

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(self._addresses)

    def add(self, ip: str) -> None:
        norm = _normalise(ip)
        if norm and norm not in self._addresses and norm not in ("0.0.0.0", "::"):
            self._addresses.add(norm)
            self._pattern = None

    def learn(self, sock: socket.socket | None) -> None:
        """Record the local address of ``sock`` unless the peer is the probe itself."""
        if sock is None:
            return
        try:
            local = sock.getsockname()[0]
        except OSError:
            return
        try:
            peer = sock.getpeername()[0]
        except OSError:
            peer = None
        # A connection to oneself (e.g. a resolver that answered 127.0.0.1) is evidence of
        # tampering, not the probe's identity: keep that address readable.
        if peer is not None and _normalise(peer) == _normalise(local):
            return
        self.add(local)

    def learn_stream(self, response: Any) -> None:
        """Learn from the connection behind an httpx response (DoH, control)."""
        stream = getattr(response, "extensions", {}).get("network_stream")
        if stream is not None:
            with contextlib.suppress(AttributeError, OSError):
                self.learn(stream.get_extra_info("socket"))

    def _regex(self) -> re.Pattern[str] | None:
        if not self._addresses:
            return None
        if self._pattern is None:
            alternatives = []
            for ip in sorted(self._addresses, key=len, reverse=True):
                if ":" in ip:
                    alternatives.append(r"(?<![0-9A-Fa-f:])" + re.escape(ip) + r"(?![0-9A-Fa-f:])")
                else:
                    alternatives.append(r"(?<![0-9.])" + re.escape(ip) + r"(?![0-9]|\.[0-9])")
            self._pattern = re.compile("|".join(alternatives), re.IGNORECASE)
        return self._pattern

    def text(self, value: str) -> str:
        regex = self._regex()
        return value if regex is None else regex.sub(SCRUBBED, value)

    def scrub(self, obj: Any) -> Any:
        """A copy of ``obj`` (JSON-like) with every probe address replaced."""
        if self._regex() is None:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {
                (self.text(k) if isinstance(k, str) else k): self.scrub(v) for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.scrub(v) for v in obj]
        return obj
