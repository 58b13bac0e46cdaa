"""Adaptive hysteresis: the change detector that turns one series' rounds into network events.

The series is in one of two modes, *clear* or *blocked*. Rounds of the other state with none of
its own between them form a run (unknown rounds neither count nor interrupt); the series
switches once the run has ``k_min`` rounds and strays can no longer explain it:

- opening: the probability that all the run's blocked measurements are strays, from the
  posterior of the *network's* stray rate (pooled over all its series, since loss belongs to
  the path), is at most ``alpha``; a blocked measurement whose method noise cannot produce (a
  reset, a forged answer, a block page) counts ``strong_factor`` times less likely than a
  timeout. A clean network opens on the second blocked round; a lossy one waits for more.
- ending: the network's leak rate to the power of the run's ok measurements (for oks of
  vantages the block had reached, which may be leaking, the predictive of the block's own
  leak record, ``_leak_run_probability``) is at most ``alpha``, divided by the block's length
  in units of ``alpha_rounds`` rounds.
- an ok answer inside an opening run from a vantage not known to get through is what a block
  explains only if that vantage gets through (``ok_in_block``): it weakens the run.

Real series are measured from several vantages, sparsely. A silence much longer than the
series' usual spacing is a *gap*: unknown, never evidence, so a run's rounds before a gap do not
count towards a switch after it, and a change is never placed before a gap on the strength of
what lay behind it. Repeated blocked rounds of one vantage in a run are weak evidence (strays
cluster in a vantage); ok rounds from a vantage that gets through a block (``vantages.py``)
count for nothing.

When it switches, the change is placed by maximum likelihood over recent rounds, and bracketed
between the last measurement of the old state and the first of the new one; rounds with no
conclusive answer in between widen the bracket and are counted (``onset_unknown`` /
``end_unknown``). docs/events.md has the comparison with CUSUM, fixed k-of-n, Bayesian online
changepoint detection and PELT that chose this method.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from censorwatch.events.locations import add as count_location
from censorwatch.events.series import (
    BLOCKED,
    OK,
    STRONG_METHODS,
    UNKNOWN,
    Observation,
    Round,
    SeriesKey,
)
from censorwatch.events.vantages import VantageBook, is_neutral
from censorwatch.events.workarounds import add as count_workarounds
from censorwatch.times import canonical_time, parse_time, rfc3339, rfc3339_micro


@dataclass(frozen=True)
class DetectorParams:
    k_min: int = 2
    k_max: int = 6
    alpha: float = 1e-4
    alpha_rounds: float = 8.0  # an end's alpha holds per this many rounds of a block (_alpha)
    prior_rate: float = 0.01  # stray blocked measurements on an unblocked network
    prior_leak: float = 0.008  # stray ok measurements during a block
    block_leak: float = 0.03  # ... from the vantages a block reached (its leak rate's prior)
    strong_factor: float = 0.1  # a stray that is not a timeout or failure: 10× less likely
    per_round: int = 3  # at most this many measurements of one round count as evidence
    prior_weight: float = 10.0
    max_round_span: float = 900.0
    max_evidence: int = 50
    history: int = 48  # rounds kept to place a change that the run's start misplaces
    national_gap: float = 3600.0
    min_networks: int = 2
    min_gap: float = 6 * 3600.0  # a silence this long (at least) is a gap in the data
    gap_factor: float = 8.0  # ... and at least this many times the series' median spacing
    spacing_window: int = 32  # recent spacings the median is taken over
    through_min: int = 1  # ok rounds right after others' blocked ones: a vantage gets through
    through_tolerance: float = 0.25  # ... blocking itself at most this often (its bad hours)
    ok_in_block: float = 0.25  # a vantage answers ok during a block (it gets through)
    repeat_factor: float = 0.5  # a vantage's further blocked round in a run: this much evidence
    end_hold: float = 0.25  # an end is declared once clear for this share of the block so far
    end_hold_max: float = 24 * 3600.0  # ... or for this long (s), whichever is shorter,
    end_hold_after: float = 24 * 3600.0  # ... once the block has lasted this long (s)

    def rate(self, flips: float, rounds: float, prior: float) -> float:
        """Posterior mean of a stray rate: ``flips`` strays among ``rounds`` rounds, shrunk
        towards ``prior`` with the weight of ``prior_weight`` rounds."""
        return (flips + prior * self.prior_weight) / (rounds + self.prior_weight)


STRONG = "strong"


@dataclass
class NetworkNoise:
    """Stray-round counts pooled over all series of one network.

    Loss and flaky middleboxes are properties of a network path, not of one target: pooling
    its series learns a lossy network's stray rate (and a clean network's clean record)
    several times faster than one series can.
    """

    # flips[OK]: stray blocked rounds; flips[STRONG]: those of them whose method looked like
    # censorship (a reset, NXDOMAIN): how often this network's noise fakes a strong method.
    flips: dict[str, int] = field(default_factory=lambda: {OK: 0, BLOCKED: 0, STRONG: 0})
    conclusive: dict[str, int] = field(default_factory=lambda: {OK: 0, BLOCKED: 0})


@dataclass
class NetworkEvent:
    """The mutable record of one block on one series, kept in the tracker's state."""

    cc: str
    asn: str
    target: str
    onset_after: str | None
    onset_before: str
    onset_unknown: int
    opened_at: str  # time of the round that confirmed the block (detection delay)
    last_blocked: str = ""
    end_after: str | None = None
    end_before: str | None = None
    end_unknown: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "blocked": 0, "ok": 0, "down": 0, "unknown": 0}
    )
    rounds: int = 0
    blocked_rounds: int = 0
    confidence_sum: float = 0.0
    bracket_uids: list[str] = field(default_factory=list)
    blocked_uids: list[str] = field(default_factory=list)
    vantages: int = 0  # vantages (reports) with a conclusive answer during the event
    vantages_blocked: int = 0  # ... of which answered blocked
    onset_silence: int = 0  # longest stretch without any measurement inside the onset bracket, s
    end_silence: int = 0
    book: VantageBook = field(default_factory=VantageBook)  # emptied when the event ends
    # What still gets through: family -> {works, fails, not tried} over the blocked
    # measurements that carried a circumvention summary (``events.workarounds``).
    workarounds: dict[str, dict[str, int]] = field(default_factory=dict)
    # Where the censor sits: the places the blocked measurements' localizations named,
    # counted (``events.locations``).
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.end_before is not None

    def add_round(self, rnd: Round, params: DetectorParams) -> None:
        self.book.add(rnd)
        self.vantages, self.vantages_blocked = self.book.measured, self.book.blocked
        self.rounds += 1
        if rnd.state == BLOCKED:
            self.blocked_rounds += 1
        for obs in rnd.observations:
            self.counts["total"] += 1
            self.counts[obs.kind] += 1
            if obs.state == BLOCKED:
                self.confidence_sum += obs.confidence
                self.last_blocked = max(self.last_blocked, rfc3339(obs.time))
                if obs.method:
                    self.methods[obs.method] = self.methods.get(obs.method, 0) + 1
                if obs.workarounds:
                    count_workarounds(self.workarounds, obs.workarounds)
                if obs.locate:
                    count_location(self.locations, obs.locate)
                if len(self.blocked_uids) < params.max_evidence and obs.uid:
                    self.blocked_uids.append(obs.uid)

    @property
    def confidence(self) -> float:
        """Mean verdict confidence × share of blocked rounds × (1 − 2^−blocked rounds)."""
        blocked = self.counts["blocked"]
        if not blocked or not self.rounds:
            return 0.0
        mean = self.confidence_sum / blocked
        share = self.blocked_rounds / self.rounds
        return round(mean * share * (1.0 - 0.5**self.blocked_rounds), 3)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> NetworkEvent:
        # Times are compared as strings (brackets, national grouping): whatever spelling a
        # state file holds, keep the canonical one, whose string order is time order.
        times = {k: _canonical(data.get(k)) for k in _EVENT_TIMES if k in data}
        book = VantageBook.from_state(data.get("book"))
        return cls(**{**data, **times, "book": book})


#: The NetworkEvent fields that hold times (RFC 3339, canonical spelling).
_EVENT_TIMES = (
    "onset_after",
    "onset_before",
    "opened_at",
    "last_blocked",
    "end_after",
    "end_before",
)


def _canonical(value: str | None) -> str | None:
    """A stored time in the canonical spelling (``times.rfc3339``); empty and None kept."""
    return canonical_time(value) if value else value


def _latest(observations: list[Observation]) -> Observation:
    return max(observations, key=lambda o: o.time)


class SeriesDetector:
    """Feeds one series' rounds in time order; opens, updates and ends its network events."""

    def __init__(self, key: SeriesKey, params: DetectorParams) -> None:
        self.key = key
        self.params = params
        self.mode = OK
        # Counts shared by every series of the same network (see NetworkNoise).
        self.network = NetworkNoise()
        self.last_same: Observation | None = None  # last measurement agreeing with the mode
        self.history: list[Round] = []  # recent rounds since the last switch (bounded)
        self.pending: list[Round] = []
        self.event: NetworkEvent | None = None
        self.first_seen: str | None = None
        self.last_seen: str | None = None
        self.spacings: list[float] = []  # seconds between recent rounds (gap threshold)
        self.since_switch = 0  # conclusive rounds in the current mode (chances of a false switch)

    # -- state ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "last_same": obs_state(self.last_same),
            "history": [[obs_state(o) for o in r.observations] for r in self.history],
            "pending": [[obs_state(o) for o in r.observations] for r in self.pending],
            "event": self.event.to_state() if self.event else None,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "spacings": self.spacings,
            "since_switch": self.since_switch,
            "history_gaps": [i for i, r in enumerate(self.history) if r.gap],
            "pending_gaps": [i for i, r in enumerate(self.pending) if r.gap],
        }

    @classmethod
    def from_state(cls, key: SeriesKey, params: DetectorParams, data: dict[str, Any]):
        det = cls(key, params)
        det.mode = data["mode"]
        det.last_same = obs_from_state(data["last_same"])
        det.history = [_round_from_state(r) for r in data["history"]]
        det.pending = [_round_from_state(r) for r in data["pending"]]
        for i in data.get("history_gaps", []):
            det.history[i].gap = True
        for i in data.get("pending_gaps", []):
            det.pending[i].gap = True
        det.event = NetworkEvent.from_state(data["event"]) if data["event"] else None
        det.first_seen = _canonical(data["first_seen"])
        det.last_seen = _canonical(data["last_seen"])
        det.spacings = list(data.get("spacings", []))
        det.since_switch = int(data.get("since_switch", 0))
        return det

    # -- detection --------------------------------------------------------------------------
    def _rate(self, mode: str) -> float:
        """The stray rate in ``mode`` on this series' network (posterior mean)."""
        prior = self.params.prior_rate if mode == OK else self.params.prior_leak
        net = self.network
        return self.params.rate(net.flips[mode], net.conclusive[mode], prior)

    def _stray_run_probability(self, n: int) -> float:
        """Probability that the next ``n`` blocked measurements of a clear series are all
        strays, under the posterior of its network's stray rate (Beta-binomial predictive): it
        stays high while the network has been watched for only a few rounds, so that little
        data never passes for a clean record."""
        w = self.params.prior_weight
        prior = self.params.prior_rate
        flips, rounds = self.network.flips[OK], self.network.conclusive[OK]
        return _all_of_next(n, flips + prior * w, rounds - flips + (1.0 - prior) * w)

    def _leak_run_probability(self, n: int) -> float:
        """Probability that the next ``n`` ok measurements of the open block are all leaks
        (Beta-binomial predictive): the block's own record (the ok and blocked rounds of the
        vantages it reached, ``VantageBook.reached``) updates a prior of the network's leak
        rate with the weight of ``prior_weight`` rounds. A block whose vantages have leaked
        asks more oks of its end; a clean one ends as soon as the network's record allows."""
        w = self.params.prior_weight
        mean = max(self.params.block_leak, self._rate(BLOCKED))
        leaks, rounds = self.event.book.reached() if self.event is not None else (0, 0)
        return _all_of_next(n, leaks + mean * w, rounds - leaks + (1.0 - mean) * w)

    def _strong_share(self) -> float:
        """How likely a stray is to carry a method noise "cannot" produce: ``strong_factor``
        until the network shows otherwise (a broken resolver answering NXDOMAIN, a flaky
        middlebox resetting), then the share its strays have had (posterior mean)."""
        net, w = self.network, self.params.prior_weight
        strays = net.flips[OK]
        return (net.flips.get(STRONG, 0) + self.params.strong_factor * w) / (strays + w)

    def _gap_threshold(self) -> float:
        """A silence longer than this is a gap: ``min_gap``, or ``gap_factor`` times the
        median spacing of the series' recent rounds when that is longer (a series measured
        once a day has no gap between two daily measurements)."""
        if not self.spacings:
            return self.params.min_gap
        ordered = sorted(self.spacings)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return max(self.params.min_gap, self.params.gap_factor * median)

    def _through(self, extra: Round | None = None) -> frozenset[str]:
        """The vantages that get through: over the open event and the pending run when
        blocked, over the recent rounds when clear."""
        if self.mode == BLOCKED and self.event is not None:
            book = self.event.book.copy().add_all(self.pending)
        else:
            book = VantageBook().add_all([*self.history, *self.pending])
        if extra is not None:
            book.add(extra)
        return book.through_set(self.params.through_min, self.params.through_tolerance)

    def _evidence(self, new_state: str) -> list[Round]:
        """The pending run's rounds of ``new_state`` that count: those after the last gap (a
        gap is unknown: what came before it cannot corroborate what comes after), without the
        ok rounds of vantages that get through."""
        start = max((i for i, r in enumerate(self.pending) if r.gap), default=0)
        through = self._through() if new_state == OK else frozenset()
        return [
            r for r in self.pending[start:] if r.state == new_state and not is_neutral(r, through)
        ]

    def _improbable(self, new_state: str) -> bool:
        """Can strays no longer explain the pending run? Opening: the probability that its
        blocked measurements (at most ``per_round`` a round) are all strays, times
        ``strong_factor`` for each whose method noise cannot produce (a reset, a forged
        answer, a block page), must be at most ``alpha``. Ending: the leak rate to the power of
        the run's ok measurements must be. Either way a vantage's further rounds in the run
        count ``repeat_factor`` each: strays and leaks cluster in one vantage."""
        rounds = self._evidence(new_state)
        firsts: list[Round] = []
        seen: set[str] = set()
        for r in rounds:
            vantage = r.observations[0].report_id
            if vantage not in seen:
                seen.add(vantage)
                firsts.append(r)
        if new_state == BLOCKED:
            # A censor does one thing to a target on a network: a vantage's first round that
            # disagrees with the run's usual method counts only as a repeat (``_agreeing``).
            firsts = _agreeing(firsts)
        weak: list[Round] = []
        if new_state == OK and self.event is not None:
            # An ok from a vantage known before the run that has not answered blocked in this
            # block may come from one that gets through, not yet recognised as such: weak.
            # A block explains it if that vantage gets through (``ok_in_block``), and then
            # its further oks too: they count once, as a repeat, and no more.
            known = self.event.book.stats
            weak = [r for r in firsts if known.get(r.observations[0].report_id, [1])[0] == 0]
            firsts = [r for r in firsts if r not in weak]
            quiet = {r.observations[0].report_id for r in weak}
            rounds = [r for r in rounds if r in weak or r.observations[0].report_id not in quiet]
        repeats = len(rounds) - len(firsts)
        units = len(firsts) + repeats * self.params.repeat_factor
        if units < self.params.k_min:
            return False
        if units >= self.params.k_max:
            return True
        counted = [o for r in firsts for o in r.of_state(new_state)[: self.params.per_round]]
        if new_state == BLOCKED:
            strong = sum(o.method in STRONG_METHODS for o in counted)
            prob = self._stray_run_probability(len(counted)) * self._strong_share() ** strong
            prob *= self.params.repeat_factor**repeats
            # Ok answers inside the run from vantages not shown to get through a block: each
            # is what a block explains only if that vantage gets through (``ok_in_block``).
            prob /= self.params.ok_in_block ** len(self._ok_vantages_in_run())
        else:
            # A vantage that answered blocked in this block and now answers ok may be leaking,
            # at the rate of this block (a censor's leaks belong to the block): the predictive
            # of the leaks the block has shown so far, with the network's rate as its prior.
            # An ok from a vantage new to the block (a fresh report) takes the plain rate.
            stats = self.event.book.stats if self.event is not None else {}
            leaking = sum(
                len(r.of_state(OK)[: self.params.per_round])
                for r in firsts
                if stats.get(r.observations[0].report_id, [0])[0] > 0
            )
            prob = min(0.5, self._rate(BLOCKED)) ** (len(counted) - leaking)
            prob *= self._leak_run_probability(leaking)
            prob *= self.params.repeat_factor ** (repeats - len(weak))
            prob *= self.params.ok_in_block ** len(weak)
        if new_state == OK and not self._clear_long_enough(rounds):
            return False
        return prob <= self._alpha(new_state)

    def _clear_long_enough(self, oks: list[Round]) -> bool:
        """Has the clear run lasted ``end_hold`` of a block of a day or more so far (at most
        ``end_hold_max`` seconds)? Leaks line up, and censors pause, for hours inside a block
        of days; a clear spell short beside the block is more likely that than its end, and
        ending there splits one block into two events. The end is still placed where the
        clear run began: only the moment it is declared waits."""
        if self.event is None or not oks:
            return True
        first = min(r.start for r in oks)
        lasted = (first - parse_time(self.event.onset_before)).total_seconds()
        if lasted < self.params.end_hold_after:
            return True
        hold = min(self.params.end_hold_max, self.params.end_hold * lasted)
        return (self.pending[-1].start - first).total_seconds() >= hold

    def _alpha(self, new_state: str) -> float:
        """The switching threshold: ``alpha`` to open; to end, ``alpha`` per ``alpha_rounds``
        rounds of the block so far. Every round of a block is a chance for leaks to line up
        by coincidence, so a block of weeks asks proportionally stronger evidence of its end:
        false ends (which split one block into two events) stay bounded per block, not per
        round, while a short block still ends on its second ok round."""
        if new_state == BLOCKED:
            return self.params.alpha
        return self.params.alpha * min(1.0, self.params.alpha_rounds / max(1, self.since_switch))

    def _ok_vantages_in_run(self) -> set[str]:
        """Vantages that answered ok inside the pending opening run (after its last gap)."""
        start = max((i for i, r in enumerate(self.pending) if r.gap), default=0)
        return {r.observations[0].report_id for r in self.pending[start:] if r.state == OK}

    def _count(self, mode: str, conclusive: int, flips: int = 0, strong: int = 0) -> None:
        self.network.conclusive[mode] += conclusive
        self.network.flips[mode] += flips
        if strong:
            self.network.flips[STRONG] = self.network.flips.get(STRONG, 0) + strong

    def _mark_gap(self, rnd: Round) -> None:
        previous = (self.pending or self.history or [None])[-1]
        if previous is None:
            return
        spacing = (rnd.start - previous.start).total_seconds()
        rnd.gap = spacing > self._gap_threshold()
        self.spacings.append(spacing)
        del self.spacings[: max(0, len(self.spacings) - self.params.spacing_window)]

    def feed(self, rnd: Round) -> NetworkEvent | None:
        """Take one round; return the event that this round opened or ended, if any."""
        stamp = rfc3339(rnd.start)
        self.first_seen = self.first_seen or stamp
        self.last_seen = stamp
        self._mark_gap(rnd)
        state = rnd.state
        other = BLOCKED if self.mode == OK else OK
        if (
            state == OK
            and (self.mode == BLOCKED or self.pending)
            and is_neutral(rnd, self._through(rnd))
        ):
            state = UNKNOWN  # a vantage that gets through says nothing about the block
        if state == UNKNOWN:
            if self.pending:
                self.pending.append(rnd)
            else:
                self._remember([rnd])
            return None
        if state == self.mode:
            through = self._through() if other == OK else frozenset()
            strays = [r for r in self.pending if r.state == other and not is_neutral(r, through)]
            strong = sum(other == BLOCKED and _looks_strong(r) for r in strays)
            self._count(self.mode, 1 + len(strays), len(strays), strong)
            self.since_switch += 1 + len(strays)
            self._remember([*self.pending, rnd])
            self.pending = []
            self.last_same = _latest(rnd.of_state(self.mode))
            return None
        # A round of the other state: extend the run and switch once strays cannot explain it.
        self.pending.append(rnd)
        if not self._improbable(other):
            return None
        return self._switch(rnd)

    def _remember(self, rounds: list[Round]) -> None:
        if self.event and not self.event.ended:
            for r in rounds:
                self.event.add_round(r, self.params)
        self.history.extend(rounds)
        del self.history[: max(0, len(self.history) - self.params.history)]

    def _change_point(
        self,
        rounds: list[Round],
        latest: int,
        new_state: str,
        through: frozenset[str],
        barrier: int,
    ) -> int:
        """Where the change most probably happened: the start ``j`` (a round of the new state,
        not after ``latest`` nor before the gap at ``barrier``) maximising the log-likelihood
        ratio of "new state from j on".

        A stray round of the new state well before the run is left out, while a run broken by
        the odd stray of the old state (a leaky block) starts at its true beginning. The ok
        rounds of vantages that get through count for neither state.
        """
        old_state = self.mode
        p_new_in_old = min(0.5, self._rate(old_state))
        p_old_in_new = min(0.5, self._rate(new_state))
        gain = math.log((1 - p_old_in_new) / p_new_in_old)
        loss = math.log(p_old_in_new / (1 - p_new_in_old))
        best, best_score, score = latest, float("-inf"), 0.0
        for j in range(len(rounds) - 1, barrier - 1, -1):
            state = UNKNOWN if is_neutral(rounds[j], through) else rounds[j].state
            if state == new_state:
                score += gain
            elif state == old_state:
                score += loss
            if state == new_state and j <= latest and score > best_score:
                best, best_score = j, score
        return best

    def _switch(self, trigger: Round) -> NetworkEvent:
        new_state = BLOCKED if self.mode == OK else OK
        through = self._through()
        rounds = [*self.history, *self.pending]
        evidence = {id(r) for r in self._evidence(new_state)}
        latest = len(self.history) + next(
            i for i, r in enumerate(self.pending) if id(r) in evidence
        )
        barrier = max((i for i, r in enumerate(rounds[: latest + 1]) if r.gap), default=0)
        j = self._change_point(rounds, latest, new_state, through, barrier)
        first = rounds[j]
        first_obs = min(first.of_state(new_state), key=lambda o: o.time)
        # The last measurement of the old state before the change (possibly in the same round),
        # from a vantage whose answer means something: across a gap, the bracket widens to it.
        after_obs, after_idx = None, -1
        for i in range(j, -1, -1):
            if is_neutral(rounds[i], through):
                continue
            same = [o for o in rounds[i].of_state(self.mode) if o.time < first_obs.time]
            if same:
                after_obs, after_idx = _latest(same), i
                break
        if after_obs is None and self.last_same and self.last_same.time < first_obs.time:
            after_obs = self.last_same
        unknown = sum(
            r.state == UNKNOWN or is_neutral(r, through) for r in rounds[after_idx + 1 : j]
        )
        silence = _longest_silence(rounds[max(after_idx, 0) : j + 1], after_obs, first_obs)
        uids = [o.uid for o in (after_obs, first_obs) if o is not None and o.uid]
        if new_state == BLOCKED:
            event = NetworkEvent(
                cc=self.key[0],
                asn=self.key[1],
                target=self.key[2],
                onset_after=rfc3339(after_obs.time) if after_obs else None,
                onset_before=rfc3339(first_obs.time),
                onset_unknown=unknown,
                opened_at=rfc3339(trigger.start),
                bracket_uids=uids,
                onset_silence=silence,
            )
            for r in rounds[:j]:
                event.book.add(r, before=True)
            for r in rounds[j:]:
                event.add_round(r, self.params)
            self.event = event
        else:
            event = self.event
            assert event is not None
            event.end_after = rfc3339(after_obs.time) if after_obs else event.onset_before
            event.end_before = rfc3339(first_obs.time)
            event.end_unknown = unknown
            event.end_silence = silence
            event.bracket_uids.extend(u for u in uids if u not in event.bracket_uids)
            event.book = VantageBook()  # the counts stay; the per-vantage detail is done with
            self.event = None
            if event.blocked_rounds <= self.params.k_min:
                # So short a block is as likely a burst of strays: let it raise the stray rate.
                strong = sum(n for m, n in event.methods.items() if m in STRONG_METHODS)
                n = event.blocked_rounds
                self._count(OK, n, n, min(n, strong))
        self._count(
            new_state,
            sum(r.state == new_state and not is_neutral(r, through) for r in self.pending),
        )
        self.mode = new_state
        self.since_switch = 0
        self.last_same = _latest(trigger.of_state(new_state))
        self.history = rounds[j:]
        del self.history[: max(0, len(self.history) - self.params.history)]
        self.pending = []
        return event


def _all_of_next(n: int, a: float, b: float) -> float:
    """Beta-binomial predictive: the probability that the next ``n`` trials all succeed when
    the success rate has the posterior Beta(``a``, ``b``)."""
    prob = 1.0
    for i in range(n):
        prob *= (a + i) / (a + b + i)
    return prob


def _round_method(rnd: Round) -> str | None:
    """How a round's first blocked measurement failed (None: no method given)."""
    return next((o.method for o in rnd.of_state(BLOCKED)), None)


def _agreeing(firsts: list[Round]) -> list[Round]:
    """The vantages' first blocked rounds that agree on how the target failed.

    A censor does one thing to a target on a network, so every vantage it reaches fails the
    same way; strays of different vantages that happen to coincide (a flaky uplink here, a
    broken resolver there) do not. Rounds whose method differs from the most common one (on
    a tie, the earliest) are left out; rounds without a method agree with any."""
    methods = [m for m in map(_round_method, firsts) if m is not None]
    if len(set(methods)) <= 1:
        return firsts
    counts: dict[str, int] = {}
    for m in methods:
        counts[m] = counts.get(m, 0) + 1
    modal = max(counts, key=lambda m: (counts[m], -methods.index(m)))
    return [r for r in firsts if _round_method(r) in (None, modal)]


def _looks_strong(rnd: Round) -> bool:
    return any(o.method in STRONG_METHODS for o in rnd.of_state(BLOCKED))


def _longest_silence(rounds: list[Round], after: Observation | None, before: Observation) -> int:
    """The longest time (s) without any measurement of the series inside a bracket: how much
    of its width is missing data rather than the measurements' own spacing."""
    if after is None:
        return 0
    times = sorted(
        {after.time, before.time}
        | {o.time for r in rounds for o in r.observations if after.time < o.time < before.time}
    )
    return int(max((b - a).total_seconds() for a, b in itertools.pairwise(times)))


def obs_state(obs: Observation | None) -> dict[str, Any] | None:
    if obs is None:
        return None
    data = asdict(obs)
    data["time"] = rfc3339_micro(obs.time)
    return data


def _round_from_state(data: list[dict[str, Any]]) -> Round:
    return Round([o for o in map(obs_from_state, data) if o is not None])


def obs_from_state(data: dict[str, Any] | None) -> Observation | None:
    if data is None:
        return None
    return Observation(**{**data, "time": parse_time(data["time"])})
