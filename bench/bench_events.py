"""Compare change detectors for block events on synthetic series with known changepoints.

    .venv/bin/python bench/bench_events.py [--series 40] [--markdown]

Every method sees the same rounds. Precision and recall count blocks matched one to one by
overlap; onset error is |estimated onset − true onset| in minutes; delay is in rounds from the
true onset to the round at which an online method knew; "in bracket" is the share of matched
onsets that lie inside the method's (after, before] bracket.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

from censorwatch.events import DetectorParams, EventTracker
from censorwatch.events import baselines as bl
from censorwatch.events.series import BLOCKED, OK, observation_from_verdict, split_rounds
from censorwatch.events.synthetic import SCENARIOS, Detection, Score, Series, draw_series, score
from censorwatch.times import parse_time


def adaptive(series: Series, params: DetectorParams | None = None) -> list[Detection]:
    tracker = EventTracker(platforms=[], params=params)
    tracker.update(series.records)
    out = []
    for ev in tracker.network_events():
        out.append(
            Detection(
                onset=parse_time(ev.onset_before),
                end=parse_time(ev.end_before) if ev.end_before else None,
                detected_at=parse_time(ev.opened_at),
                after=parse_time(ev.onset_after) if ev.onset_after else None,
                before=parse_time(ev.onset_before),
            )
        )
    return out


def points(series: Series) -> list[tuple]:
    obs = sorted(
        (o for o in map(observation_from_verdict, series.records) if o is not None),
        key=lambda o: o.time,
    )
    value = {BLOCKED: 1.0, OK: 0.0}
    return [(r.start, value.get(r.state)) for r in split_rounds(obs, 900.0)]


def on_points(fn: Callable[..., list[Detection]], **kw) -> Callable[[Series], list[Detection]]:
    return lambda s: fn(points(s), **kw)


METHODS: dict[str, Callable[[Series], list[Detection]]] = {
    "adaptive hysteresis (chosen)": adaptive,
    "adaptive, method-blind": lambda s: adaptive(s, DetectorParams(strong_factor=1.0)),
    "fixed k-of-n 2/2": on_points(bl.k_of_n, k=2, n=2),
    "fixed k-of-n 3/3": on_points(bl.k_of_n, k=3, n=3),
    "fixed k-of-n 2/3": on_points(bl.k_of_n, k=2, n=3),
    "CUSUM OONI (hourly, edd=20)": on_points(bl.cusum, edd=20),
    "CUSUM OONI (hourly, edd=3)": on_points(bl.cusum, edd=3),
    "CUSUM per round (edd=3)": on_points(bl.cusum, edd=3, bin_seconds=None),
    "CUSUM per round (edd=5)": on_points(bl.cusum, edd=5, bin_seconds=None),
    "BOCPD (hazard 1/100)": on_points(bl.bocpd, hazard=1 / 100),
    "BOCPD (hazard 1/20)": on_points(bl.bocpd, hazard=1 / 20),
    "PELT l2 (pen 1)": on_points(bl.pelt, penalty=1.0),
    "PELT l2 (pen 3)": on_points(bl.pelt, penalty=3.0),
}


def run(n_series: int, methods: dict[str, Callable[[Series], list[Detection]]]):
    table: dict[str, dict[str, Score]] = {}
    seconds: dict[str, float] = {}
    for name, fn in methods.items():
        table[name] = {}
        started = time.perf_counter()
        for scen in SCENARIOS.values():
            total = Score()
            for seed in range(n_series):
                series = draw_series(scen, seed)
                total.add(score(series, fn(series)))
            table[name][scen.name] = total
        seconds[name] = time.perf_counter() - started
    return table, seconds


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=40, help="series per scenario")
    ap.add_argument("--method", action="append", help="only these methods (substring)")
    args = ap.parse_args()
    methods = METHODS
    if args.method:
        methods = {k: v for k, v in METHODS.items() if any(m in k for m in args.method)}
    table, seconds = run(args.series, methods)
    print(
        f"{args.series} series per scenario; rounds per series: "
        + ", ".join(f"{s.name} {s.rounds}×{int(s.interval / 60)} min" for s in SCENARIOS.values())
    )
    print()
    print(
        "| method | scenario | precision | recall | F1 | false/1000 rounds "
        "| onset err min (median / p90) | delay rounds (median / p90) | in bracket |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, per in table.items():
        for scen, s in per.items():
            bracket = f"{s.bracketed}/{s.with_bracket}" if s.with_bracket else "–"
            pr = (_fmt(s.precision), _fmt(s.recall), _fmt(s.f1)) if s.true else ("–",) * 3
            print(
                f"| {name} | {scen} | {pr[0]} | {pr[1]} | {pr[2]} "
                f"| {_fmt(s.false_per_1000_rounds, 1)} "
                f"| {_fmt(s.onset_error(), 1)} / {_fmt(s.onset_error(0.9), 1)} "
                f"| {_fmt(s.delay(), 1)} / {_fmt(s.delay(0.9), 1)} | {bracket} |"
            )
    print()
    print(
        "| method | precision | recall | F1 | false/1000 rounds (unblocked-lossy) "
        "| onset err min (median / p90) | delay rounds (median) | in bracket | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, per in table.items():
        total = Score()
        for s in per.values():
            total.add(s)
        bracket = f"{total.bracketed / total.with_bracket:.2f}" if total.with_bracket else "–"
        print(
            f"| {name} | {_fmt(total.precision)} | {_fmt(total.recall)} | {_fmt(total.f1)} "
            f"| {_fmt(per['unblocked-lossy'].false_per_1000_rounds, 1)} "
            f"| {_fmt(total.onset_error(), 1)} / {_fmt(total.onset_error(0.9), 1)} "
            f"| {_fmt(total.delay(), 1)} | {bracket} | {seconds[name]:.1f} |"
        )


if __name__ == "__main__":
    main()
