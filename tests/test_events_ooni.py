"""Real OONI measurements (analysed) through event detection: odd shapes, equal timestamps and
mixed verdicts must give well-formed events whose evidence points at real measurements."""

from __future__ import annotations

from pathlib import Path

from censorwatch.analysis import analyze
from censorwatch.events import detect_events
from censorwatch.observations.reader import iter_measurements
from censorwatch.times import parse_time


def test_events_over_real_ooni_measurements(shared_data: Path) -> None:
    loaded = [item for item in iter_measurements([shared_data / "ooni"]) if item.ok]
    verdicts = [analyze(item.measurement).to_record() for item in loaded]
    assert len(verdicts) >= 60
    uids = {v["measurement_uid"] for v in verdicts}
    by_uid = {v["measurement_uid"]: v for v in verdicts}
    events = detect_events(verdicts)
    assert events, "the QA set blocks www.example.com again and again on one network"
    for ev in events:
        assert set(ev.evidence) <= uids
        assert ev.onset.after is None or parse_time(ev.onset.after) <= parse_time(ev.onset.before)
        if ev.end:
            assert parse_time(ev.onset.before) <= parse_time(ev.end.after)
            assert parse_time(ev.end.after) <= parse_time(ev.end.before)
        m = ev.measurements
        assert m["total"] == m["blocked"] + m["ok"] + m["down"] + m["unknown"]
        # Every measurement cited comes from the event's own network and country.
        for uid in ev.evidence:
            v = by_uid[uid]
            assert v["probe_cc"] == ev.cc and v["probe_asn"] in ev.asns
