"""A raw OONI measurement's steps as table rows: DNS, TCP, TLS, HTTP, and the control's view.

The rows are built from the measurement's observations (``observations.builder.observe`` over
the explorer's typed view, ``observations.schema.MeasurementView``), so the explorer shows the
same title, failures and addresses the analysis reasons about. Real files vary: a missing or
odd value shows as empty, never as an error, so any stored measurement can be opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from censorwatch.observations.builder import ControlObs, Observations, observe
from censorwatch.observations.schema import (
    AnswerView,
    Base64Value,
    HandshakeView,
    MeasurementView,
    QueryView,
    RequestView,
    TestKeysView,
    to_typed,
)
from censorwatch.observations.text import title_of


@dataclass
class Steps:
    dns: list[dict[str, Any]] = field(default_factory=list)
    tcp: list[dict[str, Any]] = field(default_factory=list)
    tls: list[dict[str, Any]] = field(default_factory=list)
    http: list[dict[str, Any]] = field(default_factory=list)
    compare: list[tuple[str, str, str]] = field(default_factory=list)  # (what, probe, control)
    control_failure: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.dns or self.tcp or self.tls or self.http or self.compare)


_PROBE_LABELS = {"none": "no SNI", "decoy": "decoy SNI"}
QUIC_LABEL = "QUIC"


def _asn_text(asn: int | None, org: str | None = None) -> str:
    if not asn:
        return ""
    return f"AS{asn} {org}" if org else f"AS{asn}"


def _endpoint(ip: str, port: int) -> str:
    if not port:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _typed_test_keys(measurement: Any) -> TestKeysView | None:
    """The explorer's typed view of ``test_keys``; None when there is nothing to read."""
    if not isinstance(measurement, dict):
        return None
    try:
        typed, _ = to_typed(measurement, MeasurementView)
    except (ValueError, msgspec.ValidationError):
        return None
    tk = typed.test_keys
    return tk if isinstance(tk, TestKeysView) else None


def steps(measurement: dict[str, Any]) -> Steps:
    """The table rows of one measurement's ``test_keys``."""
    tk = _typed_test_keys(measurement)
    if tk is None:
        return Steps()
    obs = observe(tk)
    known_asns = {**_dns_asns(obs), **obs.control.asns}
    out = Steps(control_failure=tk.control_failure)
    out.dns = [_dns_row(q.query, q.hostname, q.engine, q.failure, obs.control)
               for q in obs.queries if isinstance(q.query, QueryView)]  # fmt: skip
    out.tcp = [
        {
            "ip": t.ip,
            "port": t.port or "",
            "asn": _asn_text(known_asns.get(t.ip)),
            "success": t.failure is None,
            "failure": t.failure,
            "probe": _PROBE_LABELS.get(t.sni_probe or "", t.sni_probe or ""),
        }
        for t in obs.tcp
    ]
    out.tls = [_tls_row(h, "") for h in obs.tls] + [_tls_row(h, QUIC_LABEL) for h in obs.quic]
    out.http = [_http_row(h) for h in obs.http]
    out.compare = _compare(out, obs) if tk.control is not None else []
    return out


def _dns_asns(obs: Observations) -> dict[str, int]:
    asns: dict[str, int] = {}
    for q in obs.queries:
        asns.update(q.asns)
    return asns


def _dns_row(
    query: QueryView, hostname: str, engine: str, failure: str | None, control: ControlObs
) -> dict[str, Any]:
    answers = []
    for a in query.answers or ():
        if not isinstance(a, AnswerView):
            continue
        value = a.ipv4 or a.ipv6 or a.hostname or ""
        asn = a.asn or control.asns.get(value)
        answers.append({"type": a.answer_type or "", "value": value,
                        "asn": _asn_text(asn, a.as_org_name)})  # fmt: skip
    return {
        "hostname": hostname,
        "query_type": query.query_type or "",
        "engine": engine,
        "resolver": query.resolver_address or "",
        "answers": answers,
        "failure": failure,
    }


def _tls_row(h: Any, probe: str) -> dict[str, Any]:
    """One TLS (or QUIC, ``probe`` "QUIC") handshake row."""
    shake = h.handshake if isinstance(h.handshake, HandshakeView) else HandshakeView()
    return {
        "address": _endpoint(h.ip, h.port),
        "sni": h.server_name,
        "probe": probe or _PROBE_LABELS.get(h.sni_probe or "", ""),
        "version": shake.tls_version or "",
        "cipher": shake.cipher_suite or "",
        "alpn": shake.negotiated_protocol or "",
        "failure": h.failure,
        "no_tls_verify": h.no_tls_verify,
        "certificates": len(shake.peer_certificates or ()),
    }


def _body_bytes(body: Any) -> int | None:
    """The size of a response body as the probe received it: UTF-8 text, or base64 data."""
    if isinstance(body, str):
        return len(body.encode("utf-8", "surrogatepass"))
    if isinstance(body, Base64Value) and isinstance(body.data, str):
        data = body.data.strip().rstrip("=")
        return len(data) * 3 // 4
    return None


def _http_row(h: Any) -> dict[str, Any]:
    request = h.request if isinstance(h.request, RequestView) else RequestView()
    raw_body = h.response.body if h.response is not None else None
    return {
        "method": request.method or "",
        "url": h.url,
        # OONI writes code 0 and an empty body when no response came: show none.
        "status": h.status or None,
        "body_length": None if h.failure and not raw_body else _body_bytes(raw_body),
        "title": title_of(h.body),
        "failure": h.failure,
    }


def _compare(probe: Steps, obs: Observations) -> list[tuple[str, str, str]]:
    """What the probe saw next to what the control saw, step by step (the probe's own SNI
    and QUIC checks have no counterpart in the control and are left out)."""
    control = obs.control
    rows: list[tuple[str, str, str]] = []
    probe_addrs = sorted({a for q in obs.queries for a in q.addrs})
    probe_dns_fail = next((q.failure for q in obs.queries if q.failure), None)
    rows.append(
        (
            "DNS addresses",
            ", ".join(probe_addrs) or probe_dns_fail or "—",
            control.dns_failure or ", ".join(control.dns_addrs) or "—",
        )
    )
    seen = set()
    for c in obs.tcp:
        if c.sni_probe:
            continue
        endpoint = _endpoint(c.ip, c.port)
        seen.add(endpoint)
        rows.append(
            (
                f"TCP {endpoint}",
                "connected" if c.failure is None else c.failure,
                _outcome(control.tcp[endpoint]) if endpoint in control.tcp else "not tested",
            )
        )
    for endpoint, theirs in control.tcp.items():
        if endpoint not in seen:
            rows.append((f"TCP {endpoint}", "not tested", _outcome(theirs)))
    for h in obs.tls:
        if h.sni_probe:
            continue
        endpoint = _endpoint(h.ip, h.port)
        theirs = control.tls.get(endpoint)
        rows.append(
            (
                f"TLS {endpoint} ({h.server_name or 'no SNI'})",
                h.failure or "handshake ok",
                (theirs[1] or "handshake ok") if theirs else "not tested",
            )
        )
    if control.http_present or probe.http:
        final = probe.http[-1] if probe.http else {}
        mine = final.get("failure") or (
            _response(final.get("status"), final.get("body_length"), final.get("title"))
            if final
            else "—"
        )
        theirs = control.http_failure or (
            _response(control.http_status or None, control.http_body_length, control.http_title)
            if control.http_present
            else "—"
        )
        rows.append(("HTTP final response", str(mine), str(theirs)))
    return rows


def _response(status: int | None, length: int | None, title: str) -> str:
    parts = [str(status) if status is not None else "no status"]
    if length is not None and length >= 0:
        parts.append(f"{length} bytes")
    if title:
        parts.append(f"“{title}”")
    return " · ".join(parts)


def _outcome(failure: str | None) -> str:
    return "connected" if failure is None else failure
