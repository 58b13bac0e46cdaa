"""What still gets through, as the explorer shows it: a matrix per network (rows networks or
blocked targets, columns technique families, cells works / fails / not tried with their
counts of measurements), and one measurement's own summary as a list.

Pure functions over event records and stored rows, like ``views``; the templates only lay
them out. Every cell says its status in words, so no reader depends on its colour.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from censorwatch.analysis.workarounds import LABELS, label
from censorwatch.events.workarounds import ORDER, STATUSES, Tally, overall
from censorwatch.model import Event

#: The CSS class of each status (the verdict colours: works reads as ok, fails as blocked).
STATUS_CLASS = {"works": "v-ok", "fails": "v-blocked", "not tried": "v-unknown"}


@dataclass(frozen=True, slots=True)
class Cell:
    status: str  # works | fails | not tried (over the row's measurements)
    counts: dict[str, int]

    @property
    def css(self) -> str:
        return STATUS_CLASS.get(self.status, "none")

    @property
    def text(self) -> str:
        """``works 4``, or ``works 3 · fails 1`` when the measurements did not agree."""
        shown = [f"{s} {self.counts[s]}" for s in STATUSES if self.counts.get(s)]
        return " · ".join(shown) or "—"


@dataclass(frozen=True, slots=True)
class MatrixRow:
    label: str
    href: str | None
    cells: dict[str, Cell]  # by family


@dataclass(frozen=True, slots=True)
class WorkaroundMatrix:
    columns: list[tuple[str, str]]  # (family, words)
    rows: list[MatrixRow]


def _cells(tally: Tally) -> dict[str, Cell]:
    return {name: Cell(overall(counts), dict(counts)) for name, counts in tally.items()}


def matrix(rows: Iterable[tuple[str, str | None, Tally]]) -> WorkaroundMatrix | None:
    """A matrix from (label, link, tally) rows; None when no row has a tally."""
    kept = [MatrixRow(text, href, _cells(tally)) for text, href, tally in rows if tally]
    if not kept:
        return None
    seen = {name for r in kept for name in r.cells}
    names = sorted(seen, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return WorkaroundMatrix([(n, LABELS.get(n, n)) for n in names], kept)


def of_event(event: Event) -> WorkaroundMatrix | None:
    """An event's matrix: one row per network (a network event has its one)."""
    if isinstance(event.workarounds_by_network, dict):
        tallies: Mapping[str, Tally] = event.workarounds_by_network
    elif isinstance(event.workarounds, dict):
        tallies = {event.asns[0]: event.workarounds} if event.asns else {}
    else:
        return None
    return matrix((asn, f"/explorer/networks/{asn}", tally) for asn, tally in tallies.items())


def of_network(events: Iterable[Event], target_name: Any = str) -> WorkaroundMatrix | None:
    """A network page's matrix: one row per network event there (its blocked target)."""
    return matrix(
        (
            f"{target_name(e.target)} (since {e.onset.before})",
            f"/explorer/events/{e.event_id}",
            e.workarounds,
        )
        for e in events
        if e.scope == "network" and isinstance(e.workarounds, dict)
    )


def of_row(row: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """A stored row's own summary as (technique in words, status, css class, reason)."""
    text = row.get("workarounds")
    if not text:
        return []
    try:
        summary = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return []
    if not isinstance(summary, dict):
        return []
    out = []
    for technique, result in summary.items():
        if isinstance(result, dict):
            status = str(result.get("status", ""))
            reason = str(result.get("reason", ""))
            out.append((label(str(technique)), status, STATUS_CLASS.get(status, "none"), reason))
    return out
