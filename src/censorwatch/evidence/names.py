"""The names people know: operators beside AS numbers, platforms, countries, local times.

A court reads "PTCL (AS17557)", "X (Twitter)", "Pakistan", "17 Feb 2024 20:00 PKT". The
operator names come from the IP database the analysis used (``ASInfo.as_org_name``, the one
place they are read: :func:`operator_names`), which the bundle carries, so ``verify`` derives
them again. Platform names come from the platform profiles, country names from ISO 3166
(``pycountry``), and each country's time zone from the IANA time zone database's
``zone1970.tab`` (the first zone it lists for the country; a country with several says so).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

from censorwatch.netinfo import AddressPlan, ASInfo


def _as_infos(plan: AddressPlan) -> Iterable[ASInfo]:
    """Every AS record the database holds (prefix- and range-based plans; a MaxMind file
    is read by address only, so it names no operator here)."""
    for by_len in getattr(plan, "_prefixes", {}).values():
        for infos in by_len.values():
            yield from infos.values()
    for *_, info in getattr(plan, "_ranges", []):
        yield info


def operator_names(plan: AddressPlan, asns: Iterable[str]) -> dict[str, str]:
    """``{"AS17557": "PTCL"}`` for the networks the database names (a name that is only the
    AS number again is no name)."""
    wanted = {a for a in asns if a.removeprefix("AS").isdigit()}
    found: dict[str, str] = {}
    for info in _as_infos(plan):
        asn = f"AS{info.asn}"
        name = info.as_org_name.strip()
        if asn in wanted and asn not in found and name and name.upper() != asn:
            found[asn] = name
    return dict(sorted(found.items()))


def platform_name(target: str) -> str:
    """A platform's display name (``x`` → ``X (Twitter)``); a host stays as it is."""
    from censorwatch.events.platforms import load_platforms

    for platform in load_platforms():
        if platform.name == target:
            return platform.display_name
    return target


def country_name(cc: str) -> str:
    """ISO 3166 short name (``PK`` → ``Pakistan``); the code itself when unknown. The name is
    fixed in the bundle at export, so a verifier without ``pycountry`` renders the same page."""
    try:
        import pycountry
    except ImportError:
        return cc

    found = pycountry.countries.get(alpha_2=cc.upper()) if len(cc) == 2 else None
    return str(getattr(found, "common_name", None) or found.name) if found else cc


@cache
def _zone_table() -> dict[str, list[str]]:
    """country code → its zones, in the order of the tz database's zone1970.tab."""
    text = None
    for base in zoneinfo.TZPATH:
        path = Path(base) / "zone1970.tab"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            break
    if text is None:  # no system tz database: the tzdata package's copy
        try:
            text = (resources.files("tzdata") / "zoneinfo" / "zone1970.tab").read_text("utf-8")
        except (ModuleNotFoundError, FileNotFoundError):
            return {}
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        codes, _, zone, *_ = line.split("\t")
        for code in codes.split(","):
            table.setdefault(code, []).append(zone)
    return table


def time_zone(cc: str) -> tuple[str, int]:
    """The zone local times are given in, and how many zones the country has (0: unknown,
    times are then given in UTC only)."""
    zones = _zone_table().get(cc.upper(), [])
    return (zones[0], len(zones)) if zones else ("", 0)


def local_time(when: datetime, zone: str) -> str:
    """``when`` (naive UTC) in ``zone``, with its abbreviation and offset."""
    local = when.replace(tzinfo=UTC).astimezone(zoneinfo.ZoneInfo(zone))
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}, UTC{offset[:3]}:{offset[3:]}"
