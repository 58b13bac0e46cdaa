"""Query parameters shared by the measurements, aggregation and export endpoints.

The parameters are declared here (for validation bounds and the OpenAPI schema) with the
spellings OONI's ``/api/v1/measurements`` and ``/api/v1/aggregation`` accept; their values are
read by ``censorwatch.store.filters``, the one filter parser, and a bad value is a 400.
Comma-separated lists (``probe_cc=PK,IR``) are read for the fields OONI reads them for.

Parameters OONI accepts but whose facts the store does not keep (Citizen Lab categories,
software versions, OONI Run links) are refused with a 400 that says so: ignoring them would
answer a narrower question with the rows of a wider one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query

from censorwatch.store.base import Filters
from censorwatch.store.filters import FilterError, parse_filters

#: Room for OONI's comma-separated lists (``MAX_LIST_VALUES`` values of the field).
LIST_LENGTH = 2048
_CC_LIST = "^[A-Za-z]{2}(,[A-Za-z]{2})*,?$"

#: OONI parameters the store cannot answer, and why.
UNSUPPORTED = {
    "category_code": "the store does not keep Citizen Lab categories",
    "software_version": "the store does not keep software versions",
    "test_version": "the store does not keep test versions",
    "engine_version": "the store does not keep engine versions",
    "ooni_run_link_id": "the store does not keep OONI Run links",
}


def refuse_unsupported(**values: str | None) -> None:
    """A 400 naming the first given parameter of ``UNSUPPORTED``."""
    for name, value in values.items():
        if value:
            raise HTTPException(400, f"{name} is not supported: {UNSUPPORTED[name]}")


def filters(
    report_id: str | None = Query(None, max_length=256),
    probe_cc: str | None = Query(
        None, max_length=LIST_LENGTH, pattern=_CC_LIST, description="Country code(s): PK or PK,IR"
    ),
    probe_asn: str | None = Query(
        None, max_length=LIST_LENGTH, description="AS1234 or 1234, or a comma-separated list"
    ),
    input: str | None = Query(None, max_length=8192, description="Exact measured input"),
    domain: str | None = Query(None, max_length=LIST_LENGTH, description="Host name(s)"),
    test_name: str | None = Query(None, max_length=LIST_LENGTH, description="Test name(s)"),
    since: str | None = Query(
        None, max_length=64, description="Inclusive; YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339"
    ),
    until: str | None = Query(
        None, max_length=64, description="Exclusive; YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339"
    ),
    verdict: str | None = Query(None, pattern="^(ok|blocked|down|unknown)$"),
    method: str | None = Query(None, max_length=64, description="e.g. dns.nxdomain"),
    confirmed: bool | None = Query(None),
    anomaly: Annotated[
        bool | None, Query(description="true: verdict blocked; false: any other verdict")
    ] = None,
    failure: Annotated[
        bool | None, Query(description="true: verdict unknown; false: any other verdict")
    ] = None,
    category_code: Annotated[str | None, Query(max_length=64, description="Refused")] = None,
    software_version: Annotated[str | None, Query(max_length=256, description="Refused")] = None,
    test_version: Annotated[str | None, Query(max_length=256, description="Refused")] = None,
    engine_version: Annotated[str | None, Query(max_length=256, description="Refused")] = None,
    ooni_run_link_id: Annotated[str | None, Query(max_length=256, description="Refused")] = None,
) -> Filters:
    refuse_unsupported(
        category_code=category_code,
        software_version=software_version,
        test_version=test_version,
        engine_version=engine_version,
        ooni_run_link_id=ooni_run_link_id,
    )
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
                "anomaly": anomaly,
                "failure": failure,
            },
            lists=True,
        )
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
