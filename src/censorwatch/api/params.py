"""Query parameters shared by the measurements, aggregation and export endpoints.

The parameters are declared here (for validation bounds and the OpenAPI schema); their values
are read by ``censorwatch.store.filters``, the one filter parser, and a bad value is a 400.
"""

from __future__ import annotations

from fastapi import HTTPException, Query

from censorwatch.store.base import Filters
from censorwatch.store.filters import FilterError, parse_filters


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
    try:
        return parse_filters(
            {
                "report_id": report_id,
                "probe_cc": probe_cc,
                "probe_asn": probe_asn,
                "input": input,
                "domain": domain,
                "test_name": test_name,
                "since": since,
                "until": until,
                "verdict": verdict,
                "method": method,
                "confirmed": confirmed,
            }
        )
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
