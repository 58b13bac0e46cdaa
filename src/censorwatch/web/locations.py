"""Where the censor sits, as the explorer shows it: one row per network and place named (hop,
router address, AS, placement in words, how many localizations named it), and one stored
measurement's own localization as a line.

Pure functions over event records and stored rows, like ``views``; the templates lay them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from censorwatch.analysis.locate import PLACEMENT_WORDS
from censorwatch.analysis.locate import words as located_words
from censorwatch.model import Event


@dataclass(frozen=True, slots=True)
class PlaceRow:
    network: str
    hop: str  # the hop number, or "—" when none was named
    address: str
    asn: str
    as_org_name: str
    where: str  # the placement in words
    count: int
    total: int  # localizations of that network's blocked measurements


def _rows(network: str, ranking: list[dict[str, Any]]) -> list[PlaceRow]:
    total = sum(int(p.get("count") or 0) for p in ranking)
    return [
        PlaceRow(
            network=network,
            hop=str(p["hop"]) if isinstance(p.get("hop"), int) else "—",
            address=str(p.get("address") or ""),
            asn=str(p.get("asn") or ""),
            as_org_name=str(p.get("as_org_name") or ""),
            where=PLACEMENT_WORDS.get(str(p.get("placement")), str(p.get("placement") or "")),
            count=int(p.get("count") or 0),
            total=total,
        )
        for p in ranking
        if isinstance(p, Mapping)
    ]


def of_event(event: Event) -> list[PlaceRow]:
    """The event's places per network (a network event: its one network); [] when none of
    its blocked measurements was localized."""
    by_network = event.censor_location_by_network
    if isinstance(by_network, dict) and by_network:
        return [row for asn, ranking in by_network.items() for row in _rows(asn, ranking)]
    if isinstance(event.censor_location, list) and event.censor_location:
        return _rows(event.asns[0] if len(event.asns) == 1 else "", event.censor_location)
    return []


def of_row(row: Mapping[str, Any]) -> str:
    """A stored row's localization in words; empty without one."""
    value = row.get("locate")
    if not value:
        return ""
    try:
        located = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return ""
    return located_words(located) if isinstance(located, dict) else ""
