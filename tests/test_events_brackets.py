"""Bracket correctness on random noiseless series: every true onset and end lies inside its
bracket, brackets are one round wide unless data is missing, and blocks open on their second
blocked round."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.events import EventTracker
from censorwatch.events.synthetic import T0
from censorwatch.times import parse_time, rfc3339

ROUND = timedelta(minutes=5)

segment = st.tuples(
    st.integers(min_value=3, max_value=8),  # conclusive rounds in the segment
    st.lists(st.booleans(), min_size=8, max_size=8),  # an unknown round before round i?
    st.integers(min_value=0, max_value=3),  # hours of silence before the segment (often 0)
    st.floats(min_value=0.01, max_value=0.99),  # where the true change falls in its gap
)


def build(segments, first_blocked: bool):
    """Verdicts for alternating ok/blocked segments, and the true change instants."""
    records, changes = [], []
    t = T0
    blocked = first_blocked
    last_time = None
    n = 0
    for si, (length, unknown_before, silence, where) in enumerate(segments):
        if silence >= 2:
            t += timedelta(hours=silence)
        first_of_segment = True
        for i in range(length):
            if unknown_before[i]:
                records.append(_record(n, t, "unknown"))
                n += 1
                t += ROUND
            if first_of_segment and si > 0:
                # The true change lies between the previous conclusive round and this one.
                changes.append((blocked, last_time + (t - last_time) * where))
            first_of_segment = False
            records.append(_record(n, t, "blocked" if blocked else "ok"))
            last_time = t
            n += 1
            t += ROUND
        blocked = not blocked
    return records, changes


def _record(n: int, t, verdict: str) -> dict:
    return {
        "measurement_uid": f"m{n:04d}",
        "report_id": f"r{n:04d}",
        "input": "https://site.example/",
        "target": "site.example",
        "probe_cc": "ZZ",
        "probe_asn": "AS64511",
        "measurement_start_time": rfc3339(t.replace(microsecond=0)),
        "verdict": verdict,
        "method": "tls.reset" if verdict == "blocked" else None,
        "confidence": 0.9,
    }


@settings(max_examples=150, deadline=None)
@given(st.lists(segment, min_size=1, max_size=8), st.booleans())
def test_true_changes_lie_inside_brackets(segments, first_blocked) -> None:
    records, changes = build(segments, first_blocked)
    tracker = EventTracker(platforms=[])
    tracker.update(records)
    events = sorted(tracker.network_events(), key=lambda e: e.onset_before)
    onsets = [t for to_blocked, t in changes if to_blocked]
    ends = [t for to_blocked, t in changes if not to_blocked]
    n_blocked_segments = len(onsets) + int(first_blocked)
    assert len(events) == n_blocked_segments
    if first_blocked:
        assert events[0].onset_after is None  # blocked since before the first measurement
        events = events[1:] if not ends else events
    if first_blocked and ends:
        first_end = ends.pop(0)
        ev0 = sorted(tracker.network_events(), key=lambda e: e.onset_before)[0]
        assert parse_time(ev0.end_after) < first_end <= parse_time(ev0.end_before)
        events = sorted(tracker.network_events(), key=lambda e: e.onset_before)[1:]
    for ev, onset in zip(events, onsets, strict=True):
        after, before = parse_time(ev.onset_after), parse_time(ev.onset_before)
        assert after < onset <= before
        if ev.onset_unknown == 0 and before - after < timedelta(hours=1):
            assert before - after == ROUND
    ended = [e for e in events if e.end_before]
    for ev, end in zip(ended, ends, strict=False):
        assert parse_time(ev.end_after) < end <= parse_time(ev.end_before)
    assert len(ended) == len(ends)


def test_block_opens_on_its_second_blocked_round_and_gap_widens_bracket() -> None:
    verdicts = ["ok"] * 6 + ["unknown"] * 3 + ["blocked"] * 5
    records = [_record(i, T0 + ROUND * i, v) for i, v in enumerate(verdicts)]
    tracker = EventTracker(platforms=[])
    changes = tracker.update(records[:10])
    assert changes == []  # one blocked round: not yet an event
    changes = tracker.update(records[10:11])
    assert [c.kind for c in changes] == ["opened"]
    ev = changes[0].event
    assert ev.onset.after == rfc3339(T0 + ROUND * 5)
    assert ev.onset.before == rfc3339(T0 + ROUND * 9)
    assert ev.measurements["onset_unknown"] == 3  # the bracket says why it is wide
    assert ev.evidence[:2] == ["m0005", "m0009"]
