"""Vantages of one series: which of them saw a block, and which get through it.

A network is measured from several vantages at once (OONI reports, probe keys, resolvers; a
verdict's ``report_id`` tells them apart). A national block hits the vantages that measure
directly; a vantage behind a VPN or an outside resolver keeps answering ok. Its ok answers say
nothing about when the block began or ended, so they must neither split a block nor delay its
onset. A vantage *gets through* when it has answered ok at least twice, at least
``through_min`` times right after another vantage answered blocked, and blocked itself at most
``tolerance`` times as often as that (a VPN has its own bad hours).

A series whose every round comes from a new report (a probe run per round, as the testbed and
our own probes make them) has no vantage with two rounds: nothing is ever "through", and the
detector behaves as if vantages did not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from censorwatch.events.series import BLOCKED, OK, Round


@dataclass
class VantageBook:
    """Per-vantage counts over a stretch of rounds, fed in time order."""

    # report_id → [blocked rounds, ok rounds, ok rounds right after another vantage's blocked,
    # ok rounds from before the stretch (known, but not counted as the stretch's)]
    stats: dict[str, list[int]] = field(default_factory=dict)
    # The latest conclusive (vantage, state), and the latest one from a different vantage.
    recent: list[list[str]] = field(default_factory=list)

    def add(self, rnd: Round, *, before: bool = False) -> None:
        """Count one round; ``before``: it precedes the stretch (what a vantage did before
        a block began tells whether it is one that answers at all)."""
        state = rnd.state
        if state not in (BLOCKED, OK):
            return
        vantage = rnd.observations[0].report_id
        counts = self.stats.setdefault(vantage, [0, 0, 0, 0])
        if before:
            counts[3] += state == OK
        elif state == BLOCKED:
            counts[0] += 1
        else:
            counts[1] += 1
            if self._other_state(vantage) == BLOCKED:
                counts[2] += 1
        if self.recent and self.recent[0][0] == vantage:
            self.recent[0] = [vantage, state]
        else:
            self.recent = [[vantage, state], *self.recent[:1]]

    def add_all(self, rounds: Iterable[Round]) -> VantageBook:
        for rnd in rounds:
            self.add(rnd)
        return self

    def _other_state(self, vantage: str) -> str | None:
        for seen, state in self.recent:
            if seen != vantage:
                return state
        return None

    def through(self, vantage: str, through_min: int, tolerance: float) -> bool:
        counts = self.stats.get(vantage)
        if counts is None:
            return False
        blocked, ok, ok_after, ok_before = counts
        return ok + ok_before >= 2 and ok_after >= through_min and blocked <= tolerance * ok_after

    def through_set(self, through_min: int, tolerance: float) -> frozenset[str]:
        return frozenset(v for v in self.stats if self.through(v, through_min, tolerance))

    def reached(self) -> tuple[int, int]:
        """(ok rounds, conclusive rounds) of the vantages that answered blocked in the
        stretch: how often the ones a block reached still got through (its leak record)."""
        hit = [c for c in self.stats.values() if c[0]]
        return sum(c[1] for c in hit), sum(c[0] + c[1] for c in hit)

    @property
    def measured(self) -> int:
        return sum(1 for c in self.stats.values() if c[0] or c[1])

    @property
    def blocked(self) -> int:
        return sum(1 for c in self.stats.values() if c[0])

    def copy(self) -> VantageBook:
        return VantageBook(
            {k: list(v) for k, v in self.stats.items()}, [list(r) for r in self.recent]
        )

    def to_state(self) -> dict[str, Any]:
        return {"stats": self.stats, "recent": self.recent}

    @classmethod
    def from_state(cls, data: dict[str, Any] | None) -> VantageBook:
        if not data:
            return cls()
        return cls(
            {k: list(v) for k, v in data["stats"].items()}, [list(r) for r in data["recent"]]
        )


def is_neutral(rnd: Round, through: frozenset[str]) -> bool:
    """An ok round from a vantage that gets through: no evidence either way."""
    return rnd.state == OK and rnd.observations[0].report_id in through
