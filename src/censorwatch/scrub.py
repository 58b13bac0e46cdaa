"""Remove a probe's own IP addresses from a measurement: the one scrubber of the probe and the
collector.

A probe may run where measuring is dangerous, so its address must appear in nothing stored or
published. An address hides in many spellings: IPv4; IPv6 compressed, partially compressed,
unpadded, fully written, in any case; IPv4-mapped and NAT64 IPv6, dotted or in hex; in
brackets with a port, in URLs with percent-encoded separators. Every spelling of every given
address, in keys and values alike, becomes ``[scrubbed]`` (OONI's convention), with match
boundaries that keep ``1.2.3.4`` from eating ``11.2.3.45``.

The probe learns its addresses from the local end of every socket it opens and from the host's
interfaces (:class:`Scrubber`); the collector scrubs the submitter's address and the
measurement's ``probe_ip`` (:func:`scrub_submission`), leaving addresses that identify nobody
(loopback, unspecified) alone: they are often the evidence.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import re
import socket
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from censorwatch.netinfo import IPAddress, identifies_nobody, parse_address

SCRUBBED = "[scrubbed]"
#: What ``probe_ip`` says once scrubbed, as in OONI's measurements.
PROBE_IP_PLACEHOLDER = "127.0.0.1"

_COLON = "(?::|%3a)"
_DOT = r"(?:\.|%2e)"
# Not inside a longer number or a longer hexadecimal group (a percent escape before is fine).
_AFTER_ESCAPE = "(?<=%[0-9a-f]{2})"
_V4_BEFORE = rf"(?:(?<![0-9.])|{_AFTER_ESCAPE})(?<!%2e)"
_V4_AFTER = rf"(?![0-9]|{_DOT}[0-9])"
_V6_BEFORE = rf"(?:(?<![0-9a-f])|{_AFTER_ESCAPE})"
_V6_AFTER = rf"(?![0-9a-f]|{_DOT}[0-9])"
# A run of the characters addresses are written with; every spelling lies inside one.
_RUN = re.compile("(?:[0-9a-f:.]|%3a|%2e)+", re.IGNORECASE)
_NAT64_PREFIX = int(ipaddress.IPv6Address("64:ff9b::"))
_MAPPED_PREFIX = 0xFFFF << 32


def _dotted(value: int) -> str:
    return _DOT.join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _group(value: int) -> str:
    """One IPv6 group, with or without its leading zeros."""
    digits = f"{value:x}"
    return digits if len(digits) == 4 else f"0{{0,{4 - len(digits)}}}{digits}"


def _compressions(groups: list[int]) -> list[tuple[str, bool]]:
    """Every way of writing ``groups``: uncompressed, or any run of zero groups as ``::``.

    Each form comes with whether it ends in ``::`` (then a dotted tail follows directly)."""
    forms = [(_COLON.join(_group(g) for g in groups), False)]
    for start in range(len(groups)):
        for end in range(start + 1, len(groups) + 1):
            if any(groups[start:end]):
                break
            left = _COLON.join(_group(g) for g in groups[:start])
            right = _COLON.join(_group(g) for g in groups[end:])
            forms.append((f"{left}{_COLON}{_COLON}{right}", end == len(groups)))
    return forms


def _ipv6_spellings(value: int) -> list[str]:
    """Regular expressions for every spelling of one IPv6 address (hex or dotted tail)."""
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    spellings = [form for form, _ in _compressions(groups)]
    tail = _dotted(value & 0xFFFFFFFF)
    for form, open_end in _compressions(groups[:6]):
        spellings.append(form + tail if open_end else f"{form}{_COLON}{tail}")
    return [f"{_V6_BEFORE}{s}{_V6_AFTER}" for s in dict.fromkeys(spellings)]


@lru_cache(maxsize=1024)
def spellings(address: IPAddress) -> tuple[str, ...]:
    """Regular expressions (case-insensitive) matching every spelling of ``address``."""
    if isinstance(address, ipaddress.IPv6Address):
        return tuple(_ipv6_spellings(int(address)))
    value = int(address)
    return (
        *_ipv6_spellings(_MAPPED_PREFIX | value),
        *_ipv6_spellings(_NAT64_PREFIX | value),
        f"{_V4_BEFORE}{_dotted(value)}{_V4_AFTER}",
    )


def _anchors(address: IPAddress) -> set[str]:
    """Lower-case text every spelling of ``address`` contains at least one of: strings without
    any are not searched (most strings of a measurement)."""
    value = int(address)
    if isinstance(address, ipaddress.IPv4Address):
        low = value & 0xFFFF
        return {f"{(low >> 8)}.{low & 0xFF}", f"{(low >> 8)}%2e{low & 0xFF}", f"{low:x}"}
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(6)]
    if not any(groups):
        return {":", "%3a"}
    return {f"{max(groups):x}"}


class Scrubber:
    """The addresses to remove, and the removal: ``scrub`` returns a scrubbed copy of any
    JSON-like value (keys included)."""

    def __init__(self, addresses: Iterable[str] = (), *, interfaces: bool = True) -> None:
        self._addresses: set[IPAddress] = set()
        self._pattern: re.Pattern[str] | None = None
        self._anchor_set: frozenset[str] = frozenset()
        for ip in addresses:
            self.add(ip)
        if interfaces:
            for ip in interface_addresses():
                self.add(ip)

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(str(a) for a in self._addresses)

    def add(self, ip: str) -> None:
        """Scrub ``ip`` (in any spelling) from now on; the unspecified address names nobody."""
        addr = parse_address(ip.split("%", 1)[0])
        if addr is None or addr.is_unspecified or addr in self._addresses:
            return
        self._addresses.add(addr)
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
        if peer is not None and parse_address(peer) == parse_address(local):
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
            alternatives = [s for addr in self._addresses for s in spellings(addr)]
            alternatives.sort(key=len, reverse=True)
            self._pattern = re.compile("|".join(alternatives), re.IGNORECASE)
            self._anchor_set = frozenset(a for addr in self._addresses for a in _anchors(addr))
        return self._pattern

    def text(self, value: str) -> str:
        """``value`` with every spelling of every address replaced."""
        regex = self._regex()
        if regex is None:
            return value
        lowered = value.lower()
        anchors = self._anchor_set
        if not any(anchor in lowered for anchor in anchors):
            return value
        pieces: list[str] = []
        done = 0
        # Only runs of address characters that hold an anchor are searched, each on its own.
        for run in _RUN.finditer(value):
            start, end = run.span()
            if end - start < 3 or not any(anchor in run.group().lower() for anchor in anchors):
                continue
            for hit in regex.finditer(value, start, end):
                pieces += (value[done : hit.start()], SCRUBBED)
                done = hit.end()
        if not pieces:
            return value
        pieces.append(value[done:])
        return "".join(pieces)

    def scrub(self, obj: Any) -> Any:
        """A copy of ``obj`` (JSON-like) with every address replaced, in keys and values."""
        if self._regex() is None:
            return obj
        return self._walk(obj)

    def _walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {
                (self.text(k) if isinstance(k, str) else k): self._walk(v) for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self._walk(v) for v in obj]
        return obj


def scrub_submission(
    measurement: dict[str, Any], addresses: Iterable[str | None]
) -> dict[str, Any]:
    """What the collector stores: ``measurement`` without the submitter's ``addresses`` nor
    its own ``probe_ip``, which then reads ``127.0.0.1``. The input is not modified."""
    candidates = [*addresses, measurement.get("probe_ip")]
    identifying = [a for a in candidates if isinstance(a, str) and not identifies_nobody(a)]
    scrubber = Scrubber(identifying, interfaces=False)
    out = scrubber.scrub(measurement)
    if out is measurement:
        out = copy.deepcopy(measurement)
    if "probe_ip" in out or scrubber.addresses:
        out["probe_ip"] = PROBE_IP_PLACEHOLDER
    return out


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
