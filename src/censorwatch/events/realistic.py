"""Verdict series shaped like real OONI data, with known blocks: what breaks a detector that
only ever saw tidy rounds.

What real series of one (network, target) look like, and what this generator draws:

- **Several vantages** per network (OONI reports; ``report_id`` tells them apart). Most measure
  directly; some measure through a VPN or an outside resolver and keep answering ok during a
  block. Vantages come and go.
- **Sparse, irregular sampling**: each vantage measures a few times a day at random moments,
  fewer at night; the whole series has gaps of hours to days (no one measured, or the data did
  not arrive).
- **Anomalies before any block**: a few percent, clustered: a vantage has bad hours (a flaky
  uplink, a broken resolver) in which many of its measurements fail, some with methods that
  look like censorship (a reset, NXDOMAIN).
- **Blocks** of hours, days and months; flapping (on and off again within days); partial
  (only some direct vantages are blocked, and blocked ones leak); a change of method mid-block.

Every scenario is named and seeded; ``draw_real(scenario, seed)`` returns a ``synthetic.Series``
(so ``synthetic.score`` scores it) with the true on/off times of each block, and which vantages
measure directly (for the analyst's brackets in the tests).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from censorwatch.events.synthetic import T0, Series
from censorwatch.times import rfc3339

HOUR = 3600.0
DAY = 24 * HOUR
WEAK_ANOMALIES = ("tcp.timeout", "dns.failure", "tls.timeout")
STRONG_ANOMALIES = ("tls.reset", "dns.nxdomain")


@dataclass(frozen=True)
class RealScenario:
    """How one family of realistic series is drawn. Times are in hours unless said."""

    name: str
    days: float = 42.0
    vantages: tuple[int, int] = (4, 7)  # how many vantages measure the network
    through_share: float = 0.25  # share of vantages behind a VPN / outside resolver
    per_day: tuple[float, float] = (2.0, 6.0)  # measurements a day, per vantage
    p_unknown: float = 0.05  # a measurement answers down/unknown
    anomaly_rate: float = 0.02  # share of measurements anomalous outside blocks
    flaky_hours: tuple[float, float] = (2.0, 10.0)  # how long a vantage's bad spell lasts
    strong_share: float = 0.3  # anomalies that look like censorship (reset, NXDOMAIN)
    gaps: tuple[int, int] = (1, 3)  # outages of the whole series
    gap_hours: tuple[float, float] = (6.0, 96.0)
    blocks: tuple[int, int] = (1, 1)
    block_hours: tuple[float, float] = (72.0, 168.0)
    clear_hours: tuple[float, float] = (72.0, 240.0)  # between blocks (and before the first)
    methods: tuple[str, ...] = ("tls.reset",)  # the block's methods, in order (a change)
    leak: tuple[float, float] = (0.0, 0.1)  # a blocked direct vantage still gets through
    partial: float = 1.0  # share of direct vantages the block reaches
    dense: float = 1.0  # sampling multiplier during blocks (people measure more)


REAL_SCENARIOS: dict[str, RealScenario] = {
    s.name: s
    for s in (
        # The officially reported kind: one national block of about a week.
        RealScenario("national-week", block_hours=(120.0, 192.0), clear_hours=(600.0, 840.0)),
        # Blocks of hours (a protest, an exam): seen only because people measure more then.
        RealScenario(
            "hours",
            days=21.0,
            per_day=(6.0, 12.0),
            blocks=(2, 4),
            block_hours=(4.0, 12.0),
            clear_hours=(60.0, 120.0),
            dense=2.0,
            gaps=(0, 2),
            gap_hours=(6.0, 24.0),
        ),
        RealScenario(
            "days",
            blocks=(2, 3),
            block_hours=(24.0, 96.0),
            clear_hours=(96.0, 240.0),
            methods=("tcp.timeout",),
        ),
        RealScenario(
            "months",
            days=150.0,
            per_day=(1.0, 4.0),
            block_hours=(45 * 24.0, 75 * 24.0),
            clear_hours=(20 * 24.0, 40 * 24.0),
            methods=("dns.forged",),
            gaps=(2, 5),
        ),
        RealScenario(
            "flapping",
            days=28.0,
            per_day=(6.0, 10.0),
            blocks=(3, 5),
            block_hours=(12.0, 36.0),
            clear_hours=(36.0, 72.0),
            gaps=(0, 1),
            gap_hours=(6.0, 24.0),
        ),
        RealScenario("partial", partial=0.75, leak=(0.05, 0.2), blocks=(1, 2)),
        RealScenario("method-change", methods=("dns.forged", "tls.reset"), blocks=(1, 2)),
        RealScenario("unblocked", blocks=(0, 0)),
    )
}


@dataclass
class Vantage:
    report_id: str
    direct: bool  # measures through the network's own paths (a block reaches it)
    per_day: float
    active: tuple[float, float]  # seconds from T0
    flaky: list[tuple[float, float]] = field(default_factory=list)  # bad spells, s from T0


@dataclass
class RealSeries(Series):
    """A realistic series: its records and true blocks, and who measured it."""

    vantages: list[Vantage] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)


def _report_id(rng: random.Random, asn: str, start: float) -> str:
    stamp = (T0 + timedelta(seconds=start)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}_webconnectivity_PK_{asn[2:]}_n1_{rng.getrandbits(64):016x}"


def _vantages(scen: RealScenario, rng: random.Random, asn: str, span: float) -> list[Vantage]:
    out = []
    n = rng.randint(*scen.vantages)
    n_through = max(1, round(n * scen.through_share)) if scen.through_share else 0
    for i in range(n):
        # Most vantages watch the whole period; some join late or leave early.
        start = 0.0 if rng.random() < 0.7 else rng.uniform(0, span * 0.3)
        stop = span if rng.random() < 0.7 else rng.uniform(span * 0.7, span)
        per_day = rng.uniform(*scen.per_day)
        v = Vantage(_report_id(rng, asn, start), i >= n_through, per_day, (start, stop))
        # Bad spells: Poisson in time, so that about ``anomaly_rate`` of all measurements fall
        # in one (a measurement in a spell fails with probability 0.6).
        mean_spell = sum(scen.flaky_hours) / 2 * HOUR
        share = min(0.5, scen.anomaly_rate / 0.6)
        rate = share / mean_spell / (1 - share) if share < 1 else 0.0
        t = start + rng.expovariate(rate) if rate else stop
        while t < stop:
            length = rng.uniform(*scen.flaky_hours) * HOUR
            v.flaky.append((t, t + length))
            t += length + rng.expovariate(rate)
        out.append(v)
    return out


def _times(rng: random.Random, v: Vantage, rate_at, dense: float) -> list[float]:
    """Measurement moments of one vantage: a Poisson process, thinned at night and boosted
    during blocks (``rate_at``), about ``per_day`` a day outside blocks."""
    out, t = [], v.active[0]
    bound = max(1.0, dense)
    propose = v.per_day / _MEAN_DIURNAL * bound / DAY
    while True:
        t += rng.expovariate(propose)
        if t >= v.active[1]:
            return out
        if rng.random() < _diurnal(t) * rate_at(t) / bound:
            out.append(t)


def _diurnal(t: float) -> float:
    """Relative measuring activity by local hour (UTC+5): busy by day, quiet at night."""
    hour = ((t / HOUR) + 5) % 24
    if 7 <= hour <= 23:
        return 0.55 + 0.45 * math.sin(math.pi * (hour - 7) / 16)
    return 0.15


_MEAN_DIURNAL = sum(_diurnal(h * HOUR - 5 * HOUR) for h in range(24)) / 24


def draw_real(scen: RealScenario, seed: int, asn: str = "AS17557") -> RealSeries:
    rng = random.Random(f"real:{scen.name}:{seed}:{asn}")
    span = scen.days * DAY
    truth: list[tuple[float, float]] = []
    cursor = rng.uniform(*scen.clear_hours) * HOUR
    for _ in range(rng.randint(*scen.blocks)):
        length = rng.uniform(*scen.block_hours) * HOUR
        if cursor + length >= span - DAY:
            break
        truth.append((cursor, cursor + length))
        cursor += length + rng.uniform(*scen.clear_hours) * HOUR
    gaps = []
    for _ in range(rng.randint(*scen.gaps)):
        start = rng.uniform(0, span)
        gaps.append((start, start + rng.uniform(*scen.gap_hours) * HOUR))
    vantages = _vantages(scen, rng, asn, span)
    direct = [v for v in vantages if v.direct]
    blocked_sets, leaks, switches = [], [], []
    for on, off in truth:
        reach = max(1, round(len(direct) * scen.partial))
        blocked_sets.append({v.report_id for v in rng.sample(direct, reach)})
        leaks.append(rng.uniform(*scen.leak))
        # A change of method at a random moment of the block's middle half.
        switches.append(on + (off - on) * rng.uniform(0.25, 0.75))

    def block_at(t: float) -> int | None:
        return next((i for i, (on, off) in enumerate(truth) if on <= t < off), None)

    def rate_at(t: float) -> float:
        return scen.dense if block_at(t) is not None else 1.0

    records: list[dict[str, Any]] = []
    for v in vantages:
        for t in _times(rng, v, rate_at, scen.dense):
            if any(a <= t < b for a, b in gaps):
                continue
            i = block_at(t)
            verdict, method, confidence = "ok", None, 0.9
            flaky = any(a <= t < b for a, b in v.flaky)
            if rng.random() < scen.p_unknown:
                verdict = rng.choice(["down", "unknown"])
            elif i is not None and v.report_id in blocked_sets[i] and rng.random() >= leaks[i]:
                methods = scen.methods
                method = methods[0] if len(methods) == 1 or t < switches[i] else methods[1]
                verdict = "blocked"
            elif flaky and rng.random() < 0.6:
                strong = rng.random() < scen.strong_share
                method = rng.choice(STRONG_ANOMALIES if strong else WEAK_ANOMALIES)
                verdict, confidence = "blocked", 0.6
            records.append(
                _record(scen.name, seed, asn, v.report_id, t, verdict, method, confidence)
            )
    records.sort(key=lambda r: (r["measurement_start_time"], r["measurement_uid"]))

    def at(s: float) -> datetime:
        return (T0 + timedelta(seconds=s)).replace(microsecond=0)

    return RealSeries(
        records=records,
        truth=[(at(on), at(off)) for on, off in truth],
        rounds=int(span // HOUR),
        interval=HOUR,
        asn=asn,
        target="twitter.com",
        vantages=vantages,
        gaps=[(at(a), at(b)) for a, b in gaps],
    )


def _record(
    scenario: str,
    seed: int,
    asn: str,
    report_id: str,
    t: float,
    verdict: str,
    method: str | None,
    confidence: float,
) -> dict[str, Any]:
    when = (T0 + timedelta(seconds=t)).replace(microsecond=0)
    return {
        "measurement_uid": f"{when:%Y%m%d%H%M%S}_{scenario}_{seed}_{report_id[-8:]}",
        "report_id": report_id,
        "input": "https://twitter.com/",
        "target": "twitter.com",
        "probe_cc": "PK",
        "probe_asn": asn,
        "measurement_start_time": rfc3339(when),
        "verdict": verdict,
        "method": method,
        "confidence": confidence if verdict == "blocked" else 0.9,
        "confirmed": False,
        "fingerprint": None,
        "evidence": [],
        "layers": {"dns": None, "tcp": None, "tls": None, "http": None},
    }
