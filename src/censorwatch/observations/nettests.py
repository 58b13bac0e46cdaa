"""OONI's other tests (instant messaging, dnscheck, tor, psiphon): typed view and observations.

These tests write web_connectivity's step lists (``queries``, ``tcp_connect``,
``tls_handshakes``, ``requests``) plus keys of their own: the probe's summary flags
(``telegram_web_status``, ``facebook_tcp_blocking``, ...), tor's result per target, dnscheck's
bootstrap and its lookups per resolver address, psiphon's ``bootstrap_time``. They are read
here, once: ``decode_nettest`` / ``nettest_view`` give the typed view (only these keys are
decoded), ``observe_nettest`` turns it into one ``NettestObs`` for the analysis
(``analysis.nettests`` holds the rules).

Some of OONI's rules depend on whether a key is *present* (a signal measurement without
``failed_operation`` is a failed run), so those keys default to ``msgspec.UNSET`` and
``NettestObs.flags`` holds only the keys the measurement wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from censorwatch.observations import schema
from censorwatch.observations.builder import Observations, observe
from censorwatch.observations.schema import STRUCT_OPTIONS, to_typed
from censorwatch.times import parse_time

#: The tests this module reads (``test_name``); every other test is not analysed.
NETTESTS = frozenset(
    {"whatsapp", "telegram", "signal", "facebook_messenger", "dnscheck", "tor", "psiphon"}
)

#: facebook_messenger's summary flags: one consistency (and reachability) flag per endpoint,
#: named ``facebook_<endpoint>_dns_consistent`` / ``_reachable`` (ts-019).
FACEBOOK_ENDPOINTS = {
    "b_api": "b-api.facebook.com",
    "b_graph": "b-graph.facebook.com",
    "edge": "edge-mqtt.facebook.com",
    "external_cdn": "external.xx.fbcdn.net",
    "scontent_cdn": "scontent.xx.fbcdn.net",
    "star": "star.c10r.facebook.com",
    "stun": "stun.fbsbx.com",
}


class Annotations(Struct, **STRUCT_OPTIONS):
    engine_version: Any = None


class TorTarget(schema.TestKeys):
    """One tor target's result: the usual step lists plus its own failure and protocol."""

    failure: Any = UNSET
    # Only whether the key is there is read (with the steps ``builder`` reads from it).
    network_events: list[schema.NetworkEvent | None] | UnsetType | None = UNSET
    target_protocol: Any = None
    target_address: Any = None
    target_name: Any = None


class Lookup(schema.TestKeys):
    """One dnscheck lookup (one resolver address), urlgetter-shaped."""

    failure: Any = None
    failed_operation: Any = None


class NettestKeys(schema.TestKeys):
    """The test keys of all seven tests: the step lists and every test's own keys."""

    failure: Any = UNSET
    failed_operation: Any = UNSET
    # whatsapp (ts-018)
    registration_server_failure: Any = None
    registration_server_status: Any = None
    whatsapp_web_failure: Any = None
    whatsapp_web_status: Any = None
    whatsapp_endpoints_status: Any = None
    # telegram (ts-020)
    telegram_web_status: Any = None
    telegram_web_failure: Any = None
    telegram_tcp_blocking: Any = None
    telegram_http_blocking: Any = None
    # signal (ts-029)
    signal_backend_status: Any = None
    signal_backend_failure: Any = None
    # facebook_messenger (ts-019)
    facebook_b_api_dns_consistent: Any = None
    facebook_b_api_reachable: Any = None
    facebook_b_graph_dns_consistent: Any = None
    facebook_b_graph_reachable: Any = None
    facebook_edge_dns_consistent: Any = None
    facebook_edge_reachable: Any = None
    facebook_external_cdn_dns_consistent: Any = None
    facebook_external_cdn_reachable: Any = None
    facebook_scontent_cdn_dns_consistent: Any = None
    facebook_scontent_cdn_reachable: Any = None
    facebook_star_dns_consistent: Any = None
    facebook_star_reachable: Any = None
    facebook_stun_dns_consistent: Any = None
    facebook_stun_reachable: Any = None
    facebook_tcp_blocking: Any = None
    facebook_dns_blocking: Any = None
    # tor (ts-023): a mapping of target id to result (a list in early versions)
    targets: dict[str, TorTarget | None] | list[Any] | None = None
    # psiphon (ts-015)
    bootstrap_time: Any = UNSET
    # dnscheck (ts-028)
    domain: Any = None
    bootstrap: schema.TestKeys | None = None
    bootstrap_failure: Any = None
    lookups: dict[str, Lookup | None] | None = None


#: The summary keys (everything but the step lists and the nested results).
_STEP_FIELDS = frozenset(schema.TestKeys.__struct_fields__) | {"targets", "bootstrap", "lookups"}
SUMMARY_KEYS = tuple(f for f in NettestKeys.__struct_fields__ if f not in _STEP_FIELDS)


class NettestMeasurement(schema.Measurement):
    """What the rules of these tests read, header included."""

    test_keys: NettestKeys | None = None
    test_version: Any = None
    measurement_start_time: Any = None
    software_name: Any = None
    software_version: Any = None
    annotations: Annotations | None = None
    resolver_ip: Any = UNSET


_DECODER = msgspec.json.Decoder(NettestMeasurement)


def decode_nettest(raw: bytes) -> tuple[NettestMeasurement, list[str]]:
    """The typed view from JSON bytes, and the paths of values pruned for an odd type.

    Raises ``msgspec.DecodeError`` only for bytes that are not JSON.
    """
    try:
        return _DECODER.decode(raw), []
    except msgspec.ValidationError:
        doc = msgspec.json.decode(raw)
        return nettest_view(doc if isinstance(doc, dict) else {})


def nettest_view(measurement: dict[str, Any]) -> tuple[NettestMeasurement, list[str]]:
    """The typed view from a dict (values of an odd type pruned, as ``schema.to_typed``)."""
    typed, pruned = to_typed(measurement, NettestMeasurement)
    assert isinstance(typed, NettestMeasurement)
    return typed, pruned


# -- observations ------------------------------------------------------------------------


class _Obs(Struct, gc=False):
    pass


class RunInfo(_Obs):
    """The facts about the run itself that OONI's data-quality rules read."""

    test_version: str  # "0.0.0" when absent, as OONI reads it
    engine_version: str  # annotations.engine_version, "0.0.0" when absent
    start_time: datetime | None  # None: absent or unreadable
    has_resolver_ip: bool  # the header names the probe's resolver (psiphon's rule reads it)
    software: str  # "name version"


class TcpCount(_Obs):
    """Connects as OONI counts them: by ``status.success`` (neither true nor false: unknown)."""

    succeeded: int
    failed: int
    failures: list[str]  # the failed connects, "ip:port: failure"


class TorTargetObs(_Obs):
    target_id: str
    protocol: str
    address: str
    #: "ok" (failure null), "failed" (a failure string), "not_run" (failure false),
    #: "malformed" (no failure or network_events key, or an empty failure string).
    state: str
    failure: str | None
    steps: Observations


class LookupObs(_Obs):
    endpoint: str  # the resolver address tried, e.g. "dot://8.8.8.8:853"
    failure: str | None
    failed_operation: str | None
    steps: Observations


class NettestObs(_Obs):
    """One measurement of one of these tests, as the rules read it."""

    test_name: str
    run: RunInfo
    #: The test's summary keys the measurement wrote (absent keys are left out).
    flags: dict[str, Any]
    steps: Observations  # the top-level step lists (messaging tests, psiphon)
    tcp: TcpCount
    #: tor: the targets, or None when they are missing or not a mapping (``tor_problem``).
    tor_targets: list[TorTargetObs] | None
    tor_problem: str | None
    bootstrap: Observations | None  # dnscheck: the lookup of the resolver's own name
    lookups: list[LookupObs]


def observe_nettest(m: NettestMeasurement) -> NettestObs:
    """All observations of one measurement of these tests (``m.test_keys`` must be set)."""
    tk = m.test_keys if m.test_keys is not None else NettestKeys()
    flags = {k: v for k in SUMMARY_KEYS if (v := getattr(tk, k)) is not UNSET}
    targets, problem = _tor_targets(tk.targets)
    lookups = [
        LookupObs(
            endpoint,
            _text_or_none(lk.failure),
            _text_or_none(lk.failed_operation),
            observe(lk),
        )
        for endpoint, lk in (tk.lookups or {}).items()
        if lk is not None
    ]
    return NettestObs(
        m.test_name or "",
        _run_info(m),
        flags,
        observe(tk),
        _tcp_count(tk),
        targets,
        problem,
        observe(tk.bootstrap) if tk.bootstrap is not None else None,
        lookups,
    )


def _text_or_none(value: Any) -> str | None:
    if value is None or value is UNSET:
        return None
    return value if isinstance(value, str) else str(value)


def _run_info(m: NettestMeasurement) -> RunInfo:
    version = m.test_version if isinstance(m.test_version, str) and m.test_version else "0.0.0"
    annotations = m.annotations
    engine = annotations.engine_version if annotations is not None else None
    start: datetime | None = None
    if isinstance(m.measurement_start_time, str):
        try:
            start = parse_time(m.measurement_start_time)
        except ValueError:
            start = None
    software = " ".join(
        s for s in (m.software_name, m.software_version) if isinstance(s, str) and s
    )
    return RunInfo(
        version,
        engine if isinstance(engine, str) and engine else "0.0.0",
        start,
        m.resolver_ip is not UNSET,
        software,
    )


def _tcp_count(tk: schema.TestKeys) -> TcpCount:
    succeeded = failed = 0
    failures: list[str] = []
    for t in tk.tcp_connect or ():
        status = t.status if t is not None else None
        success = status.success if status is not None else None
        if success is True:
            succeeded += 1
        elif success is False:
            failed += 1
            assert t is not None and status is not None
            failures.append(f"{t.ip}:{t.port}: {status.failure or 'failed'}")
    return TcpCount(succeeded, failed, failures)


def _tor_targets(targets: Any) -> tuple[list[TorTargetObs] | None, str | None]:
    if not targets:
        return None, "the measurement lists no tor targets"
    if isinstance(targets, list):
        return None, "tor targets as a list (an early version of the test)"
    found = []
    for target_id, t in targets.items():
        if t is None:
            return None, f"tor target {target_id}: no result"
        failure = t.failure
        if failure is UNSET or t.network_events is UNSET:
            state, text = "malformed", None
        elif failure is None:
            state, text = "ok", None
        elif failure is False:
            state, text = "not_run", None
        elif failure == "":
            state, text = "malformed", None
        else:
            state, text = "failed", failure if isinstance(failure, str) else str(failure)
        found.append(
            TorTargetObs(
                target_id,
                t.target_protocol if isinstance(t.target_protocol, str) else "",
                t.target_address if isinstance(t.target_address, str) else "",
                state,
                text,
                observe(t),
            )
        )
    return found, None
