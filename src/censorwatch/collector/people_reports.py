"""People's reports: "I can't reach X from here", counted per network and fed to check-in.

``POST /api/v1/reports`` takes a target (a platform name of the profiles, or an http(s) URL),
what failed in plain words (``store.base.REPORT_FAILURES``) and an optional note of at most
``MAX_NOTE_BYTES`` bytes, as JSON or as the explorer's plain HTML form. The collector looks up
the AS and country of the connection address (the check-in's lookup, ``checkin.locate``) and
lets the address go: what is stored is the country, the network, the target, the failure word,
the note and the hour (``Store.add_people_reports``). No accounts, no cookies, no sessions.

Two limits hold in memory only (``collector.ratelimit``): per source (a keyed hash of the
address under a key that never leaves the process) and per network (the AS). Over either, the
answer is 429 with ``Retry-After``.

**Surge.** A target surges on a network when, in the last ``window_seconds`` (an hour), it has
at least ``surge_reports`` reports from at least ``surge_sources`` distinct sources, and at
least ``surge_factor`` times its hourly baseline on that network (its mean reports per hour
over the ``baseline_days`` before, from the store). The recent window and the source count
live in memory (sources are never stored), so a restart forgets a surge in progress. While a
target surges, check-in puts its URLs (a platform's: every endpoint of its profile) at the head
of that network's list, so probes that check in hourly measure it within the hour. Reports
never change a verdict: they only decide what is measured first.
"""

from __future__ import annotations

import html
import json
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from censorwatch.collector.checkin import locate
from censorwatch.collector.client_address import request_address
from censorwatch.collector.ratelimit import Rate, SourceKeys, TokenBuckets
from censorwatch.collector.validate import Invalid, read_body
from censorwatch.store.base import REPORT_FAILURES, PeopleReport, ReportCount, ReportFilters, Store
from censorwatch.store.filters import FilterError, parse_asn, parse_cc, parse_when
from censorwatch.targets import check_url, profiles
from censorwatch.times import naive_utc, rfc3339, utcnow

router = APIRouter(tags=["people's reports"])

MAX_REPORT_BYTES = 8 * 1024
MAX_NOTE_BYTES = 1000
MAX_TARGET_CHARS = 2048
FIELDS = ("target", "failure", "note")
#: Where the explorer's form lives (a successful form post is sent back there).
FORM_PAGE = "/explorer/report"
MAX_COUNTS = 10_000
_FORM_TYPE = "application/x-www-form-urlencoded"
_ALLOWED_CONTROLS = {"\n", "\t"}


class ReportError(ValueError):
    """A report refused; ``status`` is the HTTP status, the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(RuntimeError):
    """Too many reports from this source or network; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: float, what: str) -> None:
        super().__init__(f"too many reports from this {what}; try again later")
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True, slots=True)
class ReportInput:
    target: str
    failure: str
    note: str | None


# -- checking what a person sends -----------------------------------------------------------------


def parse_target(value: Any) -> str:
    """A platform name of the profiles (``x``, any case) or an http(s) URL, normalised: scheme
    and host lower case, no user name or fragment."""
    if not isinstance(value, str) or not value.strip():
        raise ReportError("target must be a platform name or an http(s) URL")
    text = value.strip()
    if len(text) > MAX_TARGET_CHARS:
        raise ReportError(f"target must be at most {MAX_TARGET_CHARS} characters")
    if text.lower() in profiles.available():
        return text.lower()
    if any(ord(c) < 33 or 127 <= ord(c) < 160 for c in text):
        raise ReportError("target must not hold spaces or control characters")
    problem = check_url(text)
    if problem is not None:
        known = ", ".join(profiles.available())
        raise ReportError(f"target must be a platform name ({known}) or an http(s) URL: {problem}")
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise ReportError("target URL must not carry a user name or password")
    host = (parts.hostname or "").rstrip(".")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def parse_note(value: Any) -> str | None:
    """Free text, at most ``MAX_NOTE_BYTES`` bytes of UTF-8, without control characters other
    than newlines and tabs; empty means none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReportError("note must be text")
    text = value.replace("\r\n", "\n").strip()
    if len(text.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise ReportError(f"note must be at most {MAX_NOTE_BYTES} bytes")
    if any((ord(c) < 32 or 127 <= ord(c) < 160) and c not in _ALLOWED_CONTROLS for c in text):
        raise ReportError("note must not hold control characters (other than newlines, tabs)")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ReportError("note must be valid text (no lone surrogates)")
    return text or None


def parse_report(fields: Any) -> ReportInput:
    """The report's three fields, checked; any other field is refused."""
    if not isinstance(fields, dict):
        raise ReportError("report must be a JSON object")
    unknown = sorted(str(k)[:40] for k in fields if k not in FIELDS)
    if unknown:
        raise ReportError(f"unknown fields: {', '.join(unknown)} (expected {', '.join(FIELDS)})")
    failure = fields.get("failure")
    if not isinstance(failure, str) or failure not in REPORT_FAILURES:
        words = "; ".join(f'"{w}"' for w in REPORT_FAILURES)
        raise ReportError(f"failure must be one of: {words}")
    return ReportInput(parse_target(fields.get("target")), failure, parse_note(fields.get("note")))


def decode_body(raw: bytes, content_type: str) -> tuple[dict[str, Any], bool]:
    """The fields of a JSON or form-encoded body, and whether it was the form."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"body is not UTF-8 (byte {exc.start})") from None
    media = content_type.split(";")[0].strip().lower()
    if media == _FORM_TYPE:
        try:
            pairs = parse_qs(
                text, keep_blank_values=True, strict_parsing=bool(text), errors="strict"
            )
        except (ValueError, UnicodeDecodeError):
            raise ReportError("form body is malformed") from None
        if any(len(v) > 1 for v in pairs.values()):
            raise ReportError("each form field may be given once")
        return {k: v[0] for k, v in pairs.items()}, True
    if media not in ("application/json", ""):
        raise ReportError("send JSON (application/json) or the form", status=415)
    try:
        return json.loads(text), False
    except (ValueError, RecursionError):
        raise ReportError("body is not valid JSON (or nests too deep)") from None


# -- the policy: limits and surges ---------------------------------------------------------------


#: 6 reports at once from one source, then one every 10 minutes (6 an hour).
PER_SOURCE = Rate(capacity=6, refill_seconds=600.0)
#: 120 at once from one network, then one every 30 s (120 an hour).
PER_NETWORK = Rate(capacity=120, refill_seconds=30.0)


@dataclass(frozen=True)
class ReportPolicy:
    """The limits and the surge rule (module docstring); defaults for a public collector."""

    per_source: Rate = PER_SOURCE
    per_network: Rate = PER_NETWORK
    surge_reports: int = 5
    surge_sources: int = 3
    surge_factor: float = 3.0
    window_seconds: float = 3600.0
    baseline_days: int = 7
    max_pairs: int = 10_000  # (network, target) pairs followed at once
    max_per_pair: int = 512  # recent reports remembered per pair


@dataclass
class _Recent:
    """The last hour's reports of one (network, target): (monotonic time, source hash)."""

    seen: deque[tuple[float, str]] = field(default_factory=deque)


class SurgeWindow:
    """Recent reports per (AS, country, target), in memory, bounded and expiring."""

    def __init__(self, policy: ReportPolicy) -> None:
        self.policy = policy
        self._pairs: OrderedDict[tuple[str, str, str], _Recent] = OrderedDict()

    def _trim(self, recent: _Recent, now: float) -> None:
        while recent.seen and now - recent.seen[0][0] >= self.policy.window_seconds:
            recent.seen.popleft()

    def add(self, asn: str, cc: str, target: str, source: str, now: float) -> None:
        key = (asn, cc, target)
        recent = self._pairs.pop(key, None) or _Recent(deque(maxlen=self.policy.max_per_pair))
        self._trim(recent, now)
        recent.seen.append((now, source))
        self._pairs[key] = recent
        while len(self._pairs) > self.policy.max_pairs:
            self._pairs.popitem(last=False)

    def candidates(self, asn: str, cc: str, now: float) -> list[tuple[str, int]]:
        """Targets of the network over the absolute thresholds: (target, reports), most first."""
        out = []
        for (a, c, target), recent in list(self._pairs.items()):
            if (a, c) != (asn, cc):
                continue
            self._trim(recent, now)
            reports = len(recent.seen)
            sources = len({s for _, s in recent.seen})
            if reports >= self.policy.surge_reports and sources >= self.policy.surge_sources:
                out.append((target, reports))
        return sorted(out, key=lambda tr: (-tr[1], tr[0]))


class PeopleReports:
    """The collector's side of people's reports: limits, storing, surges for check-in."""

    def __init__(
        self,
        store: Store,
        policy: ReportPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy or ReportPolicy()
        self.clock = clock
        self.now = now
        self.sources = SourceKeys()
        self._per_source = TokenBuckets(self.policy.per_source)
        self._per_network = TokenBuckets(self.policy.per_network)
        self._window = SurgeWindow(self.policy)
        self._lock = threading.Lock()

    def source_of(self, address: str | None) -> str:
        return self.sources.of(address)

    def accept(self, report: ReportInput, asn: str, cc: str, source: str) -> PeopleReport:
        """Spend a token of the source and of the network, store the report, remember it for
        the surge rule. ``RateLimited`` when either has none left (nothing is stored)."""
        at = self.clock()
        with self._lock:
            waits = {
                "source": self._per_source.wait(source, at),
                "network": self._per_network.wait(asn, at),
            }
            what, longest = max(waits.items(), key=lambda kv: kv[1])
            if longest > 0:
                raise RateLimited(longest, what)
            self._per_source.take(source, at)
            self._per_network.take(asn, at)
        hour = naive_utc(self.now()).replace(minute=0, second=0, microsecond=0)
        row = PeopleReport(hour, cc, asn, report.target, report.failure, report.note)
        self.store.add_people_reports([row])
        with self._lock:
            self._window.add(asn, cc, report.target, source, at)
        return row

    def surging(self, asn: str, cc: str) -> list[str]:
        """The network's surging targets, most reported first (module docstring)."""
        with self._lock:
            found = self._window.candidates(asn, cc, self.clock())
        if not found:
            return []
        this_hour = naive_utc(self.now()).replace(minute=0, second=0, microsecond=0)
        start = this_hour - timedelta(days=self.policy.baseline_days)
        until = this_hour - timedelta(hours=1)  # the hour the window reaches into is not base
        hours = max(1.0, (until - start) / timedelta(hours=1))
        before: dict[str, int] = {}
        for c in self.store.people_report_counts(
            ReportFilters(
                probe_cc=cc,
                probe_asn=asn,
                target=tuple(t for t, _ in found),
                since=start,
                until=until,
            )
        ):
            before[c.target] = before.get(c.target, 0) + c.reports
        factor = self.policy.surge_factor
        return [t for t, n in found if n >= factor * before.get(t, 0) / hours]

    def priorities(self, asn: str, cc: str) -> list[str]:
        """The URLs check-in puts first on this network: every surging target's."""
        urls: list[str] = []
        for target in self.surging(asn, cc):
            if "://" in target:
                urls.append(target)
            else:
                urls += [t.url for t in profiles.load(target)]
        return list(dict.fromkeys(urls))


# -- HTTP ----------------------------------------------------------------------------------------


async def _read(request: Request) -> bytes:
    try:
        return bytes(await read_body(request, MAX_REPORT_BYTES, "report"))
    except Invalid as exc:
        raise ReportError(str(exc), status=exc.status) from None


def _refusal(status: int, message: str, form: bool, headers: dict[str, str]) -> Response:
    if not form:
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Report not sent · censorwatch</title></head><body>"
        f"<h1>Your report was not sent</h1><p>{html.escape(message)}</p>"
        f'<p><a href="{FORM_PAGE}">Back to the form</a></p></body></html>'
    )
    return HTMLResponse(page, status_code=status, headers=headers)


@router.post(
    "/api/v1/reports",
    summary="Report that a target cannot be reached from here (no account, nothing kept "
    "that identifies you)",
    status_code=201,
    responses={
        400: {"description": "bad field"},
        413: {"description": "report too large"},
        415: {"description": "neither JSON nor the form"},
        429: {"description": "too many reports from this source or network (Retry-After)"},
        503: {"description": "this server does not take reports now"},
    },
)
async def submit_report(request: Request) -> Response:
    content_type = request.headers.get("content-type", "")
    form = content_type.split(";")[0].strip().lower() == _FORM_TYPE
    service: PeopleReports | None = getattr(request.app.state, "people_reports", None)
    if service is None or request.app.state.collector is None:
        return _refusal(503, "this server does not take reports", form, {})
    try:
        fields, form = decode_body(await _read(request), content_type)
        report = parse_report(fields)
    except ReportError as exc:
        return _refusal(exc.status, str(exc), form, {})
    address = request_address(request)
    asn, _, cc = locate(request, address)
    source = service.source_of(address)
    del address  # looked up and hashed: from here on only the network and the hash remain
    try:
        stored = await run_in_threadpool(service.accept, report, asn, cc, source)
    except RateLimited as exc:
        return _refusal(429, str(exc), form, {"Retry-After": str(exc.retry_after)})
    except Exception:  # the store: say so, keep nothing of the request in the log
        return _refusal(503, "reports cannot be stored right now; try again later", form, {})
    if form:
        return RedirectResponse(f"{FORM_PAGE}?sent=1", status_code=303)
    return JSONResponse(
        {
            "probe_cc": stored.probe_cc,
            "probe_asn": stored.probe_asn,
            "target": stored.target,
            "failure": stored.failure,
            "hour": rfc3339(stored.hour),
        },
        status_code=201,
    )


@router.get("/api/v1/reports", summary="People's reports per country, network, target and hour")
async def report_counts(
    request: Request,
    probe_cc: str | None = Query(None, max_length=2),
    probe_asn: str | None = Query(None, max_length=12),
    target: str | None = Query(None, max_length=MAX_TARGET_CHARS),
    since: str | None = Query(None, max_length=64),
    until: str | None = Query(None, max_length=64),
) -> JSONResponse:
    try:
        query = ReportFilters(
            probe_cc=parse_cc(probe_cc),
            probe_asn=parse_asn(probe_asn),
            target=target.strip().lower() if target and "://" not in target else target,
            since=parse_when(since, "since"),
            until=parse_when(until, "until"),
        )
    except FilterError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    counts: list[ReportCount] = await run_in_threadpool(
        request.app.state.store.people_report_counts, query
    )
    return JSONResponse(
        {
            "metadata": {"count": len(counts), "limit": MAX_COUNTS},
            "results": [
                {
                    "probe_cc": c.probe_cc,
                    "probe_asn": c.probe_asn,
                    "target": c.target,
                    "hour": rfc3339(c.hour),
                    "reports": c.reports,
                }
                for c in counts[:MAX_COUNTS]
            ],
        }
    )


__all__ = [
    "PeopleReports",
    "RateLimited",
    "ReportError",
    "ReportInput",
    "ReportPolicy",
    "parse_report",
    "router",
]
