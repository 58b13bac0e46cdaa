"""How many people a block touches: per-AS estimates of internet users.

The field's reference is APNIC Labs' per-economy, per-AS user-population estimates ("Visible
ASNs: Customer Populations"). They come as a CSV table per economy (``Rank, AS, AS Name, CC,
Users (est.), % of Country, % of Internet, Samples``) or as JSON (``as``, ``autnum``, ``cc``,
``users``, ``percent``). ``load_estimates`` reads either, plus the normalised JSON that
``censorwatch population load`` keeps, and every estimate keeps its date: an impact figure is
only as good as the day it was estimated.

The country's total is what the estimates say: from a row's users and its share of the country
(``% of Country``) when the file gives shares, else the sum over the country's rows (then it
covers only the networks listed, and the share is marked ``share_basis: "listed networks"``).
An event on networks with no estimate gets no impact at all: absent, never zero.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.model import Event

MAX_FILE_BYTES = 64 * 1024 * 1024  # APNIC's whole world table is a few MB
NORMALISED_FORMAT = "censorwatch-population/1"
_DATE_IN_NAME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


class PopulationError(ValueError):
    """An estimates file that cannot be read, with the reason."""


@dataclass
class CountryEstimate:
    users: dict[str, int] = field(default_factory=dict)  # "AS17557" -> users
    names: dict[str, str] = field(default_factory=dict)
    totals: list[float] = field(default_factory=list)  # country totals implied by each row

    @property
    def total(self) -> tuple[int, str]:
        """The country's users and what that figure rests on."""
        if self.totals:
            return round(statistics.median(self.totals)), "estimate"
        return sum(self.users.values()), "listed networks"


@dataclass
class Estimates:
    """Users per network, per country, as estimated on ``estimated_on`` by ``source``."""

    estimated_on: date
    source: str
    countries: dict[str, CountryEstimate] = field(default_factory=dict)

    def users(self, cc: str, asn: str) -> int | None:
        country = self.countries.get(cc.upper())
        return country.users.get(asn.upper()) if country else None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": NORMALISED_FORMAT,
            "estimated_on": self.estimated_on.isoformat(),
            "source": self.source,
            "countries": {
                cc: {"users": c.users, "names": c.names, "total": c.total[0], "basis": c.total[1]}
                for cc, c in sorted(self.countries.items())
            },
        }


def _asn(value: Any) -> str | None:
    text = str(value or "").strip().upper().removeprefix("AS")
    return f"AS{int(text)}" if text.isdigit() else None


def _number(value: Any) -> float | None:
    text = str(value if value is not None else "").replace(",", "").replace("%", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def _add(est: Estimates, cc: Any, asn: Any, users: Any, share: Any, name: Any) -> bool:
    code, number, count = str(cc or "").strip().upper(), _asn(asn), _number(users)
    if len(code) != 2 or not code.isalpha() or number is None or count is None or count < 0:
        return False
    country = est.countries.setdefault(code, CountryEstimate())
    country.users[number] = country.users.get(number, 0) + round(count)
    if name:
        country.names[number] = str(name).strip()
    pct = _number(share)
    if pct and pct > 0 and count > 0:
        country.totals.append(count / (pct / 100.0))
    return True


_COLUMNS = {
    "asn": ("as", "asn", "autonomous system"),
    "cc": ("cc", "country", "economy"),
    "users": ("users (est.)", "users", "users (est)", "estimated users"),
    "share": ("% of country", "percent of country", "% country"),
    "name": ("as name", "autnum", "name"),
}


def _column_map(header: list[str]) -> dict[str, int]:
    lowered = [h.strip().lower() for h in header]
    found = {}
    for key, names in _COLUMNS.items():
        for i, h in enumerate(lowered):
            if h in names:
                found[key] = i
                break
    missing = [k for k in ("asn", "cc", "users") if k not in found]
    if missing:
        raise PopulationError(
            f"no {', '.join(missing)} column in the header {header!r} "
            "(expected APNIC's: AS, CC, Users (est.), % of Country)"
        )
    return found


def _from_csv(text: str, est: Estimates) -> tuple[int, int]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        raise PopulationError("the file is empty")
    cols = _column_map(header)
    taken = skipped = 0
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue

        def cell(key: str, row: list[str] = row) -> str | None:
            i = cols.get(key)
            return row[i] if i is not None and i < len(row) else None

        ok = _add(est, cell("cc"), cell("asn"), cell("users"), cell("share"), cell("name"))
        taken, skipped = taken + ok, skipped + (not ok)
    return taken, skipped


def _from_json(data: Any, est: Estimates) -> tuple[int, int]:
    if isinstance(data, dict) and data.get("format") == NORMALISED_FORMAT:
        for cc, country in (data.get("countries") or {}).items():
            c = est.countries.setdefault(cc, CountryEstimate())
            c.users.update({k: int(v) for k, v in country.get("users", {}).items()})
            c.names.update(country.get("names", {}))
            if country.get("basis") == "estimate" and country.get("total"):
                c.totals.append(float(country["total"]))
        return sum(len(c.users) for c in est.countries.values()), 0
    if not isinstance(data, list):
        raise PopulationError("JSON estimates must be a list of rows (APNIC's layout)")
    taken = skipped = 0
    for row in data:
        ok = isinstance(row, dict) and _add(
            est, row.get("cc"), row.get("as"), row.get("users"), row.get("percent"),
            row.get("autnum"),
        )  # fmt: skip
        taken, skipped = taken + ok, skipped + (not ok)
    return taken, skipped


def _date_of(path: Path, given: date | None, data: Any) -> date:
    if given is not None:
        return given
    if isinstance(data, dict) and data.get("estimated_on"):
        return date.fromisoformat(str(data["estimated_on"]))
    m = _DATE_IN_NAME.search(path.name)
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    raise PopulationError(
        f"{path.name}: no date of the estimate (name the file with it, e.g. "
        "aspop-PK-2024-02-15.csv, or give --date)"
    )


def load_estimates(
    path: Path, *, estimated_on: date | None = None, source: str = "APNIC"
) -> Estimates:
    """Read one estimates file (APNIC CSV or JSON, or the normalised form)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PopulationError(f"{path.name}: {size} bytes is more than estimates ever take")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PopulationError(f"{path.name}: not UTF-8 text ({exc})") from None
    data: Any = None
    if text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PopulationError(f"{path.name}: not valid JSON ({exc})") from None
    est = Estimates(_date_of(path, estimated_on, data), source)
    if isinstance(data, dict) and data.get("source"):
        est.source = str(data["source"])
    taken, _ = _from_json(data, est) if data is not None else _from_csv(text, est)
    if not taken:
        raise PopulationError(f"{path.name}: no row with an AS, a country and a user count")
    return est


def load_all(paths: Iterable[Path]) -> list[Estimates]:
    """Estimates from files and directories (``*.json``, ``*.csv`` inside), oldest first."""
    found: list[Estimates] = []
    for path in paths:
        files = (
            sorted(p for p in path.iterdir() if p.suffix in (".json", ".csv"))
            if path.is_dir()
            else [path]
        )
        found.extend(load_estimates(f) for f in files)
    return sorted(found, key=lambda e: e.estimated_on)


def _pick(estimates: list[Estimates], cc: str, when: date) -> Estimates | None:
    """The newest estimate of ``cc`` dated on or before ``when``, else the oldest after it."""
    having = [e for e in estimates if cc in e.countries]
    before = [e for e in having if e.estimated_on <= when]
    if before:
        return before[-1]
    return having[0] if having else None


def impact_of(event: Event, estimates: list[Estimates]) -> dict[str, Any] | None:
    """Users on the event's networks (and their share of the country's), from the estimate
    nearest the onset; None when no estimate covers any of its networks."""
    onset = date.fromisoformat(event.onset.before[:10])
    est = _pick(estimates, event.cc, onset)
    if est is None:
        return None
    country = est.countries[event.cc]
    per_network = {asn: country.users[asn] for asn in event.asns if asn in country.users}
    if not per_network:
        return None
    users = sum(per_network.values())
    total, basis = country.total
    out: dict[str, Any] = {
        "users": users,
        "country_users": total,
        "share": round(users / total, 4) if total else None,
        "share_basis": basis,
        "networks": per_network,
        "networks_without_estimate": [a for a in event.asns if a not in country.users],
        "estimated_on": est.estimated_on.isoformat(),
        "source": est.source,
    }
    return out


def with_impact(events: list[Event], estimates: list[Estimates]) -> list[Event]:
    """The events, each national one carrying its ``impact`` when estimates cover it."""
    if not estimates:
        return events
    out = []
    for ev in events:
        found = impact_of(ev, estimates) if ev.scope == "national" else None
        out.append(msgspec.structs.replace(ev, impact=found) if found else ev)
    return out


def impact_line(impact: dict[str, Any]) -> str:
    """ "≈ 61.0 million users (61 % of the country's users) on the blocking networks
    (estimate: APNIC, 2024-02-01)"."""
    text = f"≈ {_people(impact['users'])} users"
    if impact.get("share") is not None:
        whose = "the country's users" if impact["share_basis"] == "estimate" else "users listed"
        text += f" ({impact['share'] * 100:.0f} % of {whose})"
    return (
        f"{text} on the blocking networks (estimate: {impact['source']}, {impact['estimated_on']})"
    )


def _people(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} million"
    if n >= 10_000:
        return f"{round(n, -3):,}"
    return f"{n:,}"
