"""Token buckets in memory, bounded in keys and forgotten once full again.

A bucket holds up to ``capacity`` tokens and regains one every ``refill_seconds``; a request
takes one. A bucket that has refilled completely is the same as no bucket, so it is dropped:
memory holds only the keys that were active within one full refill. Beyond ``max_keys`` the
least recently used bucket is dropped (it then starts full again: the bound wins over
precision under a flood of distinct keys).

Sources are never keyed by their address: :class:`SourceKeys` turns an address into a keyed
hash under a random key made at start-up and never written, so nothing in memory or on disk
can be matched with an address later, and a restart unlinks everything.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``capacity`` requests at once, then one per ``refill_seconds``."""

    capacity: int
    refill_seconds: float


class TokenBuckets:
    """One bucket per key; ``wait`` says how long until a token, ``take`` spends one."""

    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return float(self.rate.capacity)
        tokens, at = found
        regained = (now - at) / self.rate.refill_seconds
        return min(float(self.rate.capacity), tokens + regained)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may take a token (0 when it may now)."""
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * self.rate.refill_seconds

    def take(self, key: str, now: float) -> None:
        """Spend one token of ``key`` (the caller asked ``wait`` first)."""
        self._expire(now)
        tokens = self._tokens(key, now) - 1.0
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def _expire(self, now: float) -> None:
        """Drop the buckets, oldest first, that have refilled completely."""
        full = self.rate.capacity * self.rate.refill_seconds
        while self._buckets:
            key, (_, at) = next(iter(self._buckets.items()))
            if now - at < full:
                break
            del self._buckets[key]


class SourceKeys:
    """Addresses → short keyed hashes, under a key that lives in this process only. An IPv6
    address counts by its /64, the block one subscriber usually holds."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def of(self, address: str | None) -> str:
        if not address:
            return "unknown"
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return "unknown"
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None:
            text = str(ipaddress.IPv6Network((addr, 64), strict=False).network_address) + "/64"
        else:
            text = str(addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else addr)
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:24]


__all__ = ["Rate", "SourceKeys", "TokenBuckets"]
