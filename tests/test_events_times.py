"""Events compare times in one canonical spelling (``censorwatch.times``), whatever spelling a
state file or a query holds, so that string order is time order."""

from __future__ import annotations

from typing import Any

from censorwatch.events.api import _norm
from censorwatch.events.detector import DetectorParams, NetworkEvent, SeriesDetector
from censorwatch.events.records import national_records


def _event_state(asn: str, onset_after: str, onset_before: str, **more: Any) -> dict[str, Any]:
    return {
        "cc": "PK",
        "asn": asn,
        "target": "x.com",
        "onset_after": onset_after,
        "onset_before": onset_before,
        "onset_unknown": 0,
        "opened_at": onset_before,
        "last_blocked": onset_before,
        "rounds": 3,
        "blocked_rounds": 3,
        "confidence_sum": 2.7,
        **more,
    }


def test_a_state_file_in_any_spelling_loads_canonical() -> None:
    ev = NetworkEvent.from_state(
        _event_state(
            "AS1",
            "2024-02-17 09:00:00",
            "2024-02-17T15:00:00+05:00",
            end_after="2024-02-18T10:00:00.250Z",
            end_before="2024-02-18t11:00:00z",
        )
    )
    assert (ev.onset_after, ev.onset_before) == ("2024-02-17T09:00:00Z", "2024-02-17T10:00:00Z")
    assert (ev.end_after, ev.end_before) == ("2024-02-18T10:00:00Z", "2024-02-18T11:00:00Z")
    assert ev.opened_at == ev.last_blocked == "2024-02-17T10:00:00Z"
    det = SeriesDetector.from_state(
        ("PK", "AS1", "x.com"),
        DetectorParams(),
        {
            "mode": "ok",
            "last_same": None,
            "history": [],
            "pending": [],
            "event": None,
            "first_seen": "2024-02-17T06:00:00+01:00",
            "last_seen": None,
        },
    )
    assert (det.first_seen, det.last_seen) == ("2024-02-17T05:00:00Z", None)


def test_a_national_event_brackets_by_time_not_by_spelling() -> None:
    # As strings, "2024-02-17T10:30:00+05:00" (05:30 UTC) sorts after "2024-02-17T06:00:00Z".
    first = NetworkEvent.from_state(
        _event_state("AS1", "2024-02-17T09:00:00+05:00", "2024-02-17T10:30:00+05:00")
    )
    second = NetworkEvent.from_state(
        _event_state("AS2", "2024-02-17T05:45:00Z", "2024-02-17T06:00:00Z")
    )
    (national,) = national_records([second, first], {}, DetectorParams())
    assert national.onset.after == "2024-02-17T04:00:00Z"
    assert national.onset.before == "2024-02-17T05:30:00Z"
    assert sorted(national.asns) == ["AS1", "AS2"]


def test_the_events_api_reads_query_times_into_the_same_spelling() -> None:
    assert _norm("2024-02-17T15:00:00+05:00") == "2024-02-17T10:00:00Z"
    assert _norm("2024-02-17") == "2024-02-17T00:00:00Z"
    assert _norm(None) is None
