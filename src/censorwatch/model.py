"""The data model shared by every stage: measurements, verdicts, and the helpers that name them.

A *measurement* is an OONI data-format measurement and stays a plain ``dict`` (the format is
open-ended: OONI adds keys, censorwatch adds ``x_``-prefixed ones). Everything censorwatch
derives from measurements is typed here, so that every stage agrees on one shape. Times are
read and written by ``censorwatch.times``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from censorwatch.times import parse_time

VerdictKind = Literal["ok", "blocked", "down", "unknown"]
LayerState = Literal["ok", "blocked", "down", "unknown"] | None

#: Every blocking method a verdict can name (docs/verdicts.md says what each means).
METHODS: tuple[str, ...] = (
    "dns.nxdomain",
    "dns.bogon",
    "dns.forged",
    "dns.failure",
    "tcp.timeout",
    "tcp.reset",
    "tls.reset",
    "tls.timeout",
    "tls.mitm",
    "http.blockpage",
    "http.reset",
    "http.timeout",
    "http.diff",
    "quic.blocked",
    "throttled",
)


class Layers(msgspec.Struct, omit_defaults=False):
    dns: LayerState = None
    tcp: LayerState = None
    tls: LayerState = None
    http: LayerState = None


class Verdict(msgspec.Struct, omit_defaults=False):
    """What the analysis concludes about one measurement: the stable verdict record."""

    measurement_uid: str
    report_id: str
    input: str | None
    target: str | None
    probe_cc: str
    probe_asn: str
    measurement_start_time: str  # RFC 3339, UTC
    verdict: VerdictKind
    method: str | None = None
    confidence: float = 0.0
    confirmed: bool = False
    fingerprint: str | None = None
    evidence: list[str] = msgspec.field(default_factory=list)
    layers: Layers = msgspec.field(default_factory=Layers)
    #: The circumvention summary (technique -> {status, reason}; docs/verdicts.md), only when
    #: the probe tried ways around the block: absent from every other record.
    workarounds: dict[str, dict[str, str]] | msgspec.UnsetType = msgspec.UNSET
    #: Where the censor sits (hop, address, AS, placement; docs/verdicts.md), only when the
    #: probe ran a localization (``--locate``): absent from every other record.
    locate: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET

    def to_record(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def canonical_json(obj: Any) -> bytes:
    """A deterministic serialisation: UTF-8, keys sorted, no insignificant whitespace.

    Used wherever bytes must be reproducible: measurement UIDs, signatures, log leaves.
    """
    return msgspec.json.encode(obj, order="sorted")


def derive_measurement_uid(measurement: dict[str, Any]) -> str:
    """A stable identifier: the same measurement always gets the same UID.

    Shaped like OONI's (``YYYYMMDDhhmmss.ffffff_CC_testname_hex``) so that tools that split
    OONI UIDs keep working; the tail is a content hash rather than a random number, which is
    what makes resubmission idempotent.
    """
    body = {k: v for k, v in measurement.items() if k not in ("measurement_uid", "x_signature")}
    digest = hashlib.sha256(canonical_json(body)).hexdigest()
    try:
        start = parse_time(str(measurement.get("measurement_start_time") or ""))
        stamp = start.strftime("%Y%m%d%H%M%S")
    except ValueError:
        stamp = "00000000000000"
    cc = str(measurement.get("probe_cc") or "ZZ")[:2].upper()
    test = str(measurement.get("test_name") or "unknown").replace("_", "")
    return f"{stamp}.{int(digest[:6], 16) % 1000000:06d}_{cc}_{test}_{digest[:16]}"


class Bracket(msgspec.Struct, omit_defaults=False):
    """When a change happened: strictly after ``after`` and no later than ``before`` (RFC 3339).

    ``after`` is null when no measurement precedes the change (the series starts blocked).
    """

    after: str | None
    before: str


EventScope = Literal["network", "national"]
EventStatus = Literal["ongoing", "ended"]


class Event(msgspec.Struct, omit_defaults=False):
    """A block seen on one network (scope ``network``) or on several networks of one country at
    the same time (scope ``national``): the stable event record (docs/events.md)."""

    event_id: str
    scope: EventScope
    cc: str
    asns: list[str]
    target: str
    methods: list[str]
    onset: Bracket
    end: Bracket | None
    status: EventStatus
    confidence: float
    measurements: dict[str, int]
    evidence: list[str]
    #: Users on the blocking networks, from per-AS estimates (``events.population``); absent
    #: (never zero) when no estimate covers the event's networks.
    impact: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    #: What still gets through (``events.workarounds``): per technique family, how many of the
    #: event's blocked measurements found it ``works`` / ``fails`` / ``not tried``; absent when
    #: none of them carried a circumvention summary.
    workarounds: dict[str, dict[str, int]] | msgspec.UnsetType = msgspec.UNSET
    #: The same counts per network (national events only).
    workarounds_by_network: dict[str, dict[str, dict[str, int]]] | msgspec.UnsetType = msgspec.UNSET
    #: One line: ``x.com blocked on AS17557 by TLS reset since …; works: DoH; fails: …``.
    workarounds_summary: str | msgspec.UnsetType = msgspec.UNSET
    #: Where the censor sits (``events.locations``): the places the blocked measurements'
    #: localizations named (placement, hop, address, AS, count), the most often named first;
    #: absent when none was localized.
    censor_location: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    #: The same per network (national events only).
    censor_location_by_network: dict[str, list[dict[str, Any]]] | msgspec.UnsetType = msgspec.UNSET
    #: One line: ``censor at hop 1 (198.18.1.2, AS17557): in the probe's own ISP (5 of 5 …)``;
    #: for a national event, one clause per network.
    censor_location_summary: str | msgspec.UnsetType = msgspec.UNSET
    #: People's reports of the target from the event's networks (``events.records.with_reports``):
    #: ``before_onset_24h`` in the 24 h before the onset bracket opens, ``during_onset`` within
    #: it; absent when there were none. Reports never make an event: they are only counted.
    reports: dict[str, int] | msgspec.UnsetType = msgspec.UNSET

    def to_record(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)
