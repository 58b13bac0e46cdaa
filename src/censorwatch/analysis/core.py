"""The analysis entry point: one stored measurement in, one verdict record out.

The road is bytes -> typed decode (``observations.schema``) -> observations
(``observations.builder.observe``) -> verdict: ``analyze_json`` (and ``analyze_raw``, which
also says which testbed a measurement came from) is what ``censorwatch analyze``, the
collector, the ingest and the demo run. ``analyze`` is the same analysis for a caller that holds
only a ``dict``; both give the same verdict for the same measurement.

Each is a pure function of a stored measurement (plus the fingerprint database and the address
plan it is given), so any old measurement can be analysed again when the rules or the
fingerprints improve. None raises on odd input: what it cannot judge is ``unknown``, with the
reason in the evidence.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import msgspec

from censorwatch.analysis import confidence as C
from censorwatch.analysis import locate, workarounds
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.analysis.outcome import Outcome
from censorwatch.analysis.walk import analyze_web
from censorwatch.geo import ip_database
from censorwatch.model import Layers, Verdict, derive_measurement_uid
from censorwatch.netinfo import AddressPlan
from censorwatch.observations.budget import count_items
from censorwatch.observations.builder import as_str, host_display, observe, url_parts
from censorwatch.observations.reader import (
    JSON_ERRORS,
    Loaded,
    iter_measurements,
    json_problem,
)
from censorwatch.observations.schema import STRUCT_OPTIONS, Measurement, TestKeys, to_typed
from censorwatch.times import parse_time, rfc3339

_NO_FINGERPRINTS = Fingerprints.empty()
#: Values and keys one measurement may hold before it is read (real ones hold a few thousand):
#: a line of millions of ``{}`` is refused on its bytes, before millions of dicts are built.
MAX_VALUES = 1_000_000


class Analyzed(msgspec.Struct, gc=False):
    """A verdict, and the testbed its measurement was made in (``x_testbed``), if any."""

    verdict: Verdict
    testbed: str | None = None


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
    plan = plan if plan is not None else ip_database(None)
    test_name = measurement.get("test_name")
    nettest = _nettest_name(test_name) if test_name.__class__ is str else None
    try:
        if nettest is not None:
            outcome = _nettests().decide_nettest(*_nettests().nettest_view(measurement))
        else:
            outcome = _decide(measurement, fps, plan)
    except Exception as exc:  # the contract: odd shapes give "unknown", never an exception
        outcome = _not_analysable(exc)
    return _verdict(measurement, outcome, nettest)


def analyze_json(
    raw: bytes,
    *,
    fingerprints: Fingerprints | None = None,
    plan: AddressPlan | None = None,
) -> Verdict:
    """``analyze`` of one measurement's JSON bytes: the same verdict, sooner.

    Raises ``msgspec.DecodeError`` only for bytes that are not JSON.
    """
    fps = fingerprints if fingerprints is not None else _NO_FINGERPRINTS
    plan = plan if plan is not None else ip_database(None)
    return analyze_raw(raw, fps, plan).verdict


class _Annotations(msgspec.Struct, **STRUCT_OPTIONS):
    x_testbed: Any = None


class _Envelope(Measurement, **STRUCT_OPTIONS):
    """The record's header fields besides what the analysis reads."""

    measurement_uid: str | None = None
    report_id: str | None = None
    probe_asn: str | int | None = None
    measurement_start_time: str | None = None
    annotations: _Annotations | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DECODE_ANY = msgspec.json.Decoder().decode


def analyze_raw(raw: bytes, fps: Fingerprints, plan: AddressPlan) -> Analyzed:
    """The bytes road: one measurement's JSON straight into the typed view, then the verdict.

    Everything the analysis does not read is skipped by the decoder. A measurement without a
    ``measurement_uid`` is also read whole, once, to derive it; one with values of an odd type
    (which the typed decode refuses) takes the ``analyze(dict)`` road, which prunes them.
    Raises one of ``observations.reader.JSON_ERRORS`` only for bytes that are not JSON (not
    UTF-8, or nested too deeply).
    """
    try:
        env = _ENVELOPE.decode(raw)
    except msgspec.ValidationError:
        doc = _DECODE_ANY(raw)
        return Analyzed(analyze(doc, fingerprints=fps, plan=plan), testbed_of(doc))
    uid = env.measurement_uid or derived_uid(_DECODE_ANY(raw))
    # The other tests (OONI's messaging, dnscheck, tor, psiphon) read their own typed view.
    nettest = _nettest_name(env.test_name)
    try:
        if nettest is not None:
            outcome = _nettests().decide_nettest(*_nettests().decode_nettest(raw))
        else:
            outcome = _decide_typed(env, fps, plan)
    except Exception as exc:  # same last resort as analyze()
        outcome = _not_analysable(exc)
    verdict = _build(
        uid,
        env.report_id,
        env.input,
        env.probe_cc,
        env.probe_asn,
        env.measurement_start_time,
        outcome,
        nettest,
    )
    if nettest is None and env.test_keys is not None and env.test_keys.x_workarounds:
        _add_workarounds(verdict, env.test_keys)
    if nettest is None and env.test_keys is not None and env.test_keys.x_locate:
        _add_locate(verdict, env.test_keys)
    annotations = env.annotations
    testbed = annotations.x_testbed if annotations is not None else None
    return Analyzed(verdict, testbed if testbed.__class__ is str and testbed else None)


def analyze_item(
    item: Loaded, fps: Fingerprints, plan: AddressPlan
) -> tuple[Analyzed | None, str | None]:
    """``(Analyzed, None)`` for an item of ``observations.reader``, ``(None, why)`` for one
    that is not a measurement (the reader's words: "invalid JSON: ...", "not a JSON object").

    The bytes road for an item read with ``decode=False``: its own JSON goes straight to the
    typed decode. Only an item that came without its own bytes takes the dict road.
    """
    if item.error is not None:
        return None, item.error
    raw = item.raw
    if raw is None:
        m = item.measurement if item.measurement is not None else {}
        return Analyzed(analyze(m, fingerprints=fps, plan=plan), testbed_of(m)), None
    # Every value takes at least one byte: a shorter line cannot be over budget (no count).
    if len(raw) > MAX_VALUES and count_items(raw, MAX_VALUES) > MAX_VALUES:
        return None, f"more than {MAX_VALUES:,} JSON values: not read"
    if raw[:1] == b"{":  # reader items are stripped: any other start is not an object
        try:
            return analyze_raw(raw, fps, plan), None
        except JSON_ERRORS:
            pass
    try:
        doc = _DECODE_ANY(raw)
    except JSON_ERRORS as exc:
        return None, json_problem(exc)
    return None, f"not a JSON object ({type(doc).__name__})"


def analyze_files(
    paths: Iterable[str | os.PathLike[str]], fps: Fingerprints, plan: AddressPlan
) -> Iterator[tuple[str, Analyzed | None, str | None]]:
    """``(source, Analyzed, None)`` for each measurement in ``paths`` (files, trees, ``-``),
    ``(source, None, why)`` for each item that is not one: the bytes road over files."""
    for item in iter_measurements(paths, decode=False):
        result, problem = analyze_item(item, fps, plan)
        yield item.source, result, problem


def testbed_of(measurement: object) -> str | None:
    """The testbed id a measurement was made in (its ``x_testbed`` annotation), if any."""
    annotations = measurement.get("annotations") if isinstance(measurement, dict) else None
    testbed = annotations.get("x_testbed") if isinstance(annotations, dict) else None
    return testbed if isinstance(testbed, str) and testbed else None


def _not_analysable(exc: Exception) -> Outcome:
    return Outcome().done(
        "unknown", C.NONE, f"measurement could not be analysed: {type(exc).__name__}: {exc}"
    )


def _nettests() -> Any:
    """The rules of OONI's other tests (``analysis.nettests``), imported on first use: a run
    of web_connectivity measurements never loads them."""
    from censorwatch.analysis import nettests

    return nettests


def _nettest_name(test_name: str | None) -> str | None:
    """``test_name`` when one of the other tests' rules judges it, else None."""
    if test_name is None or test_name == "web_connectivity":
        return None
    return test_name if test_name in _nettests().NETTESTS else None


def _not_analysed(test_name: str) -> str:
    known = ", ".join(sorted(_nettests().NETTESTS))
    return f"test {test_name!r} is not analysed (only web_connectivity and {known} are)"


def _decide_typed(env: _Envelope, fps: Fingerprints, plan: AddressPlan) -> Outcome:
    test_name = env.test_name or ""
    if test_name and test_name != "web_connectivity":
        return Outcome().done("unknown", C.NONE, _not_analysed(test_name))
    if env.test_keys is None:
        return Outcome().done("unknown", C.NONE, "the measurement has no test_keys")
    if not env.input:
        return Outcome().done("unknown", C.NONE, "the measurement has no input URL")
    plan = plan.at(env.measurement_start_time)  # the IP database valid on that day
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
        return Outcome().done("unknown", C.NONE, _not_analysed(test_name))
    if not isinstance(m.get("test_keys"), dict):
        return Outcome().done("unknown", C.NONE, "the measurement has no test_keys")
    url = as_str(m.get("input"))
    if not url:
        return Outcome().done("unknown", C.NONE, "the measurement has no input URL")
    typed, pruned = to_typed(m)
    if typed.test_keys is None:
        return Outcome().done("unknown", C.NONE, "the measurement's test_keys are not readable")
    cc = as_str(m.get("probe_cc")) or None
    plan = plan.at(as_str(m.get("measurement_start_time")))  # the IP database of that day
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


@lru_cache(maxsize=1024)
def _confidence(value: float) -> float:
    """A confidence as the record states it: within [0, 1], two decimals (remembered: the rules
    produce a few dozen distinct values, and ``round`` to digits is slow)."""
    return round(max(0.0, min(1.0, value)), 2)


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


_SORTED_ENCODE = msgspec.json.Encoder(order="sorted").encode  # model.canonical_json's bytes


def derived_uid(m: Any) -> str:
    """``model.derive_measurement_uid(m)``: the same value (stored UIDs depend on it), without
    its copy of the measurement when there is nothing to leave out of the hash (the usual
    case), and with its time stamp remembered (start times repeat within a report)."""
    if m.__class__ is not dict or "measurement_uid" in m or "x_signature" in m:
        return _derive_uid_slowly(m)
    try:
        digest = hashlib.sha256(_SORTED_ENCODE(m)).hexdigest()
        stamp = _uid_stamp(str(m.get("measurement_start_time") or ""))
    except (TypeError, ValueError):
        return _derive_uid_slowly(m)
    cc = str(m.get("probe_cc") or "ZZ")[:2].upper()
    test = str(m.get("test_name") or "unknown").replace("_", "")
    return f"{stamp}.{int(digest[:6], 16) % 1000000:06d}_{cc}_{test}_{digest[:16]}"


@lru_cache(maxsize=4096)
def _uid_stamp(start: str) -> str:
    """The UID's leading time stamp, read as ``derive_measurement_uid`` reads it."""
    try:
        return parse_time(start).strftime("%Y%m%d%H%M%S")
    except ValueError:
        return "00000000000000"


def _derive_uid_slowly(m: Any) -> str:
    try:
        return derive_measurement_uid(m)
    except (TypeError, ValueError):
        return derive_measurement_uid({})


def _verdict(m: dict[str, Any], outcome: Outcome, nettest: str | None = None) -> Verdict:
    uid = m.get("measurement_uid")
    if not isinstance(uid, str) or not uid:
        uid = derived_uid(m)
    url = m.get("input")
    verdict = _build(
        uid,
        m.get("report_id"),
        url if isinstance(url, str) else None,
        m.get("probe_cc"),
        m.get("probe_asn"),
        m.get("measurement_start_time"),
        outcome,
        nettest,
    )
    tk = m.get("test_keys")
    if nettest is None and isinstance(tk, dict) and tk.get("x_workarounds"):
        typed, _ = to_typed({"test_keys": tk})
        if typed.test_keys is not None:
            _add_workarounds(verdict, typed.test_keys)
    if nettest is None and isinstance(tk, dict) and tk.get("x_locate"):
        typed, _ = to_typed({"test_keys": tk})
        if typed.test_keys is not None:
            _add_locate(verdict, typed.test_keys)
    return verdict


def _add_workarounds(verdict: Verdict, tk: TestKeys) -> None:
    """The circumvention summary (``analysis.workarounds``): an addition to the record,
    never a change of its verdict."""
    summary = workarounds.of_test_keys(tk)
    if summary is not None:
        verdict.workarounds = summary


def _add_locate(verdict: Verdict, tk: TestKeys) -> None:
    """Where the censor sits (``analysis.locate``): an addition to the record, never a
    change of its verdict."""
    located = locate.of_test_keys(tk, verdict.probe_asn, verdict.probe_cc, verdict.method)
    if located is not None:
        verdict.locate = located


def _build(
    uid: str,
    report_id: Any,
    url: str | None,
    probe_cc: Any,
    probe_asn: Any,
    start_time: Any,
    outcome: Outcome,
    nettest: str | None = None,
) -> Verdict:
    host = _target(url) if url else ""
    if nettest is not None:  # an input-less test is about its platform (analysis.nettests)
        host = _nettests().nettest_target(nettest, host) or ""
    asn = _asn_text(probe_asn) if probe_asn.__class__ in (str, int) else "AS0"
    confidence = _confidence(outcome.confidence)
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
        layers=_layers(outcome.layers),
    )


def _layers(states: dict[str, str | None]) -> Layers:
    """The record's ``Layers`` from the outcome's four layer states (positional: this runs once
    per measurement, and unpacking a mapping into keywords costs more)."""
    return Layers(states["dns"], states["tcp"], states["tls"], states["http"])  # type: ignore[arg-type]
