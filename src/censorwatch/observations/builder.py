"""Flatten one stored measurement into observations: the facts the verdict reasons about.

OONI's format has grown over ten years (0.0.x to 0.5.x) and real files carry nulls, wrong types,
base64-wrapped bodies and headers, missing keys. Everything odd is absorbed here, once, so the
verdict logic only ever sees clean, typed observations: one per DNS query, TCP connect, TLS
handshake, HTTP transaction, plus what the control saw.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import msgspec
from msgspec import field

from censorwatch.observations import schema
from censorwatch.observations.text import maybe_binary, normalize_headers

SYSTEM_ENGINES = frozenset({"system", "getaddrinfo", "go", "android", "cgo", ""})
PLAIN_DNS_ENGINES = frozenset({"udp", "tcp", "do53"})


class _Obs(msgspec.Struct, gc=False):
    """Observations are plain records built by the thousand per second: msgspec structs are
    created in C (several times faster than dataclasses) and hold no reference cycles, so
    they stay out of the cyclic garbage collector."""


class DnsObs(_Obs):
    hostname: str
    engine: str
    failure: str | None
    addrs: list[str]
    asns: dict[str, int]
    depth: int
    classic: bool = False  # the system resolver (the one a browser would use)
    differs: bool | None = None
    redirect: bool = False  # asked for a redirect's host, not for the measured URL
    query: schema.Query | None = None  # what it was read from (the explorer shows more of it)


class TcpObs(_Obs):
    ip: str
    port: int
    failure: str | None
    depth: int
    classic: bool  # connected to an address the probe's own resolver returned
    sni_probe: str | None = None  # None: a real connection; "none"/"decoy": an SNI retry's


class TlsObs(_Obs):
    ip: str
    port: int
    server_name: str
    failure: str | None
    depth: int
    sni_probe: str | None  # None: the real handshake; "none"/"decoy": the SNI retry
    no_tls_verify: bool = False
    handshake: schema.Handshake | None = None  # what it was read from


class HttpObs(_Obs):
    url: str
    host: str
    scheme: str
    failure: str | None
    status: int
    body: str | None
    body_length: int
    truncated: bool
    depth: int
    response: schema.Response | None = None
    request: schema.Request | None = None
    _headers: dict[str, list[str]] | None = None

    @property
    def headers(self) -> dict[str, list[str]]:
        """Response headers, lower-case names (decoded on first use: most are never read)."""
        if self._headers is None:
            self._headers = headers_of(self.response) if self.response is not None else {}
        return self._headers


class ControlObs(_Obs):
    available: bool = False
    failure: str | None = None
    dns_failure: str | None = None
    dns_addrs: list[str] = field(default_factory=list)
    tcp: dict[str, str | None] = field(default_factory=dict)  # "ip:port" -> failure
    tls: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # -> (sni, failure)
    http_failure: str | None = None
    http_status: int = 0
    http_body_length: int = -1
    http_title: str = ""
    http_headers: dict[str, str] = field(default_factory=dict)
    http_present: bool = False
    asns: dict[str, int] = field(default_factory=dict)
    quic_ok: bool = False  # a QUIC handshake of the control succeeded

    @property
    def http_ok(self) -> bool:
        return self.http_present and self.http_failure is None and self.http_status > 0


class Observations(_Obs):
    queries: list[DnsObs]
    tcp: list[TcpObs]
    tls: list[TlsObs]
    http: list[HttpObs]  # ordered by depth, first hop first
    control: ControlObs
    duplicates: list[DnsObs]
    quic: list[TlsObs]
    throughput: dict[str, Any] | None
    network_events: list[dict[str, Any]]
    # OONI 0.5 tags every step with its redirect depth; other probes tag only requests.
    depth_tagged: bool = False


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_failure(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) and value else str(value) or None


def as_int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    return default


_DEPTHS: dict[str, int] = {}


def depth_of(tags: Any) -> int:
    """The redirect depth a probe tagged an operation with (``depth=N``), 0 when untagged."""
    if isinstance(tags, list):
        if "depth=0" in tags:
            return 0
        for tag in tags:
            if isinstance(tag, str) and tag.startswith("depth="):
                depth = _DEPTHS.get(tag)
                if depth is None:
                    depth = max(0, as_int(_int_or_none(tag[6:]), 0))
                    if len(_DEPTHS) < 1024:
                        _DEPTHS[tag] = depth
                return depth
    return 0


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def split_address(address: str) -> tuple[str, int]:
    """``1.2.3.4:443`` or ``[::1]:443`` -> (ip, port); port 0 when absent (remembered: the
    same few addresses recur in every handshake of a measurement and across a report)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, as_int(_int_or_none(rest.lstrip(":")) if rest else 0)
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, int(port) if port.isdigit() else 0
    return address, 0


@lru_cache(maxsize=8192)
def url_parts(url: str) -> tuple[str, str, int]:
    """(scheme, lower-case host, port) of a URL; empty parts when it does not parse."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return "", "", 0
    scheme = parts.scheme.lower()
    if port is None:
        port = 443 if scheme == "https" else 80 if scheme == "http" else 0
    return scheme, host, port


def headers_of(response: schema.Response) -> dict[str, list[str]]:
    """A response's headers, lower-case names: ``headers_list`` when the probe wrote one (it
    keeps repeated names), else the ``headers`` mapping."""
    return normalize_headers(response.headers_list or response.headers)


def _dns_obs(q: schema.Query) -> DnsObs:
    addrs: list[str] = []
    asns: dict[str, int] = {}
    answers = q.answers
    if answers:
        for ans in answers:
            if ans is not None:
                ip = ans.ipv4 or ans.ipv6
                if ip:
                    addrs.append(ip)
                    asn = ans.asn
                    if asn:
                        asns[ip] = asn
    if not addrs and q.addresses:
        addrs = [a for a in q.addresses if isinstance(a, str)]
    tags = q.tags
    if tags:
        depth = 0 if "depth=0" in tags else depth_of(tags)
        classic = "classic" in tags or "x_resolver=system" in tags
        redirect = "x_redirect" in tags
    else:
        depth, classic, redirect = 0, False, False
    return DnsObs(
        _host_name(q.hostname or ""),
        _engine_name(q.engine or ""),
        q.failure or None,
        addrs,
        asns,
        depth,
        classic,
        q.differs,
        redirect,
        q,
    )


@lru_cache(maxsize=4096)
def _host_name(host: str) -> str:
    """A queried name as the rules compare it: lower case, no trailing dot (remembered)."""
    if not host.islower() or host[-1:] == ".":
        return host.lower().rstrip(".")
    return host


@lru_cache(maxsize=256)
def _engine_name(engine: str) -> str:
    return engine.lower()


def observe(tk: schema.TestKeys) -> Observations:
    """All observations of one web_connectivity-shaped ``test_keys``."""
    queries = [_dns_obs(q) for q in tk.queries or () if q is not None]
    duplicates = [_dns_obs(q) for q in tk.x_dns_duplicate_responses or () if q is not None]

    tcp: list[TcpObs] = []
    for t in tk.tcp_connect or ():
        if t is None:
            continue
        status = t.status
        failure = status.failure if status else None
        if failure is None and (status is None or status.success is False):
            failure = "unknown_failure"
        tags = t.tags
        if tags:
            tcp.append(
                TcpObs(
                    t.ip or "",
                    t.port or 0,
                    failure or None,
                    0 if "depth=0" in tags else depth_of(tags),
                    "classic" in tags or "x_source=system" in tags,
                    _sni_probe(tags),
                )
            )
        else:
            tcp.append(TcpObs(t.ip or "", t.port or 0, failure or None, 0, True))

    tls: list[TlsObs] = []
    quic = [_tls_obs(h) for h in tk.quic_handshakes or () if h is not None]
    for h in tk.tls_handshakes or ():
        if h is not None:
            # Some probes file QUIC handshakes with the TLS ones, marked by their network.
            (quic if h.network in ("quic", "udp") else tls).append(_tls_obs(h))

    http: list[HttpObs] = []
    requests = [r for r in tk.requests or () if r is not None]
    n = len(requests)
    for index, r in enumerate(requests):
        request = r.request
        url = (request.url if request else None) or ""
        scheme, host, _ = url_parts(url)
        response = r.response
        if response is not None:
            body = response.body
            if body is not None and body.__class__ is not str:
                body = maybe_binary({"format": body.format, "data": body.data})
            status = response.code or 0
            truncated = response.body_is_truncated is True
        else:
            body, status, truncated = None, 0, False
        tags = r.tags
        # Positional arguments, in field order: HttpObs(url, host, scheme, failure, status,
        # body, body_length, truncated, depth, response, request).
        http.append(
            HttpObs(
                url,
                host,
                scheme,
                r.failure or None,
                status,
                body,
                len(body) if body is not None else -1,
                truncated,
                depth_of(tags) if tags else n - 1 - index,
                response,
                request,
            )
        )
    if n > 1:
        http.sort(key=_depth_key)

    events = tk.network_events
    return Observations(
        queries,
        tcp,
        tls,
        http,
        _control(tk),
        duplicates,
        quic,
        tk.x_throughput,
        [
            {"operation": e.operation, "num_bytes": e.num_bytes, "t": e.t, "tags": e.tags}
            for e in events
            if e is not None and e.operation == "bytes_received_cumulative"
        ]
        if events
        else [],
        any(t.depth for t in tcp) or any(t.depth for t in tls),
    )


def _depth_key(step: HttpObs) -> int:
    return step.depth


def _sni_probe(tags: list[Any]) -> str | None:
    """The label of censorwatch's SNI retry (``x_sni_probe=none|decoy``), if this is one."""
    if "x_sni_probe=none" in tags:
        return "none"
    if "x_sni_probe=decoy" in tags:
        return "decoy"
    return None


def _tls_obs(h: schema.Handshake) -> TlsObs:
    ip, port = split_address(h.address or "")
    tags = h.tags
    name = h.server_name or ""
    return TlsObs(
        ip,
        port,
        name if name.islower() or not name else name.lower(),
        h.failure or None,
        (0 if "depth=0" in tags else depth_of(tags)) if tags else 0,
        _sni_probe(tags) if tags else None,
        h.no_tls_verify is True,
        h,
    )


def _control_step_failure(value: dict[str, Any]) -> str | None:
    """The failure of one control TCP/TLS entry (old controls said only ``status: false``)."""
    fail = value.get("failure")
    if fail is None:
        return "unknown_failure" if value.get("status") is False else None
    if fail.__class__ is not str or not fail:
        return as_failure(fail)
    return fail


def _control(tk: schema.TestKeys) -> ControlObs:
    raw = tk.control
    failure = tk.control_failure or None
    if raw is None:
        return ControlObs(available=False, failure=failure or "no control data")
    # Every field is worked out first and the record built once, in field order (this runs
    # once per measurement; setting a dozen attributes afterwards costs more).
    dns_failure: str | None = None
    dns_addrs: list[str] = []
    if raw.dns is not None:
        dns_failure = raw.dns.failure or None
        # Old controls listed CNAME targets among the addresses: keep addresses only.
        dns_addrs = [a for a in raw.dns.addrs or () if a.__class__ is str and _is_ip(a)]
    tcp: dict[str, str | None] = {}
    if raw.tcp_connect:
        for key, value in raw.tcp_connect.items():
            if value.__class__ is dict:
                tcp[key] = _control_step_failure(value)
    tls: dict[str, tuple[str, str | None]] = {}
    if raw.tls_handshake:
        for key, value in raw.tls_handshake.items():
            if value.__class__ is not dict:
                continue
            sni = value.get("server_name")
            tls[key] = (sni.lower() if sni.__class__ is str else "", _control_step_failure(value))
    http = raw.http_request
    if http is not None:
        http_failure = http.failure or None
        http_status = http.status_code or 0
        http_body_length = http.body_length if http.body_length is not None else -1
        http_title = http.title or ""
        http_headers = {k.lower(): v for k, v in (http.headers or {}).items() if isinstance(v, str)}
    else:
        http_failure, http_status, http_body_length, http_title = None, 0, -1, ""
        http_headers = {}
    quic_ok = False
    for value in (raw.quic_handshake or {}).values():
        if value.__class__ is dict and value.get("failure") is None and value.get("status"):
            quic_ok = True
    asns: dict[str, int] = {}
    if raw.ip_info:
        for ip, info in raw.ip_info.items():
            if info.__class__ is dict:
                asn = info.get("asn")
                if asn.__class__ is int and asn > 0:
                    asns[ip] = asn
    available = failure is None
    if not (dns_addrs or dns_failure or http is not None or tcp):
        available = False
        failure = failure or "empty control response"
    return ControlObs(
        available,
        failure,
        dns_failure,
        dns_addrs,
        tcp,
        tls,
        http_failure,
        http_status,
        http_body_length,
        http_title,
        http_headers,
        http is not None,  # http_present
        asns,
        quic_ok,
    )


_IS_IP: dict[str, bool] = {}


def _is_ip(text: str) -> bool:
    known = _IS_IP.get(text)
    if known is None:
        if ":" in text:
            known = all(c in "0123456789abcdefABCDEF:." for c in text)
        else:
            parts = text.split(".")
            known = len(parts) == 4 and all(p.isdigit() for p in parts)
        if len(_IS_IP) < 4096:
            _IS_IP[text] = known
    return known


def host_display(host: str) -> str:
    """A host name as people read it: lower-case, IDNA labels decoded."""
    host = host.lower().rstrip(".")
    if "xn--" not in host:
        return host
    try:
        return host.encode("ascii").decode("idna")
    except (UnicodeError, ValueError):
        return host
