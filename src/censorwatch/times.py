"""Time, read and written one way: UTC, RFC 3339 in records and APIs, OONI's spelling inside
measurements.

Every stage reads times with :func:`parse_time` and writes them with :func:`rfc3339` (or
:func:`ooni_time` inside a measurement), so that two times written by censorwatch compare as
strings exactly as they compare as times: one canonical spelling, ``YYYY-MM-DDTHH:MM:SSZ``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

#: OONI's measurement time format (``measurement_start_time``, ``test_start_time``).
OONI_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: The canonical spelling: RFC 3339, UTC, whole seconds, ``Z``.
RFC3339_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# A date, or a date and time (``T``, ``t`` or a space between), seconds and fraction optional,
# then ``Z`` or an offset; OONI's ``YYYY-MM-DD HH:MM:SS`` is this without the zone (UTC).
_TIME_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<clock>\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?)?"
)


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive ``dt`` is taken to be UTC already (never the host's zone)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def naive_utc(value: datetime | str) -> datetime:
    """``value`` (a datetime, or text ``parse_time`` reads) as naive UTC, the form the store's
    columns, the filters and the timelines compute with (``ValueError`` for unreadable text)."""
    if isinstance(value, str):
        value = parse_time(value)
    return as_utc(value).replace(tzinfo=None)


def parse_time(value: str) -> datetime:
    """Read a date, OONI's ``YYYY-MM-DD HH:MM:SS`` or RFC 3339; timezone-aware UTC.

    A date alone is midnight UTC; a time without a zone is UTC (OONI's convention). Anything
    else (week dates, compact ISO 8601, words, times out of range) raises ``ValueError``.
    """
    if (
        len(value) == 20
        and value[19] == "Z"
        and value[10] == "T"
        and value[4] + value[7] + value[13] + value[16] == "--::"
    ):  # the canonical spelling, which most stored times are: read without the regex
        return datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)
    m = _TIME_RE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"not a date or an RFC 3339 time: {value.strip()[:64]!r}")
    text = m["date"]
    if m["clock"]:
        text += "T" + m["clock"]
        if m["fraction"]:
            text += "." + m["fraction"][:6].ljust(6, "0")
    zone = m["zone"]
    if zone and zone not in "Zz":
        text += zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return as_utc(datetime.fromisoformat(text))
    except OverflowError:  # an offset that moves the time out of years 1..9999
        raise ValueError(f"time out of range: {value.strip()[:64]!r}") from None


def rfc3339(dt: datetime) -> str:
    """The canonical spelling (UTC, whole seconds, ``Z``): string order is time order."""
    return as_utc(dt).strftime(RFC3339_FORMAT)


def rfc3339_micro(dt: datetime) -> str:
    """RFC 3339 UTC with microseconds, for receipts that order events within a second."""
    return as_utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_time(value: str) -> str:
    """Any accepted spelling of a time → the canonical one (``ValueError`` when unreadable)."""
    return rfc3339(parse_time(value))


def ooni_time(dt: datetime) -> str:
    """OONI's measurement time format (UTC, ``YYYY-MM-DD HH:MM:SS``)."""
    return as_utc(dt).strftime(OONI_TIME_FORMAT)


def compact_stamp(dt: datetime) -> str:
    """``YYYYMMDDThhmmssZ``: the time inside report IDs and file names."""
    return as_utc(dt).strftime("%Y%m%dT%H%M%SZ")
