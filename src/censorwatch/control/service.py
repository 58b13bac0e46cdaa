"""The control measurement: what a URL looks like from an uncensored vantage.

Implements OONI's web-connectivity test-helper protocol (ooni/spec th-001, ooni/probe-cli
``internal/oohelperd``): the request names a URL and the endpoints the probe found; the
response gives this side's DNS answer, TCP connect and TLS handshake per endpoint, the HTTP
response, and ``ip_info`` flags per address. Failure strings follow the legacy spellings OONI's
helper answers with, so probes that read OONI's control read this one.

A control is a service anyone can ask to connect somewhere; it refuses loopback, private,
link-local and other special-purpose addresses unless it runs in testbed mode.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from censorwatch import failures
from censorwatch.netinfo import AddressPlan, is_special
from censorwatch.probe import dns, http, quic, tcp, tls
from censorwatch.probe.budget import Budgets
from censorwatch.targets import check_url

# ip_info flags (OONI model.THIPInfoFlag*).
RESOLVED_BY_PROBE, RESOLVED_BY_TH, IS_BOGON, VALID_FOR_DOMAIN = 1, 2, 4, 8

MAX_REQUEST_BYTES = 64 * 1024
MAX_ENDPOINTS = 16
MAX_HEADER_VALUES = 32
MEASURE_DEADLINE = 20.0


class BadRequest(ValueError):
    """The request does not follow the protocol; answered with HTTP 400."""


@dataclass
class ControlSettings:
    resolver: tuple[str, int] | None
    anchors: tls.TrustAnchors
    plan: AddressPlan
    testbed: bool = False
    budgets: Budgets = field(
        default_factory=lambda: Budgets(connect_timeout=5.0, tls_timeout=5.0, http_timeout=10.0)
    )
    max_endpoints: int = MAX_ENDPOINTS
    deadline: float = MEASURE_DEADLINE


def is_forbidden(ip: str, settings: ControlSettings) -> bool:
    """Addresses a control must not be made to contact: special ones (``netinfo.is_special``,
    the plan's public ranges excepted) and text that is no address; none in testbed mode."""
    if settings.testbed:
        return False
    try:
        return is_special(ip, settings.plan.public_prefixes)
    except ValueError:
        return True


def parse_request(body: Any, settings: ControlSettings) -> tuple[str, list[tuple[str, int]]]:
    """Validate a request; returns the URL and the probe's endpoints (ip, port)."""
    if not isinstance(body, dict):
        raise BadRequest("request must be a JSON object")
    url = body.get("http_request")
    if not isinstance(url, str) or check_url(url):
        raise BadRequest(f"http_request: {check_url(url) if isinstance(url, str) else 'missing'}")
    headers = body.get("http_request_headers", {})
    if headers is not None and not isinstance(headers, dict):
        raise BadRequest("http_request_headers must be an object of lists")
    if headers and sum(len(v) if isinstance(v, list) else 1 for v in headers.values()) > (
        MAX_HEADER_VALUES
    ):
        raise BadRequest("too many request headers")
    raw = body.get("tcp_connect") or []
    if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
        raise BadRequest("tcp_connect must be a list of 'ip:port' strings")
    if len(raw) > settings.max_endpoints:
        raise BadRequest(f"at most {settings.max_endpoints} tcp_connect endpoints")
    endpoints = []
    for entry in raw:
        host, _, port = entry.rpartition(":")
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            continue  # OONI's helper skips what is not an endpoint
        if 0 < number < 65536:
            endpoints.append((host, number))
    return url, endpoints


def _dns_failure(failure: str | None) -> str | None:
    if failure is None or failure == failures.DNS_NO_ANSWER:
        return None
    if failure == failures.DNS_NXDOMAIN:
        return failures.TH_DNS_NAME_ERROR
    if failure in (failures.DNS_REFUSED, failures.DNS_SERVER_MISBEHAVING, failures.GENERIC_TIMEOUT):
        return failures.TH_DNS_SERVER_FAILURE
    return failures.TH_UNKNOWN


def _legacy(failure: str | None) -> str | None:
    if failure == failures.CONNECTION_REFUSED:
        return failures.TH_CONNECTION_REFUSED
    return failure


async def _resolve(host: str, settings: ControlSettings) -> tuple[list[str], str | None]:
    try:
        ipaddress.ip_address(host)
        return [host], None
    except ValueError:
        pass
    if settings.resolver is None:
        return [], failures.TH_DNS_SERVER_FAILURE
    clock = time.monotonic()
    results = await asyncio.gather(
        *(
            dns.query_udp(
                settings.resolver,
                host,
                qtype,
                clock=clock,
                timeout=settings.budgets.dns_timeout,
                duplicate_window=0.0,
            )
            for qtype in ("A", "AAAA")
        )
    )
    addrs = [a for r in results for a in r.addresses]
    if addrs:
        return addrs, None
    return [], _dns_failure(results[0].failure or results[1].failure)


async def _endpoint(
    ip: str, port: int, host: str, use_tls: bool, settings: ControlSettings
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if is_forbidden(ip, settings):
        refused = {"status": False, "failure": failures.CONTROL_REFUSED_ADDRESS}
        return refused, None
    clock = time.monotonic()
    conn = await tcp.connect(ip, port, clock=clock, timeout=settings.budgets.connect_timeout)
    tcp_entry = {"status": conn.failure is None, "failure": _legacy(conn.failure)}
    if conn.failure or not use_tls:
        conn.close()
        return tcp_entry, None
    result = await tls.handshake(
        conn, host, clock=clock, timeout=settings.budgets.tls_timeout, anchors=settings.anchors
    )
    conn.close()
    return tcp_entry, {
        "server_name": host,
        "status": result.failure is None,
        "failure": result.failure,
    }


async def _quic(ip: str, port: int, host: str, settings: ControlSettings) -> dict[str, Any]:
    if is_forbidden(ip, settings):
        return {"server_name": host, "status": False, "failure": failures.CONTROL_REFUSED_ADDRESS}
    result = await quic.handshake(
        ip,
        port,
        host,
        clock=time.monotonic(),
        timeout=settings.budgets.quic_timeout,
        anchors=settings.anchors,
    )
    return {"server_name": host, "status": result.failure is None, "failure": result.failure}


#: The request headers a probe may choose for the control's fetch (as OONI's helper).
FORWARDED_HEADERS = ("Accept", "Accept-Language", "User-Agent")


def forwarded_headers(raw: Any) -> list[tuple[str, str]] | None:
    """The probe's Accept, Accept-Language and User-Agent; None to use the defaults."""
    if not isinstance(raw, dict):
        return None
    chosen = []
    for name in FORWARDED_HEADERS:
        values = next((v for k, v in raw.items() if str(k).lower() == name.lower()), None)
        value = values[0] if isinstance(values, list) and values else values
        if isinstance(value, str) and value and len(value) <= 1024 and value.isprintable():
            chosen.append((name, value))
    return chosen or None


async def _http(
    url: str, addrs: list[str], settings: ControlSettings, headers: list[tuple[str, str]] | None
) -> dict[str, Any]:
    failed = {
        "body_length": -1,
        "discovered_h3_endpoint": "",
        "failure": None,
        "title": "",
        "headers": {},
        "status_code": -1,
    }

    async def resolve(host: str) -> tuple[list[str], str | None]:
        found, failure = await _resolve(host, settings)
        allowed = [a for a in found if not is_forbidden(a, settings)]
        if found and not allowed:
            return [], failures.CONTROL_REFUSED_ADDRESS
        return allowed, failure

    allowed = [a for a in addrs if not is_forbidden(a, settings)]
    if not addrs:
        return {**failed, "failure": failures.TH_DNS_LOOKUP_ERROR}
    if not allowed:
        return {**failed, "failure": failures.CONTROL_REFUSED_ADDRESS}
    hops, failure = await http.fetch(
        url,
        resolve,
        clock=time.monotonic(),
        budgets=settings.budgets,
        anchors=settings.anchors,
        first_ip=allowed[0],
        headers=headers,
    )
    if failure is not None or not hops:
        if failure in (
            failures.DNS_NXDOMAIN,
            failures.DNS_NO_ANSWER,
            failures.TH_DNS_NAME_ERROR,
            failures.TH_DNS_SERVER_FAILURE,
        ):
            failure = failures.TH_DNS_LOOKUP_ERROR
        return {**failed, "failure": _legacy(failure)}
    final = hops[-1]
    return {
        "body_length": final.body_length,
        "discovered_h3_endpoint": "",
        "failure": None,
        "title": final.title,
        "headers": {k: v for k, v in final.headers},
        "status_code": final.status_code,
    }


async def measure(body: Any, settings: ControlSettings) -> dict[str, Any]:
    """Answer one control request (raises BadRequest for malformed ones)."""
    url, probe_endpoints = parse_request(body, settings)
    parts = urlsplit(url)
    host = (parts.hostname or "").strip("[]")
    async with asyncio.timeout(settings.deadline):
        addrs, dns_failure = await _resolve(host, settings)
        flags: dict[str, int] = {}
        for ip, _ in probe_endpoints:
            flags[ip] = flags.get(ip, 0) | RESOLVED_BY_PROBE
        for ip in addrs:
            flags[ip] = flags.get(ip, 0) | RESOLVED_BY_TH
        default_ports = [443] if parts.scheme == "https" else [80, 443]
        ports = [parts.port] if parts.port else default_ports
        wanted: dict[str, tuple[str, int, bool]] = {}
        for ip, port in probe_endpoints:
            wanted[tcp.endpoint(ip, port)] = (ip, port, port == 443 or parts.scheme == "https")
        for ip in addrs:
            for port in ports:
                use_tls = port == 443 or (parts.scheme == "https" and port == parts.port)
                wanted.setdefault(tcp.endpoint(ip, port), (ip, port, use_tls))
        chosen = sorted(wanted.items())[: settings.max_endpoints]
        headers = forwarded_headers(body.get("http_request_headers"))
        http_task = asyncio.create_task(_http(url, addrs, settings, headers))
        results = await asyncio.gather(
            *(_endpoint(ip, port, host, use_tls, settings) for _, (ip, port, use_tls) in chosen)
        )
        # QUIC where TLS over TCP reached the site (or was cut off); an address whose
        # certificate is not valid for the name is not the site's, so QUIC there says nothing.
        quic_wanted = (
            [
                (key, ip, port)
                for (key, (ip, port, _)), (_, tls_entry) in zip(chosen, results, strict=True)
                if tls_entry is not None
                and not str(tls_entry["failure"] or "").startswith("ssl_")
                and tls_entry["failure"] != failures.CONTROL_REFUSED_ADDRESS
            ]
            if body.get("x_quic_enabled") is True
            else []
        )
        quic_results = await asyncio.gather(
            *(_quic(ip, port, host, settings) for _, ip, port in quic_wanted)
        )
        http_result = await http_task
    quic_handshake = {
        key: entry for (key, _, _), entry in zip(quic_wanted, quic_results, strict=True)
    }
    tcp_connect: dict[str, Any] = {}
    tls_handshake: dict[str, Any] = {}
    for (key, (ip, _, _)), (tcp_entry, tls_entry) in zip(chosen, results, strict=True):
        tcp_connect[key] = tcp_entry
        if tls_entry is not None:
            tls_handshake[key] = tls_entry
            if tls_entry["status"]:
                flags[ip] = flags.get(ip, 0) | VALID_FOR_DOMAIN
    ip_info = {}
    for ip, flag in sorted(flags.items()):
        if settings.plan.is_bogon(ip):
            flag |= IS_BOGON
        info = settings.plan.lookup(ip)
        ip_info[ip] = {"asn": info.asn if info else 0, "flags": flag}
    return {
        "tcp_connect": tcp_connect,
        "tls_handshake": tls_handshake,
        "quic_handshake": quic_handshake,
        "http_request": http_result,
        "http3_request": None,
        "dns": {"failure": dns_failure, "addrs": addrs},
        "ip_info": ip_info,
    }
