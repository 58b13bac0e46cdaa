"""A raw OONI measurement's steps as table rows: DNS, TCP, TLS, HTTP, and the control's view.

Reads the OONI data format loosely (real files vary): a missing key shows as empty, never as an
error, so any stored measurement can be opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
MAX_TITLE = 200


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


def _list(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _asn_text(asn: Any, org: Any = None) -> str:
    if asn in (None, "", 0):
        return ""
    text = asn if isinstance(asn, str) and asn.upper().startswith("AS") else f"AS{asn}"
    return f"{text} {org}" if org else str(text)


def _body_text(body: Any) -> str | None:
    if isinstance(body, str):
        return body
    return None  # base64 bodies ({"format": "base64", ...}) are binary


def _title(body: Any) -> str:
    text = _body_text(body)
    if not text:
        return ""
    m = _TITLE.search(text[:65536])
    return " ".join(m.group(1).split())[:MAX_TITLE] if m else ""


def _body_length(body: Any) -> int | None:
    if isinstance(body, str):
        return len(body.encode("utf-8", "replace"))
    if isinstance(body, dict) and isinstance(body.get("data"), str):
        return len(body["data"]) * 3 // 4
    return None


def _sni_probe(tags: Any) -> str:
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith("x_sni_probe="):
            return tag.split("=", 1)[1]
    return ""


def _probe_label(probe: str) -> str:
    """The extra handshakes that tell SNI filtering from IP blocking, named for readers."""
    return {"none": "no SNI", "decoy": "decoy SNI"}.get(probe, probe)


def steps(measurement: dict[str, Any]) -> Steps:
    """The table rows of one measurement's ``test_keys``."""
    tk = _dict(measurement.get("test_keys"))
    control = _dict(tk.get("control"))
    ip_info = _dict(control.get("ip_info"))
    out = Steps(control_failure=tk.get("control_failure"))

    for q in _list(tk.get("queries")):
        answers = []
        for a in _list(q.get("answers")):
            value = a.get("ipv4") or a.get("ipv6") or a.get("hostname") or ""
            asn = a.get("asn") or _dict(ip_info.get(value)).get("asn")
            answers.append({"type": a.get("answer_type", ""), "value": value,
                            "asn": _asn_text(asn, a.get("as_org_name"))})  # fmt: skip
        out.dns.append(
            {
                "hostname": q.get("hostname", ""),
                "query_type": q.get("query_type", ""),
                "engine": q.get("engine", ""),
                "resolver": q.get("resolver_address") or "",
                "answers": answers,
                "failure": q.get("failure"),
            }
        )

    for c in _list(tk.get("tcp_connect")):
        status = _dict(c.get("status"))
        out.tcp.append(
            {
                "ip": c.get("ip", ""),
                "port": c.get("port", ""),
                "asn": _asn_text(_dict(ip_info.get(c.get("ip"))).get("asn")),
                "success": status.get("success"),
                "failure": status.get("failure"),
                "probe": _probe_label(_sni_probe(c.get("tags"))),
            }
        )

    for h in _list(tk.get("tls_handshakes")):
        probe = _sni_probe(h.get("tags"))
        sni = h.get("server_name") or ""
        out.tls.append(
            {
                "address": h.get("address", ""),
                "sni": sni,
                "probe": _probe_label(probe),
                "version": h.get("tls_version") or "",
                "cipher": h.get("cipher_suite") or "",
                "alpn": h.get("negotiated_protocol") or "",
                "failure": h.get("failure"),
                "no_tls_verify": bool(h.get("no_tls_verify")),
                "certificates": len(_list(h.get("peer_certificates"))),
            }
        )

    for r in _list(tk.get("requests")):
        req, resp = _dict(r.get("request")), _dict(r.get("response"))
        out.http.append(
            {
                "method": req.get("method", ""),
                "url": req.get("url", ""),
                # OONI writes code 0 and an empty body when no response came: show none.
                "status": resp.get("code") or None,
                "body_length": None
                if r.get("failure") and not resp.get("body")
                else (_body_length(resp.get("body"))),
                "title": _title(resp.get("body")),
                "failure": r.get("failure"),
            }
        )

    out.compare = _compare(out, control) if control else []
    return out


def _compare(probe: Steps, control: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What the probe saw next to what the control saw, step by step."""
    rows: list[tuple[str, str, str]] = []
    dns = _dict(control.get("dns"))
    probe_addrs = sorted({a["value"] for q in probe.dns for a in q["answers"] if a["value"]})
    probe_dns_fail = next((q["failure"] for q in probe.dns if q["failure"]), None)
    rows.append(
        (
            "DNS addresses",
            ", ".join(probe_addrs) or probe_dns_fail or "—",
            dns.get("failure") or ", ".join(str(a) for a in dns.get("addrs") or []) or "—",
        )
    )
    tcp_control = _dict(control.get("tcp_connect"))
    seen = set()
    for c in probe.tcp:
        if c["probe"]:
            continue
        endpoint = (
            f"{c['ip']}:{c['port']}" if ":" not in str(c["ip"]) else f"[{c['ip']}]:{c['port']}"
        )
        seen.add(endpoint)
        theirs = _dict(tcp_control.get(endpoint))
        rows.append(
            (
                f"TCP {endpoint}",
                "connected" if c["success"] else (c["failure"] or "failed"),
                _outcome(theirs) if theirs else "not tested",
            )
        )
    for endpoint, theirs in tcp_control.items():
        if endpoint not in seen:
            rows.append((f"TCP {endpoint}", "not tested", _outcome(_dict(theirs))))
    tls_control = _dict(control.get("tls_handshake"))
    for h in probe.tls:
        if h["probe"]:
            continue
        theirs = _dict(tls_control.get(h["address"]))
        rows.append(
            (
                f"TLS {h['address']} ({h['sni'] or 'no SNI'})",
                h["failure"] or "handshake ok",
                (theirs.get("failure") or "handshake ok") if theirs else "not tested",
            )
        )
    http = _dict(control.get("http_request"))
    if http or probe.http:
        first = probe.http[-1] if probe.http else {}
        mine = first.get("failure") or (
            _response(first.get("status"), first.get("body_length"), first.get("title"))
            if first
            else "—"
        )
        theirs = http.get("failure") or (
            _response(http.get("status_code"), http.get("body_length"), http.get("title"))
            if http
            else "—"
        )
        rows.append(("HTTP final response", str(mine), str(theirs)))
    return rows


def _response(status: Any, length: Any, title: Any) -> str:
    parts = [str(status) if status is not None else "no status"]
    if length is not None and length >= 0:
        parts.append(f"{length} bytes")
    if title:
        parts.append(f"“{title}”")
    return " · ".join(parts)


def _outcome(status: dict[str, Any]) -> str:
    if status.get("status"):
        return "connected"
    return status.get("failure") or "failed"
