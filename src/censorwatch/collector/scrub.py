"""Remove the probe's own IP address from a measurement before anything is stored.

The address can hide anywhere (``probe_ip``, resolver answers, echoed headers, bodies), so the
measurement is scrubbed as text, as OONI's scrubber does, with match boundaries that keep
``1.2.3.4`` from eating ``11.2.3.45``. Loopback and unspecified addresses identify nobody and
are left alone: they are often the evidence (a DNS answer of 127.0.0.1 is a block).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

SCRUBBED = "[scrubbed]"
PLACEHOLDER_IP = "127.0.0.1"


def _identifying(value: str) -> list[str]:
    """The spellings of ``value`` worth scrubbing; empty when it is no identifying IP."""
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return []
    if ip.is_loopback or ip.is_unspecified:
        return []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return [*_identifying(str(ip.ipv4_mapped)), ip.compressed, ip.exploded]
        return [ip.compressed, ip.exploded]
    return [str(ip)]


def _pattern(spelling: str) -> re.Pattern[str]:
    if ":" in spelling:
        return re.compile(rf"(?<![0-9A-Fa-f:]){re.escape(spelling)}(?![0-9A-Fa-f:])", re.I)
    return re.compile(rf"(?<![0-9.]){re.escape(spelling)}(?![0-9])")


def scrub(measurement: dict[str, Any], addresses: Iterable[str | None]) -> dict[str, Any]:
    """A copy of ``measurement`` with every given address (and its ``probe_ip``) scrubbed."""
    spellings: list[str] = []
    for address in [*addresses, measurement.get("probe_ip")]:
        if isinstance(address, str):
            spellings.extend(s for s in _identifying(address) if s not in spellings)
    text = json.dumps(measurement, ensure_ascii=False)
    for spelling in spellings:
        if spelling.lower() in text.lower():
            text = _pattern(spelling).sub(SCRUBBED, text)
    out = json.loads(text)
    if "probe_ip" in out or spellings:
        out["probe_ip"] = PLACEHOLDER_IP
    return out
