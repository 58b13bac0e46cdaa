"""Facts about IP addresses: which AS announces one, and whether it is a bogon.

A deployment points censorwatch at an IP-to-ASN database with ``--asn-db FILE`` (or the
environment variable ``CENSORWATCH_ASN_DB``). Two formats are read:

* the iptoasn.com TSV layout: ``range_start  range_end  AS_number  country_code  AS_description``;
* an *address plan* (JSON), which the testbed writes for its emulated internet::

    {"public_prefixes": ["198.51.100.0/24"],
     "networks": [{"prefix": "198.51.100.0/24", "asn": 13414, "as_org_name": "X Corp", "cc": "US"}]}

  ``public_prefixes`` are ranges that count as public internet even though they are reserved
  (the testbed lives in documentation ranges), so they are never taken for bogons.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ASN_DB_ENV = "CENSORWATCH_ASN_DB"

# Special-purpose ranges that never belong to a public host (RFC 6890 and successors).
_BOGON_PREFIXES = [
    ipaddress.ip_network(p)
    for p in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "ff00::/8",
    )
]


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

    def is_bogon(self, ip: str) -> bool:
        """True for addresses no public host can have (private, loopback, reserved …)."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if any(addr in net for net in self.public_prefixes if net.version == addr.version):
            return False
        return any(addr in net for net in _BOGON_PREFIXES if net.version == addr.version)

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
