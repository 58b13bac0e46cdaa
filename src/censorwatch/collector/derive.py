"""From an accepted measurement to its stored row: the facts it is filed under and its verdict.

The verdict comes from ``censorwatch.analysis.analyze``, a pure function, so any row can be
recomputed from the archive at any time (``censorwatch store rebuild``). A measurement the
analysis cannot read still gets stored, with verdict ``unknown`` and the reason as evidence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from censorwatch.model import parse_time
from censorwatch.store.base import ArchiveLocation, MeasurementRow

log = logging.getLogger(__name__)

Analyzer = Callable[[dict[str, Any]], dict[str, Any]]
SignatureCheck = Callable[[dict[str, Any]], str]


def load_analyzer(fingerprints: Any = None, plan: Any = None) -> Analyzer:
    """The analysis as a measurement -> verdict-record function (``unknown`` if unavailable)."""
    try:
        from censorwatch.analysis import analyze
    except ImportError:  # the analysis stage is optional for storage
        log.warning("censorwatch.analysis is unavailable; verdicts will be 'unknown'")

        def unavailable(measurement: dict[str, Any]) -> dict[str, Any]:
            return {"verdict": "unknown", "evidence": ["analysis unavailable"]}

        return unavailable

    def run(measurement: dict[str, Any]) -> dict[str, Any]:
        return analyze(measurement, fingerprints=fingerprints, plan=plan).to_record()

    return run


def safe_verdict(analyzer: Analyzer, measurement: dict[str, Any]) -> dict[str, Any]:
    try:
        return analyzer(measurement)
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


def naive_utc(value: Any) -> datetime:
    return parse_time(str(value)).replace(tzinfo=None)


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
        measurement_start_time=naive_utc(measurement.get("measurement_start_time")),
        received_at=naive_utc(received_at),
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
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
