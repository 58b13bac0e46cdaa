"""The part of an OONI measurement the analysis reads, as typed structs.

Decoding into these (``msgspec.convert`` from a dict, or straight from JSON bytes) is done in C
and skips every key the analysis does not need, which is most of the analysis' speed. Every
field is optional; a value of the wrong type is pruned (see ``to_typed``) rather than failing
the whole measurement, because real OONI data holds every oddity ten years of probes produced.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import Struct

# Never part of a reference cycle: keep them out of the cyclic garbage collector.
STRUCT_OPTIONS = {"forbid_unknown_fields": False, "gc": False}


class Base64Value(Struct, **STRUCT_OPTIONS):
    data: Any = None
    format: str = ""


class Answer(Struct, **STRUCT_OPTIONS):
    ipv4: str | None = None
    ipv6: str | None = None
    asn: int | None = None


class Query(Struct, **STRUCT_OPTIONS):
    hostname: str | None = None
    engine: str | None = None
    failure: str | None = None
    answers: list[Answer | None] | None = None
    tags: list[Any] | None = None
    query_type: str | None = None
    resolver_address: str | None = None
    # censorwatch's late duplicate answers carry plain addresses and whether they differ.
    addresses: list[Any] | None = None
    differs: bool | None = None


class TcpStatus(Struct, **STRUCT_OPTIONS):
    failure: str | None = None
    success: bool | None = None


class TcpConnect(Struct, **STRUCT_OPTIONS):
    ip: str | None = None
    port: int | None = None
    status: TcpStatus | None = None
    tags: list[Any] | None = None


class Handshake(Struct, **STRUCT_OPTIONS):
    address: str | None = None
    server_name: str | None = None
    failure: str | None = None
    tags: list[Any] | None = None
    no_tls_verify: bool | None = None
    network: str | None = None


class Request(Struct, **STRUCT_OPTIONS):
    url: str | None = None


class Response(Struct, **STRUCT_OPTIONS):
    code: int | None = None
    body: str | Base64Value | None = None
    body_is_truncated: bool | None = None
    headers: dict[str, Any] | None = None
    headers_list: list[Any] | None = None


class HttpTransaction(Struct, **STRUCT_OPTIONS):
    request: Request | None = None
    response: Response | None = None
    failure: str | None = None
    tags: list[Any] | None = None


class ControlDns(Struct, **STRUCT_OPTIONS):
    failure: str | None = None
    addrs: list[Any] | None = None


class ControlHttp(Struct, **STRUCT_OPTIONS):
    failure: str | None = None
    status_code: int | None = None
    body_length: int | None = None
    title: str | None = None
    headers: dict[str, Any] | None = None


class Control(Struct, **STRUCT_OPTIONS):
    dns: ControlDns | None = None
    # Keyed by "ip:port" / ip; values are read leniently (observations.py), since a bad
    # value inside a mapping cannot be pruned on its own.
    tcp_connect: dict[str, Any] | None = None
    tls_handshake: dict[str, Any] | None = None
    quic_handshake: dict[str, Any] | None = None
    http_request: ControlHttp | None = None
    ip_info: dict[str, Any] | None = None


class NetworkEvent(Struct, **STRUCT_OPTIONS):
    operation: str | None = None
    num_bytes: int | None = None
    t: float | None = None
    tags: list[Any] | None = None


class WorkaroundStep(Struct, **STRUCT_OPTIONS):
    """One way around a block the probe tried (``x_workarounds``, docs/probe.md)."""

    technique: str | None = None
    not_tried: str | None = None  # why it was not tried
    failure: str | None = None
    resolver_failure: str | None = None
    address: str | None = None
    server_name: str | None = None
    front: str | None = None
    status_code: int | None = None
    title: str | None = None
    certificate_valid: bool | None = None
    ech_offered: bool | None = None


class LocateHop(Struct, **STRUCT_OPTIONS):
    """One TTL of a localization (``x_locate``, docs/probe.md): what came back to each
    probe, and who sent the ICMP messages."""

    ttl: int | None = None
    address: str | None = None  # the ICMP time-exceeded source at this TTL
    asn: int | None = None
    as_org_name: str | None = None
    cc: str | None = None
    trigger: list[Any] | None = None  # one outcome per trigger probe ("time_exceeded", …)
    control: list[Any] | None = None  # one outcome per control probe
    path: str | None = None  # the UDP path probe's outcome (TCP triggers only)


class LocateRun(Struct, **STRUCT_OPTIONS):
    """One localization: one kind of trigger (dns, tls, http) sent with rising TTLs."""

    trigger: str | None = None
    host: str | None = None
    control_name: str | None = None
    destination: str | None = None
    port: int | None = None
    not_run: str | None = None  # why it could not run
    hops: list[LocateHop | None] | None = None


class TestKeys(Struct, **STRUCT_OPTIONS):
    queries: list[Query | None] | None = None
    x_dns_duplicate_responses: list[Query | None] | None = None
    tcp_connect: list[TcpConnect | None] | None = None
    tls_handshakes: list[Handshake | None] | None = None
    quic_handshakes: list[Handshake | None] | None = None
    requests: list[HttpTransaction | None] | None = None
    control: Control | None = None
    control_failure: str | None = None
    network_events: list[NetworkEvent | None] | None = None
    x_throughput: dict[str, Any] | None = None
    x_workarounds: list[WorkaroundStep | None] | None = None
    x_locate: list[LocateRun | None] | None = None


class Measurement(Struct, **STRUCT_OPTIONS):
    input: str | None = None
    test_name: str | None = None
    probe_cc: str | None = None
    test_keys: TestKeys | None = None


# The full view: the same structs plus the fields the verdict never needs, read by the
# explorer's step tables (what a person reads) and by the probe's classic summary (OONI's own
# keys). Decoding them would only slow the analysis down. ``builder.observe`` takes either view.


class AnswerView(Answer):
    hostname: str | None = None
    answer_type: str | None = None
    as_org_name: str | None = None


class QueryView(Query):
    answers: list[AnswerView | None] | None = None


class HandshakeView(Handshake):
    tls_version: str | None = None
    cipher_suite: str | None = None
    negotiated_protocol: str | None = None
    peer_certificates: list[Any] | None = None


class RequestView(Request):
    method: str | None = None


class ResponseView(Response):
    x_body_length: int | None = None  # bytes received, counted even when not kept


class HttpTransactionView(HttpTransaction):
    request: RequestView | None = None
    response: ResponseView | None = None


class TestKeysView(TestKeys):
    queries: list[QueryView | None] | None = None
    tls_handshakes: list[HandshakeView | None] | None = None
    quic_handshakes: list[HandshakeView | None] | None = None
    requests: list[HttpTransactionView | None] | None = None
    dns_experiment_failure: str | None = None
    http_experiment_failure: str | None = None
    # OONI's classic summary, as a probe wrote it.
    blocking: str | bool | None = None
    accessible: bool | None = None


class MeasurementView(Measurement):
    test_keys: TestKeysView | None = None


_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
MAX_PRUNES = 256


def to_typed(
    measurement: dict[str, Any], view: type[Measurement] = Measurement
) -> tuple[Measurement, list[str]]:
    """The typed view of a measurement (``Measurement``, or ``MeasurementView`` for the
    explorer), and the paths of values pruned for having odd types.

    A value that does not fit (say an integer where a host name belongs) is removed and
    conversion retried, so one odd field costs that field, not the measurement.
    """
    pruned: list[str] = []
    current: Any = measurement
    for _ in range(MAX_PRUNES):
        try:
            return msgspec.convert(current, view), pruned
        except msgspec.ValidationError as exc:
            message = str(exc)
            at = message.rfind(" - at `$")
            if at < 0:
                raise
            path = message[at + 7 : message.rfind("`")]
            # A bad value inside a mapping is reported as "[...]": prune the whole mapping.
            path = path.split("[...]", 1)[0]
            tokens = [name if name else int(index) for name, index in _PATH_TOKEN.findall(path)]
            if not tokens:
                raise
            pruned.append(path)
            current = _without(current, tokens)
    raise ValueError(f"more than {MAX_PRUNES} values of the wrong type")


def _without(obj: Any, tokens: list[str | int]) -> Any:
    """A copy of ``obj`` without the value at ``tokens`` (containers on the path are copied)."""
    head, rest = tokens[0], tokens[1:]
    if isinstance(obj, dict):
        key: Any = head
        if key not in obj:
            key = next((k for k in obj if str(k) == str(head)), head)
        if key not in obj:
            raise ValueError(f"cannot find {head!r}")
        copy = dict(obj)
        if rest:
            copy[key] = _without(obj[key], rest)
        else:
            del copy[key]
        return copy
    if isinstance(obj, list) and isinstance(head, int) and 0 <= head < len(obj):
        copy_list = list(obj)
        if rest:
            copy_list[head] = _without(obj[head], rest)
        else:
            copy_list[head] = None
        return copy_list
    raise ValueError(f"cannot follow {head!r}")
