"""Query parameters shared by the measurements, aggregation and export endpoints."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import HTTPException, Query

from censorwatch.model import parse_time
from censorwatch.store.base import VERDICTS, Filters

_ASN_RE = re.compile(r"^(?:AS)?(\d{1,10})$", re.I)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(value: str | None, name: str) -> datetime | None:
    """A date (``YYYY-MM-DD``, midnight UTC) or an RFC 3339 time, as naive UTC."""
    if value is None or value == "":
        return None
    try:
        if _DATE_RE.match(value):
            return datetime.strptime(value, "%Y-%m-%d")
        return parse_time(value).astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise HTTPException(400, f"{name} must be YYYY-MM-DD or an RFC 3339 time") from None


def parse_asn(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    m = _ASN_RE.match(value.strip())
    if m is None:
        raise HTTPException(400, "probe_asn must look like AS1234")
    return f"AS{int(m.group(1))}"


def filters(
    report_id: str | None = Query(None, max_length=256),
    probe_cc: str | None = Query(None, pattern="^[A-Za-z]{2}$", description="Country code"),
    probe_asn: str | None = Query(None, max_length=16, description="AS1234 or 1234"),
    input: str | None = Query(None, max_length=8192, description="Exact measured input"),
    domain: str | None = Query(None, max_length=255),
    test_name: str | None = Query(None, max_length=64),
    since: str | None = Query(None, max_length=64, description="Inclusive; date or RFC 3339"),
    until: str | None = Query(None, max_length=64, description="Exclusive; date or RFC 3339"),
    verdict: str | None = Query(None, pattern="^(ok|blocked|down|unknown)$"),
    method: str | None = Query(None, max_length=64, description="e.g. dns.nxdomain"),
    confirmed: bool | None = Query(None),
) -> Filters:
    if verdict is not None and verdict not in VERDICTS:
        raise HTTPException(400, "unknown verdict")
    return Filters(
        report_id=report_id or None,
        probe_cc=probe_cc.upper() if probe_cc else None,
        probe_asn=parse_asn(probe_asn),
        input=input or None,
        domain=domain.lower().rstrip(".") if domain else None,
        test_name=test_name or None,
        since=parse_when(since, "since"),
        until=parse_when(until, "until"),
        verdict=verdict,
        method=method or None,
        confirmed=confirmed,
    )
