"""Reference detectors, measured against the adaptive hysteresis (bench/bench_events.py).

Each takes one series as rounds (time, value) with value 1 (blocked), 0 (ok) or None (no
conclusive answer) and returns detections. They are here to be compared, not used by the
``events`` command: OONI-style CUSUM (hourly medians, as OONI's pipeline runs it, and per round),
a fixed k-of-n state machine, Bayesian online changepoint detection and PELT (``ruptures``,
optional).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from censorwatch.events.synthetic import Detection

Point = tuple[datetime, float | None]


def _conclusive(points: Sequence[Point]) -> list[tuple[datetime, float]]:
    return [(t, v) for t, v in points if v is not None]


def _segments_to_detections(
    points: list[tuple[datetime, float]], labels: list[int], detected: list[datetime | None]
) -> list[Detection]:
    """Runs of label 1 become detections (onset = first point, end = first point after)."""
    out: list[Detection] = []
    start = None
    for i, lab in enumerate(labels):
        if lab and start is None:
            start = i
        elif not lab and start is not None:
            out.append(Detection(points[start][0], points[i][0], detected[start]))
            start = None
    if start is not None:
        out.append(Detection(points[start][0], None, detected[start]))
    return out


def cusum(
    points: Sequence[Point],
    *,
    mu0: float = 0.0,
    mu1: float = 0.7,
    edd: float = 20.0,
    bin_seconds: float | None = 3600.0,
) -> list[Detection]:
    """Two-sided, state-aware CUSUM with fixed means, as in OONI's event detector.

    With ``bin_seconds`` the series is first reduced to the median of each bin (OONI uses
    hourly medians); the change is reported at the bin where the statistic crosses ``h``.
    """
    data = _conclusive(points)
    if bin_seconds:
        bins: dict[int, list[float]] = {}
        for t, v in data:
            bins.setdefault(int(t.timestamp() // bin_seconds), []).append(v)
        data = [
            (datetime.fromtimestamp(b * bin_seconds, tz=data[0][0].tzinfo), _median(vs))
            for b, vs in sorted(bins.items())
        ]
    v = mu1 - mu0
    h = edd * v / 2.0
    state, s_pos, s_neg = 0, 0.0, 0.0
    out: list[Detection] = []
    for t, y in data:
        if state == 0:
            s_pos = max(0.0, s_pos + (y - mu0) - v / 2.0)
            if s_pos > h:
                state, s_pos = 1, 0.0
                out.append(Detection(t, None, t))
        else:
            s_neg = max(0.0, s_neg - (y - mu1) - v / 2.0)
            if s_neg > h:
                state, s_neg = 0, 0.0
                last = out[-1]
                out[-1] = Detection(last.onset, t, last.detected_at)
    return out


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def k_of_n(points: Sequence[Point], *, k: int = 2, n: int = 2) -> list[Detection]:
    """Open when k of the last n conclusive rounds are blocked, close when k of n are ok."""
    data = _conclusive(points)
    state = 0
    window: list[int] = []
    out: list[Detection] = []
    for i, (t, _) in enumerate(data):
        window = [*window[-(n - 1) :], i] if n > 1 else [i]
        other = [j for j in window if data[j][1] != state]
        if len(other) >= k:
            first = data[other[0]][0]
            if state == 0:
                out.append(Detection(first, None, t, after=_prev(data, other[0]), before=first))
            else:
                last = out[-1]
                out[-1] = Detection(last.onset, first, last.detected_at, last.after, last.before)
            state = 1 - state
            window = []
    return out


def _prev(data: list[tuple[datetime, float]], i: int) -> datetime | None:
    return data[i - 1][0] if i > 0 else None


def bocpd(
    points: Sequence[Point],
    *,
    hazard: float = 1 / 100,
    a: float = 0.5,
    b: float = 0.5,
    max_run: int = 400,
) -> list[Detection]:
    """Bayesian online changepoint detection (Adams & MacKay 2007), Beta-Bernoulli model.

    After each round the most probable run length gives the current segment; the series is
    blocked while that segment's mean is above one half. The onset is the segment's start.
    """
    data = _conclusive(points)
    log_r = [0.0]  # log P(run length = i)
    stats: list[tuple[float, float]] = [(a, b)]  # posterior Beta per run length
    log_h, log_1h = math.log(hazard), math.log(1 - hazard)
    state = 0
    out: list[Detection] = []
    for t_i, (t, y) in enumerate(data):
        pred = [
            math.log((al if y else be) / (al + be)) + lr
            for (al, be), lr in zip(stats, log_r, strict=True)
        ]
        growth = [p + log_1h for p in pred]
        cp = _logsumexp([p + log_h for p in pred])
        log_r = [cp, *growth][:max_run]
        norm = _logsumexp(log_r)
        log_r = [x - norm for x in log_r]
        stats = [(a, b)] + [(al + y, be + 1 - y) for al, be in stats]
        stats = stats[:max_run]
        run = max(range(len(log_r)), key=log_r.__getitem__)
        start = t_i - run + 1 if run else t_i
        seg = [v for _, v in data[max(0, start) : t_i + 1]]
        blocked = sum(seg) / len(seg) > 0.5
        if blocked and state == 0:
            first = next(i for i in range(max(0, start), t_i + 1) if data[i][1])
            out.append(Detection(data[first][0], None, t))
            state = 1
        elif not blocked and state == 1:
            first = next((i for i in range(max(0, start), t_i + 1) if not data[i][1]), t_i)
            last = out[-1]
            out[-1] = Detection(last.onset, data[first][0], last.detected_at)
            state = 0
    return out


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def pelt(points: Sequence[Point], *, penalty: float = 3.0, min_size: int = 2) -> list[Detection]:
    """Offline PELT (``ruptures``, least squares) on the conclusive rounds."""
    import numpy as np
    import ruptures

    data = _conclusive(points)
    if len(data) < 2 * min_size:
        return []
    signal = np.array([v for _, v in data], dtype=float).reshape(-1, 1)
    breaks = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(signal).predict(pen=penalty)
    labels: list[int] = []
    start = 0
    for stop in breaks:
        mean = float(signal[start:stop].mean())
        labels += [int(mean > 0.5)] * (stop - start)
        start = stop
    return _segments_to_detections(data, labels, [None] * len(data))


def ooni_binomial_cusum(
    measurements: Sequence[Point],
    *,
    p0: float = 0.05,
    p1: float = 0.5,
    h: float = 10.0,
    gap_halflife: float = 48.0,
    cell_seconds: float = 3600.0,
) -> list[Detection]:
    """OONI's newer event detector (oonipipeline ``analysis/detectorV2``), rebuilt from its
    published method: measurements are counted per hourly cell (k blocked of n conclusive);
    each cell adds its binomial log-likelihood ratio ``k·ln(p1/p0) + (n−k)·ln((1−p1)/(1−p0))``
    to a state-aware two-sided CUSUM (``s_pos`` runs while ok, ``s_neg`` while blocked, each
    pinned at zero while the other state holds); crossing ``h`` switches the state and reports
    a change at that cell's hour. The first state is found silently from unknown. Accumulators
    decay by half every ``gap_halflife`` hours of silence once a silence exceeds 24 hours.

    Takes one point per *measurement* (time, 1 blocked / 0 ok / None), not per round. OONI
    keeps a series per DNS resolver network and per layer (DNS, TCP, TLS); the verdicts here
    carry neither, so one series pools them.
    """
    cells: dict[int, list[int]] = {}
    for t, v in measurements:
        if v is None:
            continue
        cell = cells.setdefault(int(t.timestamp() // cell_seconds), [0, 0])
        cell[0] += int(v >= 0.5)
        cell[1] += 1
    w_block = math.log(p1 / p0)
    w_clear = math.log((1.0 - p1) / (1.0 - p0))
    tz = measurements[0][0].tzinfo if measurements else None
    state, s_pos, s_neg, last = "unk", 0.0, 0.0, None
    out: list[Detection] = []
    for index in sorted(cells):
        k, n = cells[index]
        if last is not None:
            gap_hours = (index - last) * cell_seconds / 3600.0
            if gap_hours > 24:
                decay = 0.5 ** (gap_hours / gap_halflife)
                s_pos, s_neg = s_pos * decay, s_neg * decay
        last = index
        llr = k * w_block + (n - k) * w_clear
        when = datetime.fromtimestamp(index * cell_seconds, tz=tz)
        if state == "unk":
            s_pos, s_neg = max(0.0, s_pos + llr), max(0.0, s_neg - llr)
            if s_pos > h:  # blocked from the start: OONI reports no change for it
                state, s_pos, s_neg = "blk", 0.0, 0.0
            elif s_neg > h:
                state, s_pos, s_neg = "ok", 0.0, 0.0
        elif state == "ok":
            s_pos, s_neg = max(0.0, s_pos + llr), 0.0
            if s_pos > h:
                state, s_pos = "blk", 0.0
                out.append(Detection(when, None, when))
        else:
            s_neg, s_pos = max(0.0, s_neg - llr), 0.0
            if s_neg > h:
                state, s_neg = "ok", 0.0
                if out and out[-1].end is None:
                    last_det = out[-1]
                    out[-1] = Detection(last_det.onset, when, last_det.detected_at)
    return out
