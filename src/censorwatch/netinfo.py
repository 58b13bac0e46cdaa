"""Facts about IP addresses: which AS announces one, and whether it is special (a bogon).

A deployment points censorwatch at an IP-to-ASN database with ``--asn-db FILE`` (or the
environment variable ``CENSORWATCH_ASN_DB``). Two formats are read:

* the iptoasn.com TSV layout: ``range_start  range_end  AS_number  country_code  AS_description``;
* an *address plan* (JSON), which the testbed writes for its emulated internet::

    {"public_prefixes": ["198.51.100.0/24"],
     "networks": [{"prefix": "198.51.100.0/24", "asn": 13414, "as_org_name": "X Corp", "cc": "US"}]}

  ``public_prefixes`` are ranges that count as public internet even though they are reserved
  (the testbed lives in documentation ranges), so they are never taken for bogons.

MaxMind-format databases (``.mmdb``, dated directories of them) are read by
``censorwatch.geo``, whose ``ip_database`` opens any of these formats behind this interface.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ASN_DB_ENV = "CENSORWATCH_ASN_DB"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Special-purpose ranges (RFC 6890 and successors) that ``ipaddress``'s flags (private,
# loopback, link-local, multicast, reserved, unspecified) do not all cover in every Python.
_SPECIAL_V4 = tuple(
    ipaddress.IPv4Network(p)
    for p in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_SPECIAL_V6 = tuple(
    ipaddress.IPv6Network(p)
    for p in (
        "::/128", "::1/128", "::/96", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation (RFC 8215): never global
    )
)  # fmt: skip
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix (RFC 6052)
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def parse_address(text: str) -> IPAddress | None:
    """An address written alone, in brackets or with a zone (``[fe80::1%eth0]``); an
    IPv4-mapped IPv6 address is returned as the IPv4 address it is. None when not an address."""
    try:
        addr = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, NAT64 (64:ff9b::/96), 6to4."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _SIX_TO_FOUR:
        return addr.sixtofour
    return None


def is_special(address: str | IPAddress, public: Iterable[IPNetwork] = ()) -> bool:
    """True for an address no public host can have: the one rule every stage uses.

    Private, loopback, link-local, multicast, reserved and unspecified addresses, shared
    (100.64.0.0/10), benchmarking and documentation ranges; an IPv6 address that stands for an
    IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by that IPv4 address. ``public`` lists ranges
    that count as public all the same (the testbed's emulated internet lives in documentation
    ranges). A string that is no address raises ``ValueError``.
    """
    addr = address if not isinstance(address, str) else parse_address(address)
    if addr is None:
        raise ValueError(f"not an IP address: {str(address)[:64]!r}")
    public = tuple(public)
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None and not _in_any(addr, public):
            return is_special(inner, public)
    if _in_any(addr, public):
        return False
    if (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    ):
        return True
    return _in_any(addr, _SPECIAL_V4 if addr.version == 4 else _SPECIAL_V6)


def identifies_nobody(address: str | IPAddress) -> bool:
    """Loopback and unspecified addresses (however spelled): they name no host on the
    internet, so they are never scrubbed as someone's address (a DNS answer of 127.0.0.1 is
    evidence of a block). Strings that are no address identify nobody either."""
    addr = address if not isinstance(address, str) else parse_address(address)
    if addr is None:
        return True
    if isinstance(addr, ipaddress.IPv6Address):
        addr = embedded_ipv4(addr) or addr
    return addr.is_loopback or addr.is_unspecified


def _in_any(addr: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(addr in net for net in networks if net.version == addr.version)


@dataclass(frozen=True)
class ASInfo:
    asn: int
    as_org_name: str = ""
    cc: str = ""


@dataclass(eq=False)
class AddressPlan:
    """AS facts by longest-prefix match, plus the ranges that count as public."""

    public_prefixes: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=list
    )
    # version -> prefix length -> network address as int -> info (for nested CIDR prefixes)
    _prefixes: dict[int, dict[int, dict[int, ASInfo]]] = field(default_factory=dict)
    # Disjoint ranges from range-based databases, sorted by start: (version, start, end, info)
    _ranges: list[tuple[int, int, int, ASInfo]] = field(default_factory=list)
    _cache: dict[str, ASInfo | None] = field(default_factory=dict)

    def add_range(self, first: str, last: str, info: ASInfo) -> None:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
        self._ranges.append((a.version, int(a), int(b), info))

    def add_prefix(self, prefix: str, info: ASInfo) -> None:
        net = ipaddress.ip_network(prefix, strict=False)
        by_len = self._prefixes.setdefault(net.version, {})
        by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = info

    def freeze(self) -> AddressPlan:
        self._ranges.sort(key=lambda r: (r[0], r[1]))
        self._cache.clear()
        return self

    def lookup(self, ip: str) -> ASInfo | None:
        """The AS that announces ``ip``, or None when the database does not know it."""
        if ip in self._cache:
            return self._cache[ip]
        info = self._lookup(ip)
        if len(self._cache) < 65536:
            self._cache[ip] = info
        return info

    def _lookup(self, ip: str) -> ASInfo | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        value, bits = int(addr), addr.max_prefixlen
        for length in sorted(self._prefixes.get(addr.version, {}), reverse=True):
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            info = self._prefixes[addr.version][length].get(value & mask)
            if info is not None:
                return info
        i = bisect.bisect_right(self._ranges, (addr.version, value, 1 << 129)) - 1
        if i >= 0:
            version, start, end, info = self._ranges[i]
            if version == addr.version and start <= value <= end:
                return info
        return None

    def at(self, when: object = None) -> AddressPlan:
        """The facts valid at ``when`` (a measurement's start time). One plan or file holds
        for all time; ``censorwatch.geo`` overrides this to pick among dated databases."""
        return self

    def is_bogon(self, ip: str) -> bool:
        """True for addresses no public host can have (:func:`is_special`), outside the plan's
        public ranges; False for text that is no address."""
        try:
            return is_special(ip, self.public_prefixes)
        except ValueError:
            return False

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AddressPlan:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        plan = cls()
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            plan.public_prefixes = [
                ipaddress.ip_network(p, strict=False) for p in data.get("public_prefixes", [])
            ]
            for entry in data.get("networks", []):
                plan.add_prefix(
                    entry["prefix"],
                    ASInfo(
                        int(str(entry["asn"]).removeprefix("AS")),
                        entry.get("as_org_name", ""),
                        entry.get("cc", ""),
                    ),
                )
        else:
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) < 3:
                    raise ValueError(f"{path}:{lineno}: expected range_start, range_end, AS")
                asn = int(parts[2].removeprefix("AS"))
                if asn == 0:
                    continue
                cc = parts[3] if len(parts) > 3 else ""
                org = parts[4] if len(parts) > 4 else ""
                plan.add_range(parts[0], parts[1], ASInfo(asn, org, cc))
        return plan.freeze()


_EMPTY = AddressPlan().freeze()


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> AddressPlan:
    return AddressPlan.load(path)


def address_plan(path: str | os.PathLike[str] | None = None) -> AddressPlan:
    """The plan named by ``path`` or by ``CENSORWATCH_ASN_DB``; an empty plan when neither."""
    chosen = path or os.environ.get(ASN_DB_ENV)
    if not chosen:
        return _EMPTY
    p = Path(chosen)
    return _load_cached(str(p), p.stat().st_mtime)
