"""Check-in: a probe says what it is, the collector says where it is and what to measure.

The shape is OONI's probe-services check-in (``POST /api/v1/check-in``), so OONI Probe and
censorwatch probes can use either side. In: the probe's software, platform, network type
(``on_wifi``), charging state, run type and, optionally, the categories it wants. Out: the
probe's AS, network name and country as the collector sees them (from the connection address,
which is then dropped: it is neither stored nor logged), the URLs to test and the controls.

The URL list is, in order: targets people report blocked on that network (when a report
counter is attached, :mod:`censorwatch.collector.people_reports`), every platform profile's
endpoints, then the Citizen Lab lists of the country and the global list from
``CENSORWATCH_TEST_LISTS`` (a folder of ``<cc>.csv`` and ``global.csv``, what ``censorwatch
targets sync`` writes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from censorwatch.collector.client_address import request_address
from censorwatch.geo import ip_database
from censorwatch.netinfo import AddressPlan
from censorwatch.targets import Target, profiles, testlists
from censorwatch.times import utcnow

router = APIRouter(tags=["probe services"])

MAX_CHECKIN_BYTES = 64 * 1024
MAX_URLS = 1000
TEST_LISTS_ENV = "CENSORWATCH_TEST_LISTS"
CONTROLS_ENV = "CENSORWATCH_CHECKIN_CONTROLS"

_STRING_FIELDS = ("platform", "probe_asn", "probe_cc", "run_type", "software_name")
_BOOL_FIELDS = ("charging", "on_wifi")

#: (asn, cc) -> targets to put first (a surge of people's reports), set by the reports module.
Prioritiser = Callable[[str, str], list[str]]


class CheckinError(ValueError):
    """A check-in request that cannot be answered; the message says which field."""


def parse_request(raw: bytes) -> dict[str, Any]:
    """The request's fields, checked: strings are short strings, flags are booleans."""
    if len(raw) > MAX_CHECKIN_BYTES:
        raise CheckinError(f"request larger than {MAX_CHECKIN_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise CheckinError("request is not JSON") from None
    if not isinstance(body, dict):
        raise CheckinError("request must be a JSON object")
    for name in _STRING_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 128):
            raise CheckinError(f"{name} must be a string of at most 128 characters")
    if body.get("software_version") is not None and not isinstance(body["software_version"], str):
        raise CheckinError("software_version must be a string")
    for name in _BOOL_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise CheckinError(f"{name} must be true or false")
    wc = body.get("web_connectivity") or {}
    codes = wc.get("category_codes") if isinstance(wc, dict) else None
    if codes is not None and (
        not isinstance(codes, list) or not all(isinstance(c, str) for c in codes)
    ):
        raise CheckinError("web_connectivity.category_codes must be a list of strings")
    return body


def where(plan: AddressPlan, address: str | None) -> tuple[str, str, str]:
    """(AS, network name, country) of the connection address; OONI's unknowns otherwise."""
    if not address:
        return "AS0", "", "ZZ"
    today = plan.at(None)
    finder = getattr(today, "facts", None)
    if callable(finder):
        found = finder(address)
        if found is None:
            return "AS0", "", "ZZ"
        asn = f"AS{found.asn}" if found.asn else "AS0"
        return asn, found.as_org_name, (found.cc or "ZZ").upper()
    info = today.lookup(address)
    if info is None:
        return "AS0", "", "ZZ"
    return f"AS{info.asn}", info.as_org_name, (info.cc or "ZZ").upper()


def test_list(
    cc: str, asn: str, categories: list[str] | None, first: list[str] | None = None
) -> list[dict[str, str]]:
    """The URLs to measure, reported ones first, no URL twice, at most :data:`MAX_URLS`."""
    targets: list[Target] = [Target(url, source="reports") for url in first or []]
    for name in profiles.available():
        targets += profiles.load(name)
    folder = os.environ.get(TEST_LISTS_ENV)
    if folder:
        for stem in (cc.lower(), "global"):
            path = Path(folder) / f"{stem}.csv"
            if path.is_file():
                targets += testlists.load(path)
    wanted = {c.upper() for c in categories or []}
    seen: set[str] = set()
    out: list[dict[str, str]] = []
    for t in targets:
        if t.url in seen:
            continue
        if wanted and t.category_code and t.category_code.upper() not in wanted:
            continue
        seen.add(t.url)
        out.append({"category_code": t.category_code or "MISC", "country_code": cc, "url": t.url})
        if len(out) >= MAX_URLS:
            break
    return out


def controls() -> list[dict[str, str]]:
    """The controls handed to probes: ``CENSORWATCH_CHECKIN_CONTROLS`` (comma-separated
    URLs), else those of the probe's built-in defaults."""
    configured = [u.strip() for u in os.environ.get(CONTROLS_ENV, "").split(",") if u.strip()]
    if not configured:
        from censorwatch.probe.defaults import load

        configured = list(load(None).control_urls)
    return [{"address": url, "type": "https"} for url in configured]


def answer(body: dict[str, Any], located: tuple[str, str, str], first: list[str]) -> dict:
    """The check-in response for a probe located at ``located`` (AS, network name, country)."""
    asn, network_name, cc = located
    wc = body.get("web_connectivity") or {}
    categories = wc.get("category_codes") if isinstance(wc, dict) else None
    return {
        "v": 1,
        "probe_asn": asn,
        "probe_cc": cc,
        "probe_network_name": network_name,
        "utc_time": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tests": {"web_connectivity": {"urls": test_list(cc, asn, categories, first)}},
        "conf": {"features": {}, "test_helpers": {"web-connectivity": controls()}},
    }


def locate(request: Request, address: str | None) -> tuple[str, str, str]:
    """(AS, network name, country) of ``address`` in the app's IP database
    (``app.state.ip_database``, else ``CENSORWATCH_ASN_DB``); check-in and people's reports
    look addresses up here alike, and keep nothing of them."""
    plan = getattr(request.app.state, "ip_database", None) or ip_database(None)
    return where(plan, address)


@router.post("/api/v1/check-in")
async def check_in(request: Request) -> JSONResponse:
    """OONI's probe-services check-in; the connection address is used for the lookup only."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_CHECKIN_BYTES:
            return JSONResponse({"error": "request too large"}, status_code=413)
    try:
        body = parse_request(bytes(raw))
    except CheckinError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    located = locate(request, request_address(request))
    prioritise: Prioritiser | None = getattr(request.app.state, "checkin_priorities", None)
    first = prioritise(located[0], located[2]) if prioritise is not None else []
    return JSONResponse(answer(body, located, first))


__all__ = ["CheckinError", "answer", "locate", "parse_request", "router", "test_list", "where"]
