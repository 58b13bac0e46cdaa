"""From an accepted measurement to its stored row: the facts it is filed under and its verdict.

The verdict comes from the analysis (``censorwatch.analysis.core``: the bytes road over the
measurement's canonical JSON, the verdict ``analyze(dict)`` gives), a pure function, so any row
can be recomputed from the archive at any time (``censorwatch store rebuild``). A measurement the
analysis cannot read still gets stored, with verdict ``unknown`` and the reason as evidence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from censorwatch.store.base import ArchiveLocation, MeasurementRow
from censorwatch.times import naive_utc, rfc3339_micro, utcnow

log = logging.getLogger(__name__)

Analyzer = Callable[[dict[str, Any]], dict[str, Any]]
SignatureCheck = Callable[[dict[str, Any]], str]


class BytesAnalyzer:
    """The analysis bound to one fingerprint database and address plan, on the bytes road.

    Called with a ``dict`` (what ``Analyzer`` promises), or through ``of_json`` with the
    measurement's canonical JSON when the caller has it (the collector encodes every
    measurement for the archive anyway): that road skips everything the analysis does not read.
    """

    def __init__(self, fingerprints: Any = None, plan: Any = None) -> None:
        from censorwatch.analysis.fingerprints import Fingerprints
        from censorwatch.netinfo import address_plan

        self.fingerprints = fingerprints if fingerprints is not None else Fingerprints.empty()
        self.plan = plan if plan is not None else address_plan(None)

    def __call__(self, measurement: dict[str, Any]) -> dict[str, Any]:
        from censorwatch.analysis.core import analyze

        return analyze(measurement, fingerprints=self.fingerprints, plan=self.plan).to_record()

    def of_json(self, raw: bytes) -> dict[str, Any]:
        from censorwatch.analysis.core import analyze_raw

        return analyze_raw(raw, self.fingerprints, self.plan).verdict.to_record()


def load_analyzer(fingerprints: Any = None, plan: Any = None) -> Analyzer:
    """The analysis as a measurement -> verdict-record function (``unknown`` if unavailable)."""
    try:
        import censorwatch.analysis.core  # noqa: F401
    except ImportError:  # the analysis stage is optional for storage
        log.warning("censorwatch.analysis is unavailable; verdicts will be 'unknown'")

        def unavailable(measurement: dict[str, Any]) -> dict[str, Any]:
            return {"verdict": "unknown", "evidence": ["analysis unavailable"]}

        return unavailable
    return BytesAnalyzer(fingerprints, plan)


def safe_verdict(
    analyzer: Analyzer, measurement: dict[str, Any], raw: bytes | None = None
) -> dict[str, Any]:
    """The verdict record; from ``raw`` (the measurement's JSON) when the analyzer reads bytes."""
    try:
        of_json = getattr(analyzer, "of_json", None) if raw is not None else None
        return of_json(raw) if of_json is not None else analyzer(measurement)
    except Exception as exc:  # a bad measurement must not stop the collector
        log.debug("analysis failed", exc_info=True)
        return {"verdict": "unknown", "evidence": [f"analysis failed: {type(exc).__name__}"]}


def unverified(measurement: dict[str, Any]) -> str:
    return "unverified"


def domain_of(input_value: Any) -> str | None:
    if not isinstance(input_value, str) or not input_value:
        return None
    try:
        host = urlsplit(input_value if "://" in input_value else f"//{input_value}").hostname
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def build_row(
    measurement: dict[str, Any],
    verdict: dict[str, Any],
    *,
    measurement_uid: str,
    received_at: str,
    signature: str,
    source: str,
    location: ArchiveLocation,
) -> MeasurementRow:
    method = verdict.get("method")
    fingerprint = verdict.get("fingerprint")
    kind = verdict.get("verdict")
    target = verdict.get("target")
    return MeasurementRow(
        measurement_uid=measurement_uid,
        report_id=str(measurement.get("report_id") or ""),
        test_name=str(measurement.get("test_name") or "unknown"),
        probe_cc=str(measurement.get("probe_cc") or "ZZ"),
        probe_asn=str(measurement.get("probe_asn") or "AS0"),
        input=measurement.get("input") if isinstance(measurement.get("input"), str) else None,
        domain=domain_of(measurement.get("input")) or (target if isinstance(target, str) else None),
        target=target if isinstance(target, str) else None,
        measurement_start_time=naive_utc(str(measurement.get("measurement_start_time"))),
        received_at=naive_utc(str(received_at)),
        verdict=kind if kind in ("ok", "blocked", "down", "unknown") else "unknown",
        method=method if isinstance(method, str) else None,
        confidence=float(verdict.get("confidence") or 0.0),
        confirmed=bool(verdict.get("confirmed")),
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        evidence=json.dumps(list(verdict.get("evidence") or []), ensure_ascii=False),
        layers=json.dumps(dict(verdict.get("layers") or {}), ensure_ascii=False),
        signature=signature if signature in ("verified", "unverified", "invalid") else "invalid",
        source=source,
        archive_segment=location.segment,
        archive_offset=location.offset,
        workarounds=summary if isinstance(summary := verdict.get("workarounds"), dict) else None,
        locate=located if isinstance(located := verdict.get("locate"), dict) else None,
    )


def now_rfc3339() -> str:
    return rfc3339_micro(utcnow())
