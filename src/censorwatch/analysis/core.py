"""The analysis entry point: one stored measurement in, one verdict record out.

``analyze`` is a pure function of a stored measurement (plus the fingerprint database and the
address plan it is given), so any old measurement can be analysed again when the rules or the
fingerprints improve. It never raises on odd input: what it cannot judge is ``unknown``, with
the reason in the evidence.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec

from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.analysis.webconnectivity import Outcome, analyze_web
from censorwatch.model import Layers, Verdict, derive_measurement_uid, parse_time, rfc3339
from censorwatch.netinfo import AddressPlan, address_plan
from censorwatch.observations.builder import as_str, host_display, observe, url_parts
from censorwatch.observations.schema import STRUCT_OPTIONS, Measurement, to_typed

_NO_FINGERPRINTS = Fingerprints.empty()


def analyze(
    measurement: dict[str, Any],
    *,
    fingerprints: Fingerprints | None = None,
    plan: AddressPlan | None = None,
) -> Verdict:
    """The verdict on one measurement (an OONI data-format ``dict``)."""
    if not isinstance(measurement, dict):
        measurement = {}
    fps = fingerprints if fingerprints is not None else _NO_FINGERPRINTS
    plan = plan if plan is not None else address_plan(None)
    try:
        outcome = _decide(measurement, fps, plan)
    except Exception as exc:  # the contract: odd shapes give "unknown", never an exception
        outcome = Outcome().done(
            "unknown", 0.0, f"measurement could not be analysed: {type(exc).__name__}: {exc}"
        )
    return _verdict(measurement, outcome)


class _Envelope(Measurement, **STRUCT_OPTIONS):
    """The record's header fields besides what the analysis reads."""

    measurement_uid: str | None = None
    report_id: str | None = None
    probe_asn: str | int | None = None
    measurement_start_time: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def analyze_json(
    raw: bytes,
    *,
    fingerprints: Fingerprints | None = None,
    plan: AddressPlan | None = None,
) -> Verdict:
    """``analyze`` of one measurement's JSON bytes: the same verdict, sooner.

    The measurement is decoded straight into the typed view, skipping everything the analysis
    does not read; one without a ``measurement_uid`` is also read whole to derive it, and one
    with odd types to prune takes the ``analyze(dict)`` road. Raises
    ``msgspec.DecodeError`` only for bytes that are not JSON.
    """
    try:
        env = _ENVELOPE.decode(raw)
    except msgspec.ValidationError:
        return analyze(msgspec.json.decode(raw), fingerprints=fingerprints, plan=plan)
    uid = env.measurement_uid
    if not uid:
        # Content-derived, as ``analyze`` does: the whole document must be read once more.
        uid = _derived_uid(msgspec.json.decode(raw))
    fps = fingerprints if fingerprints is not None else _NO_FINGERPRINTS
    plan = plan if plan is not None else address_plan(None)
    try:
        outcome = _decide_typed(env, fps, plan)
    except Exception as exc:  # same last resort as analyze()
        outcome = Outcome().done(
            "unknown", 0.0, f"measurement could not be analysed: {type(exc).__name__}: {exc}"
        )
    return _build(
        uid,
        env.report_id,
        env.input,
        env.probe_cc,
        env.probe_asn,
        env.measurement_start_time,
        outcome,
    )


def _decide_typed(env: _Envelope, fps: Fingerprints, plan: AddressPlan) -> Outcome:
    test_name = env.test_name or ""
    if test_name and test_name != "web_connectivity":
        return Outcome().done(
            "unknown", 0.0, f"test {test_name!r} is not analysed (only web_connectivity is)"
        )
    if env.test_keys is None:
        return Outcome().done("unknown", 0.0, "the measurement has no test_keys")
    if not env.input:
        return Outcome().done("unknown", 0.0, "the measurement has no input URL")
    return analyze_web(observe(env.test_keys), env.input, env.probe_cc or None, fps, plan)


def analyze_many(
    measurements: Any,
    *,
    fingerprints: Fingerprints | None = None,
    plan: AddressPlan | None = None,
) -> list[Verdict]:
    return [analyze(m, fingerprints=fingerprints, plan=plan) for m in measurements]


def _decide(m: dict[str, Any], fps: Fingerprints, plan: AddressPlan) -> Outcome:
    test_name = as_str(m.get("test_name"))
    if test_name and test_name != "web_connectivity":
        return Outcome().done(
            "unknown", 0.0, f"test {test_name!r} is not analysed (only web_connectivity is)"
        )
    if not isinstance(m.get("test_keys"), dict):
        return Outcome().done("unknown", 0.0, "the measurement has no test_keys")
    url = as_str(m.get("input"))
    if not url:
        return Outcome().done("unknown", 0.0, "the measurement has no input URL")
    typed, pruned = to_typed(m)
    if typed.test_keys is None:
        return Outcome().done("unknown", 0.0, "the measurement's test_keys are not readable")
    cc = as_str(m.get("probe_cc")) or None
    outcome = analyze_web(observe(typed.test_keys), url, cc, fps, plan)
    if pruned:
        shown = ", ".join(p.removeprefix("$.") for p in pruned[:3])
        more = f" and {len(pruned) - 3} more" if len(pruned) > 3 else ""
        outcome.evidence.append(f"ignored values of an unexpected type: {shown}{more}")
    return outcome


@lru_cache(maxsize=4096)
def _start_time(text: str) -> str:
    try:
        return rfc3339(parse_time(text))
    except (ValueError, TypeError, OverflowError):
        return ""


@lru_cache(maxsize=4096)
def _target(url: str) -> str:
    return host_display(url_parts(url)[1])


@lru_cache(maxsize=4096)
def _asn_text(probe_asn: str | int) -> str:
    """``AS<n>`` from OONI's ``probe_asn`` (a string, or an integer in some old files)."""
    asn = f"AS{probe_asn}" if isinstance(probe_asn, int) else probe_asn or "AS0"
    if not asn.upper().startswith("AS"):
        asn = f"AS{asn}"
    return asn.upper() if asn[:2].lower() == "as" else asn


def _derived_uid(m: Any) -> str:
    try:
        return derive_measurement_uid(m)
    except (TypeError, ValueError):
        return derive_measurement_uid({})


def _verdict(m: dict[str, Any], outcome: Outcome) -> Verdict:
    uid = m.get("measurement_uid")
    if not isinstance(uid, str) or not uid:
        uid = _derived_uid(m)
    url = m.get("input")
    return _build(
        uid,
        m.get("report_id"),
        url if isinstance(url, str) else None,
        m.get("probe_cc"),
        m.get("probe_asn"),
        m.get("measurement_start_time"),
        outcome,
    )


def _build(
    uid: str,
    report_id: Any,
    url: str | None,
    probe_cc: Any,
    probe_asn: Any,
    start_time: Any,
    outcome: Outcome,
) -> Verdict:
    host = _target(url) if url else ""
    asn = _asn_text(probe_asn) if probe_asn.__class__ in (str, int) else "AS0"
    confidence = round(max(0.0, min(1.0, outcome.confidence)), 2)
    blocked = outcome.verdict == "blocked"
    return Verdict(
        measurement_uid=uid,
        report_id=as_str(report_id),
        input=url,
        target=host or None,
        probe_cc=as_str(probe_cc) or "ZZ",
        probe_asn=asn,
        measurement_start_time=_start_time(as_str(start_time)),
        verdict=outcome.verdict,  # type: ignore[arg-type]
        method=outcome.method if blocked else None,
        confidence=confidence,
        confirmed=bool(outcome.fingerprint) and blocked,
        fingerprint=outcome.fingerprint if blocked else None,
        evidence=list(dict.fromkeys(outcome.evidence)),
        layers=Layers(**outcome.layers),  # type: ignore[arg-type]
    )
