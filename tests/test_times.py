"""The one time module: every accepted spelling reads as the same instant, and the canonical
spelling sorts as time does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from censorwatch.times import (
    as_utc,
    canonical_time,
    compact_stamp,
    naive_utc,
    ooni_time,
    parse_time,
    rfc3339,
    rfc3339_micro,
)

INSTANT = datetime(2024, 2, 17, 10, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "spelling",
    [
        "2024-02-17T10:00:05Z",
        "2024-02-17t10:00:05z",
        "2024-02-17 10:00:05",  # OONI's measurement_start_time (UTC)
        "2024-02-17T10:00:05",
        "2024-02-17T10:00:05+00:00",
        "2024-02-17T15:30:05+05:30",
        "2024-02-17T15:30:05+0530",
        "2024-02-17T05:00:05-05:00",
        "2024-02-17T10:00:05.000Z",
        "  2024-02-17T10:00:05Z\n",
    ],
)
def test_every_spelling_reads_as_the_same_instant(spelling: str) -> None:
    parsed = parse_time(spelling)
    assert parsed == INSTANT and parsed.tzinfo == UTC
    assert canonical_time(spelling) == "2024-02-17T10:00:05Z"


def test_dates_fractions_and_what_is_refused() -> None:
    assert parse_time("2024-02-17") == datetime(2024, 2, 17, tzinfo=UTC)
    assert parse_time("2024-02-17T10:00:05.123456789Z").microsecond == 123456
    assert parse_time("2024-02-17T10:00Z") == datetime(2024, 2, 17, 10, tzinfo=UTC)
    for bad in ("last tuesday", "2024-W07", "20240217", "2024-02-30", "2024-02-17T25:00:00Z",
                "2024-02-17T10:00:0xZ", "", "2024-02-17T10:00:05+5",
                "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_time(bad)


def test_writers_use_utc_whatever_zone_they_are_given() -> None:
    in_karachi = INSTANT.astimezone(timezone(timedelta(hours=5)))
    assert rfc3339(in_karachi) == "2024-02-17T10:00:05Z"
    assert ooni_time(in_karachi) == "2024-02-17 10:00:05"
    assert compact_stamp(in_karachi) == "20240217T100005Z"
    assert rfc3339_micro(INSTANT.replace(microsecond=42)) == "2024-02-17T10:00:05.000042Z"
    # A naive time is UTC already, never the host's local time.
    naive = datetime(2024, 2, 17, 10, 0, 5)
    assert rfc3339(naive) == "2024-02-17T10:00:05Z" and as_utc(naive) == INSTANT
    assert naive_utc(in_karachi) == naive


def test_written_times_read_back() -> None:
    assert parse_time(rfc3339(INSTANT)) == INSTANT
    assert parse_time(ooni_time(INSTANT)) == INSTANT
    precise = INSTANT.replace(microsecond=123456)
    assert parse_time(rfc3339_micro(precise)) == precise


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_canonical_string_order_is_time_order(a: datetime, b: datetime, offset: int) -> None:
    zone = timezone(timedelta(minutes=offset))
    a_utc, b_utc = a.replace(tzinfo=UTC, microsecond=0), b.replace(tzinfo=UTC, microsecond=0)
    sa, sb = rfc3339(a_utc.astimezone(zone)), rfc3339(b_utc)
    assert (sa < sb) == (a_utc < b_utc) and (sa == sb) == (a_utc == b_utc)
    assert parse_time(sa) == a_utc
