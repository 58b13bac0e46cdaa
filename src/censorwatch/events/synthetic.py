"""Synthetic verdict series with known changepoints, and the scoring of detections against them.

Used by the tests and by bench/bench_events.py to measure precision, recall and onset error of
the detectors on the situations that break naive ones: random stray failures on an unblocked
network, gaps of hours, intermittent (leaky) blocks, blocks switched on and off quickly, and
blocks that look like loss (timeouts). Strays are timeouts, as random loss produces them.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from censorwatch.times import rfc3339

T0 = datetime(2024, 2, 17, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    """How one family of series is drawn."""

    name: str
    rounds: int = 288
    interval: float = 600.0  # seconds between rounds
    jitter: float = 0.1  # ± share of the interval
    blocks: tuple[int, int] = (1, 3)  # how many blocks per series
    block_rounds: tuple[int, int] = (6, 60)
    clear_rounds: tuple[int, int] = (12, 80)  # rounds between blocks
    p_stray: float = 0.0  # an unblocked round answers "blocked" (a timeout)
    p_unknown: float = 0.0  # a round answers down/unknown
    p_leak: float = 0.0  # a blocked round answers "ok"
    gaps: tuple[int, int] = (0, 0)  # how many outages per series
    gap_hours: tuple[float, float] = (2.0, 8.0)
    block_method: str = "tls.reset"  # what the censor's block looks like


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("clean"),
        Scenario("noisy", p_stray=0.05, p_unknown=0.05),
        Scenario("sparse", interval=1800.0, rounds=240, gaps=(2, 4), p_stray=0.02, p_unknown=0.1),
        Scenario("leaky", p_leak=0.25, p_stray=0.02),
        Scenario("switching", blocks=(3, 6), block_rounds=(3, 8), clear_rounds=(3, 10)),
        # The hard case: the block itself looks like loss (a blackhole: timeouts only).
        Scenario("blackhole", block_method="tcp.timeout", p_stray=0.02, p_unknown=0.02),
        Scenario("unblocked-lossy", blocks=(0, 0), p_stray=0.05, p_unknown=0.05),
    )
}


@dataclass
class Series:
    """One synthetic series: its verdict records and the true block intervals."""

    records: list[dict[str, Any]]
    truth: list[tuple[datetime, datetime | None]]  # block on at, off at (None: still on)
    rounds: int
    interval: float
    asn: str = "AS64500"
    target: str = "blocked.example"


def draw_series(scenario: Scenario, seed: int, asn: str = "AS64500") -> Series:
    rng = random.Random(f"{scenario.name}:{seed}:{asn}")
    step = timedelta(seconds=scenario.interval)
    end = T0 + step * scenario.rounds
    truth: list[tuple[datetime, datetime | None]] = []
    cursor = T0 + step * rng.randint(*scenario.clear_rounds) + step * rng.random()
    for _ in range(rng.randint(*scenario.blocks)):
        on = cursor.replace(microsecond=0)
        off = on + step * (rng.randint(*scenario.block_rounds) + rng.random() - 0.5)
        off = off.replace(microsecond=0)
        if on >= end:
            break
        truth.append((on, off if off < end else None))
        cursor = off + step * (rng.randint(*scenario.clear_rounds) + rng.random() - 0.5)
    outages = []
    for _ in range(rng.randint(*scenario.gaps)):
        start = T0 + (end - T0) * rng.random()
        outages.append((start, start + timedelta(hours=rng.uniform(*scenario.gap_hours))))
    records = []
    for i in range(scenario.rounds):
        t = T0 + step * i + step * rng.uniform(-scenario.jitter, scenario.jitter)
        t = t.replace(microsecond=0)
        if any(a <= t < b for a, b in outages):
            continue
        blocked = any(on <= t and (off is None or t < off) for on, off in truth)
        verdict, method, confidence = "ok", None, 0.9
        if rng.random() < scenario.p_unknown:
            verdict = rng.choice(["down", "unknown"])
        elif blocked and rng.random() >= scenario.p_leak:
            verdict, method = "blocked", scenario.block_method
        elif not blocked and rng.random() < scenario.p_stray:
            verdict, method, confidence = "blocked", "tcp.timeout", 0.5
        records.append(
            {
                "measurement_uid": f"{scenario.name}-{seed}-{asn}-{i:05d}",
                "report_id": f"r-{scenario.name}-{seed}-{asn}-{i:05d}",
                "input": "https://blocked.example/",
                "target": "blocked.example",
                "probe_cc": "ZZ",
                "probe_asn": asn,
                "measurement_start_time": rfc3339(t),
                "verdict": verdict,
                "method": method,
                "confidence": confidence if verdict == "blocked" else 0.9,
                "confirmed": False,
                "fingerprint": None,
                "evidence": [],
                "layers": {"dns": None, "tcp": None, "tls": None, "http": None},
            }
        )
    return Series(records=records, truth=truth, rounds=scenario.rounds, interval=scenario.interval)


@dataclass(frozen=True)
class Detection:
    """A detected block: point estimates, optional bracket, and when it was known."""

    onset: datetime
    end: datetime | None
    detected_at: datetime | None = None
    after: datetime | None = None  # onset bracket, when the method gives one
    before: datetime | None = None


@dataclass
class Score:
    true: int = 0
    detected: int = 0
    matched: int = 0
    onset_errors: list[float] = field(default_factory=list)  # minutes
    delays: list[float] = field(default_factory=list)  # rounds from onset to detection
    bracketed: int = 0  # matched detections whose bracket holds the true onset
    with_bracket: int = 0
    rounds: int = 0
    end_errors: list[float] = field(default_factory=list)  # minutes, matched ended blocks
    fragments: list[int] = field(default_factory=list)  # detections overlapping each true block

    def add(self, other: Score) -> None:
        for name in ("true", "detected", "matched", "bracketed", "with_bracket", "rounds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.onset_errors += other.onset_errors
        self.delays += other.delays
        self.end_errors += other.end_errors
        self.fragments += other.fragments

    @property
    def fragmentation(self) -> float:
        """Detections per true block, over the true blocks that were found at all."""
        found = [f for f in self.fragments if f]
        return sum(found) / len(found) if found else float("nan")

    def end_error(self, q: float = 0.5) -> float:
        return _quantile(self.end_errors, q)

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_per_1000_rounds(self) -> float:
        return 1000.0 * (self.detected - self.matched) / self.rounds if self.rounds else 0.0

    def onset_error(self, q: float = 0.5) -> float:
        return _quantile(self.onset_errors, q)

    def delay(self, q: float = 0.5) -> float:
        return _quantile(self.delays, q)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, int(q * 100) - 1)]


def score(series: Series, detections: list[Detection]) -> Score:
    """Match detections to true blocks (one to one, by overlap, nearest onset first)."""
    horizon = T0 + timedelta(seconds=series.interval * (series.rounds + 1))
    result = Score(true=len(series.truth), detected=len(detections), rounds=series.rounds)
    pairs = []
    for ti, (on, off) in enumerate(series.truth):
        t_end = off or horizon
        overlapping = 0
        for di, det in enumerate(detections):
            d_end = det.end or horizon
            if det.onset < t_end and d_end > on:
                pairs.append((abs((det.onset - on).total_seconds()), ti, di))
                overlapping += 1
        result.fragments.append(overlapping)
    used_t: set[int] = set()
    used_d: set[int] = set()
    for err, ti, di in sorted(pairs):
        if ti in used_t or di in used_d:
            continue
        used_t.add(ti)
        used_d.add(di)
        result.matched += 1
        result.onset_errors.append(err / 60.0)
        det, (on, off) = detections[di], series.truth[ti]
        if off is not None and det.end is not None:
            result.end_errors.append(abs((det.end - off).total_seconds()) / 60.0)
        if det.detected_at is not None:
            result.delays.append((det.detected_at - on).total_seconds() / series.interval)
        if det.before is not None:
            result.with_bracket += 1
            if (det.after is None or det.after < on) and on <= det.before:
                result.bracketed += 1
    return result
