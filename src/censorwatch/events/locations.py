"""Where the censor sits, per event: the localizations of its blocked measurements, counted.

A blocked measurement localized with ``--locate`` carries the analysis's decision
(``Verdict.locate``, analysis/locate.py): the hop, the router's address and AS, and the
placement (the probe's own ISP, a national gateway, beyond the border, the destination, or
none found). An event counts the distinct places its measurements named; the place named most
often speaks for the event, and the counts say how sure that is ("4 of 5 localizations"). A
localization that could not run (``not_run``) names no place and is not counted. National
events keep the places per network too, since each network's censor may sit elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from censorwatch.analysis.locate import NOT_RUN, PLACEMENT_WORDS

#: The fields of a verdict's ``locate`` that name a place (the rest is evidence).
PLACE_FIELDS = ("placement", "hop", "address", "asn", "as_org_name", "cc")

#: place key -> {placement, hop, address, asn, as_org_name, cc, count}
Places = dict[str, dict[str, Any]]


def place_of(located: Any) -> dict[str, Any] | None:
    """The place one verdict's ``locate`` names, or None when it names none (not run, or a
    value of the wrong shape)."""
    if not isinstance(located, Mapping):
        return None
    placement = located.get("placement")
    if not isinstance(placement, str) or not placement or placement == NOT_RUN:
        return None
    hop = located.get("hop")
    place: dict[str, Any] = {"placement": placement, "hop": hop if isinstance(hop, int) else None}
    for name in PLACE_FIELDS[2:]:
        value = located.get(name)
        if isinstance(value, str) and value:
            place[name] = value
    return place


def _key(place: Mapping[str, Any]) -> str:
    return "|".join(str(place.get(name) or "") for name in ("placement", "hop", "address", "asn"))


def add(places: Places, place: Mapping[str, Any]) -> None:
    """Count one measurement's place into ``places`` (in place)."""
    entry = places.setdefault(_key(place), {**place, "count": 0})
    entry["count"] += 1


def merged(groups: Iterable[Places]) -> Places:
    out: Places = {}
    for places in groups:
        for key, entry in places.items():
            into = out.setdefault(key, {**entry, "count": 0})
            into["count"] += int(entry.get("count") or 0)
    return out


def ranked(places: Places) -> list[dict[str, Any]]:
    """The places, the most often named first (then the nearest hop): the event's record."""
    return sorted(
        (dict(p) for p in places.values()),
        key=lambda p: (-int(p.get("count") or 0), p.get("hop") or 99, _key(p)),
    )


def words(ranking: list[dict[str, Any]]) -> str:
    """``censor at hop 3 (198.19.1.1, AS65537): at a national gateway (4 of 5
    localizations)``; empty when nothing was localized."""
    if not ranking:
        return ""
    best, total = ranking[0], sum(int(p.get("count") or 0) for p in ranking)
    where = PLACEMENT_WORDS.get(best["placement"], best["placement"])
    if best.get("hop") is None:
        text = f"censor's hop: {where}"
    else:
        who = ", ".join(str(best[k]) for k in ("address", "asn") if best.get(k))
        text = f"censor at hop {best['hop']}" + (f" ({who})" if who else "") + f": {where}"
    count = int(best.get("count") or 0)
    runs = "localization" if total == 1 else "localizations"
    return f"{text} ({count} of {total} {runs})"
