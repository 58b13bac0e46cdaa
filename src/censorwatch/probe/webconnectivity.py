"""One URL → one OONI web_connectivity measurement.

The flow, each step bounded by ``Budgets`` and the whole URL by ``url_deadline``:
DNS (system, public UDP and DoH resolvers; A and AAAA) → the control request (in the
background) → TCP to every address → TLS with the real SNI, and on failure with no SNI and a
decoy SNI → HTTP GET with redirects → TCP/TLS to addresses only the control saw →
throughput (media hosts or ``--throughput``). The summary keys (``dns_consistency``,
``blocking``, ``accessible`` …) are OONI's classic ones, computed by ``analysis.classic`` from
the record's observations; the analysis stage derives the verdict from the same observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec

from censorwatch import failures
from censorwatch.analysis.classic import classic_keys
from censorwatch.model import derive_measurement_uid
from censorwatch.netinfo import AddressPlan
from censorwatch.observations.schema import MeasurementView, TestKeysView, to_typed
from censorwatch.probe import (
    control_client,
    dns,
    http,
    locate,
    quic,
    tcp,
    throughput,
    tls,
    workarounds,
)
from censorwatch.probe.config import SOFTWARE_NAME, TEST_VERSION, ProbeConfig
from censorwatch.probe.dns import DNSResult, format_hostport
from censorwatch.scrub import PROBE_IP_PLACEHOLDER, Scrubber
from censorwatch.targets import Target
from censorwatch.times import ooni_time, utcnow

ENDPOINT_CONCURRENCY = 8


@dataclass
class _Record:
    """Everything observed so far; survives the URL deadline cutting the flow short."""

    queries: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    listening: list[tuple[str, DNSResult]] = field(default_factory=list)  # late answers pending
    tcp_connect: list[dict[str, Any]] = field(default_factory=list)
    tls_handshakes: list[dict[str, Any]] = field(default_factory=list)
    quic_handshakes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    hops: list[http.Exchange] = field(default_factory=list)
    http_failure: str | None = None
    http_attempted: bool = False
    control: dict[str, Any] | None = None
    control_failure: str | None = None
    control_request: dict[str, Any] | None = None
    control_url: str | None = None  # the control that answered (or was tried last)
    classic_addresses: list[str] = field(default_factory=list)
    classic_failure: str | None = None
    tcp_ok: dict[str, bool] = field(default_factory=dict)  # "ip:port" -> connected
    tls_sni: dict[str, str | None] = field(default_factory=dict)  # "ip:port" -> failure
    throughput: dict[str, Any] | None = None
    deadline_exceeded: bool = False
    control_task: asyncio.Task[None] | None = None
    _next_id: int = 0

    def tid(self) -> int:
        self._next_id += 1
        return self._next_id


def _addresses_of(results: list[DNSResult]) -> list[str]:
    """Every address the results answered, in order, once."""
    out: list[str] = []
    for r in results:
        out.extend(a for a in r.addresses if a not in out)
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class WebConnectivity:
    """Measures URLs under one configuration; one instance serves a whole run."""

    def __init__(self, config: ProbeConfig, scrubber: Scrubber | None = None) -> None:
        self.config = config
        self.scrubber = scrubber or Scrubber()
        self.budgets = config.budgets

    # -- DNS -----------------------------------------------------------------------------
    def _resolvers(self) -> list[tuple[str, str, Any]]:
        """(label, engine, where) for each configured resolver, system first."""
        out: list[tuple[str, str, Any]] = []
        if self.config.system_resolver:
            out.append(("system", "udp", self.config.system_resolver))
        if self.config.udp_resolver:
            out.append(("udp", "udp", self.config.udp_resolver))
        if self.config.doh_url:
            out.append(("doh", "doh", self.config.doh_url))
        return out

    async def _query(
        self, engine: str, where: Any, host: str, qtype: str, clock: float
    ) -> DNSResult:
        if engine == "doh":
            return await dns.query_doh(
                where,
                host,
                qtype,
                clock=clock,
                timeout=self.budgets.dns_timeout,
                verify=self.config.anchors.ssl_context(),
                scrubber=self.scrubber,
            )
        return await dns.query_udp(
            where,
            host,
            qtype,
            clock=clock,
            timeout=self.budgets.dns_timeout,
            duplicate_window=self.budgets.dns_duplicate_window,
            scrubber=self.scrubber,
        )

    async def _collect_duplicates(self, rec: _Record) -> None:
        """Late DNS answers heard while the flow went on, and for a short grace after it."""
        grace = 0.0 if rec.deadline_exceeded else self.budgets.dns_late_grace
        until = time.monotonic() + grace
        for label, result in rec.listening:
            await result.settle(max(0.0, until - time.monotonic()))
            for dup in result.duplicates:
                rec.duplicates.append(
                    {**dup, "engine": result.engine, "tags": [f"x_resolver={label}"]}
                )

    async def _resolve_all(self, host: str, rec: _Record, clock: float) -> dict[str, list[str]]:
        """Addresses per resolver label; every query recorded. The system resolver's two
        queries are recorded as one lookup, as OONI's probes record the system's answer."""
        jobs = []
        for label, engine, where in self._resolvers():
            for qtype in ("A", "AAAA"):
                jobs.append((label, qtype, self._query(engine, where, host, qtype, clock)))
        results = await asyncio.gather(*(j[2] for j in jobs))
        by_label: dict[str, list[DNSResult]] = {}
        for (label, _qtype, _), result in zip(jobs, results, strict=True):
            by_label.setdefault(label, []).append(result)
        addresses: dict[str, list[str]] = {}
        for label, found in by_label.items():
            self._record_lookup(rec, label, found, [])
            addresses[label] = _addresses_of(found)
        first = self._resolvers()[0][0] if self._resolvers() else None
        if first is not None:
            rec.classic_addresses = addresses.get(first, [])
            if not rec.classic_addresses:
                fails = [r.failure for r in by_label.get(first, []) if r.failure]
                # The A query's failure speaks for the name (AAAA often has no answer).
                rec.classic_failure = fails[0] if fails else failures.DNS_NO_ANSWER
        return addresses

    def _record_lookup(
        self, rec: _Record, label: str, results: list[DNSResult], extra_tags: list[str]
    ) -> dict[str, Any]:
        """Record one resolver's answers for a name: the system resolver's as one
        ``getaddrinfo`` lookup, any other resolver's as one query per type."""
        rec.listening.extend((label, r) for r in results)
        tags = [f"x_resolver={label}", *extra_tags]
        if label == "system":
            query = dns.system_lookup_query(
                results, self.config.plan, rec.tid(), ["classic", *tags]
            )
            rec.queries.append(query)
            return query
        recorded = [r.to_query(self.config.plan, rec.tid(), tags) for r in results]
        rec.queries.extend(recorded)
        ok = [q for q in recorded if not q["failure"]]
        return ok[0] if ok else recorded[0]

    def _redirect_resolver(
        self, rec: _Record, clock: float, *, record: bool = True
    ) -> http.Resolver:
        """How a redirect's next host is looked up: by the first resolver, the system one's
        answer recorded as the system's lookup (both families) like the measured name's."""

        async def resolve(host: str) -> tuple[list[str], str | None]:
            if _is_ip(host):
                return [host.strip("[]")], None
            resolvers = self._resolvers()
            if not resolvers:
                return [], failures.DNS_SERVER_MISBEHAVING
            label, engine, where = resolvers[0]
            qtypes = ("A", "AAAA") if label == "system" else ("A",)
            results = list(
                await asyncio.gather(*(self._query(engine, where, host, q, clock) for q in qtypes))
            )
            failure: str | None
            if record:
                failure = self._record_lookup(rec, label, results, ["x_redirect"])["failure"]
            else:
                failure = None if _addresses_of(results) else results[0].failure
            # The A answers first: the HTTP step connects to the first address.
            return ([] if failure else _addresses_of(results)), failure

        return resolve

    # -- TCP and TLS ---------------------------------------------------------------------
    async def _endpoint(
        self,
        ip: str,
        port: int,
        use_tls: bool,
        host: str,
        source: str,
        rec: _Record,
        clock: float,
    ) -> tls.TLSResult | None:
        """TCP, then TLS with the real name (and SNI probes when it fails); the TLS result."""
        b = self.budgets
        tags = ["tcptls_experiment", f"x_source={source}"]
        conn = await tcp.connect(
            ip, port, clock=clock, timeout=b.connect_timeout, scrubber=self.scrubber
        )
        rec.tcp_connect.append(conn.to_entry(rec.tid(), tags))
        key = tcp.endpoint(ip, port)
        rec.tcp_ok[key] = conn.failure is None
        if conn.failure or not use_tls:
            conn.close()
            return None
        result = await tls.handshake(
            conn, host, clock=clock, timeout=b.tls_timeout, anchors=self.config.anchors
        )
        conn.close()
        rec.tls_handshakes.append(result.to_entry(rec.tid(), tags))
        rec.tls_sni[key] = result.failure
        if result.failure is None:
            return result
        # Same address, different ClientHello: does the name or the address trigger it?
        await asyncio.gather(
            self._sni_probe(ip, port, host, "none", None, tags, rec, clock),
            self._sni_probe(ip, port, host, "decoy", tls.DECOY_SNI, tags, rec, clock),
        )
        return result

    async def _sni_probe(
        self,
        ip: str,
        port: int,
        host: str,
        label: str,
        sni: str | None,
        tags: list[str],
        rec: _Record,
        clock: float,
    ) -> None:
        b = self.budgets
        probe_tags = [*tags, f"x_sni_probe={label}"]
        retry = await tcp.connect(
            ip, port, clock=clock, timeout=b.connect_timeout, scrubber=self.scrubber
        )
        rec.tcp_connect.append(retry.to_entry(rec.tid(), probe_tags))
        if retry.failure:
            return
        probe = await tls.handshake(
            retry,
            sni,
            clock=clock,
            timeout=b.tls_timeout,
            anchors=self.config.anchors,
            verify_name=host,
        )
        retry.close()
        # Judged on the handshake alone; whether the certificate fits the real name is kept
        # separately.
        valid = probe.verification_failure is None if probe.chain_der else None
        if probe.verification_failure and probe.failure == probe.verification_failure:
            probe.failure = None
        entry = probe.to_entry(rec.tid(), probe_tags)
        entry["no_tls_verify"] = True
        entry["x_certificate_valid_for_host"] = valid
        rec.tls_handshakes.append(entry)

    async def _endpoints(
        self, targets: list[tuple[str, int, bool, str]], host: str, rec: _Record, clock: float
    ) -> None:
        gate = asyncio.Semaphore(ENDPOINT_CONCURRENCY)

        async def one(ip: str, port: int, use_tls: bool, source: str) -> None:
            # QUIC starts beside TCP/TLS to the same address and port (UDP 443 dropped while
            # TCP 443 works is QUIC blocking) ...
            over_quic = (
                asyncio.create_task(self._quic(ip, port, host, source, rec, clock))
                if self.config.quic and use_tls
                else None
            )
            try:
                async with gate:
                    result = await self._endpoint(ip, port, use_tls, host, source, rec, clock)
            except BaseException:
                if over_quic is not None:
                    over_quic.cancel()
                raise
            if over_quic is None:
                return
            if result is not None and result.chain_der and result.verification_failure:
                # ... unless the address answered TLS with a certificate not valid for the
                # name: it is not the site's (a hijack or interception), QUIC there tells
                # nothing and would only wait out its budget.
                over_quic.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await over_quic
                return
            await over_quic

        await asyncio.gather(*(one(*t) for t in targets))

    async def _quic(
        self, ip: str, port: int, host: str, source: str, rec: _Record, clock: float
    ) -> None:
        result = await quic.handshake(
            ip,
            port,
            host,
            clock=clock,
            timeout=self.budgets.quic_timeout,
            anchors=self.config.anchors,
            scrubber=self.scrubber,
        )
        tags = ["quic_experiment", f"x_source={source}"]
        rec.quic_handshakes.append(quic.to_entry(result, rec.tid(), tags))

    # -- control -------------------------------------------------------------------------
    async def _control(self, url: str, endpoints: list[str], rec: _Record) -> None:
        rec.control_request = control_client.build_request(url, endpoints, quic=self.config.quic)
        controls = self.config.controls
        if not controls:
            rec.control_failure = failures.CONTROL_NOT_CONFIGURED
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budgets.control_timeout
        for control_url in controls:  # in order, the next one only when this one failed
            rec.control_url = control_url
            rec.control, rec.control_failure = await control_client.query(
                control_url,
                rec.control_request,
                verify=self.config.anchors.ssl_context(),
                timeout=max(0.5, deadline - loop.time()),
                max_bytes=self.budgets.control_max_response,
                scrubber=self.scrubber,
            )
            if rec.control is not None or loop.time() >= deadline - 0.5:
                break

    # -- the flow ------------------------------------------------------------------------
    async def measure(self, target: Target) -> dict[str, Any]:
        """Measure one URL; returns the scrubbed OONI measurement."""
        start = utcnow()
        clock = time.monotonic()
        rec = _Record()
        try:
            async with asyncio.timeout(self.budgets.url_deadline):
                await self._flow(target, rec, clock)
        except TimeoutError:
            rec.deadline_exceeded = True
        finally:
            control_task = rec.control_task
            if control_task is not None and not control_task.done():
                control_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await control_task
                if rec.control is None and rec.control_failure is None:
                    rec.control_failure = failures.GENERIC_TIMEOUT
            await self._collect_duplicates(rec)
        if rec.http_attempted is False and rec.http_failure is None:
            rec.http_failure = rec.classic_failure
        runtime = time.monotonic() - clock
        measurement = self._assemble(target, rec, start, runtime)
        await workarounds.attach(measurement, target, self.config, self.scrubber)  # if blocked
        await locate.attach(measurement, target, self.config)  # with --locate
        return self._finish(measurement)

    async def _flow(self, target: Target, rec: _Record, clock: float) -> None:
        parts = urlsplit(target.url)
        host = (parts.hostname or "").strip("[]")
        scheme = parts.scheme
        port = parts.port or http.default_port(scheme)
        if _is_ip(host):
            by_label = {"literal": [host]}
            rec.classic_addresses = [host]
        else:
            by_label = await self._resolve_all(host, rec, clock)
        ordered: list[tuple[str, str]] = []
        for label, addresses in by_label.items():
            for ip in addresses:
                if ip not in [o[0] for o in ordered]:
                    ordered.append((ip, label))
        ordered = ordered[: self.budgets.max_addresses]
        ports = [(port, scheme == "https")]
        if scheme == "http" and parts.port is None:
            ports.append((443, True))
        endpoints = [tcp.endpoint(ip, p) for ip, _ in ordered for p, _ in ports]
        rec.control_task = asyncio.create_task(self._control(target.url, endpoints, rec))
        await self._endpoints(
            [(ip, p, t, label) for ip, label in ordered for p, t in ports], host, rec, clock
        )
        # HTTP from the system resolver's answer, from an address that connected.
        working = [
            ip
            for ip in rec.classic_addresses
            if rec.tcp_ok.get(tcp.endpoint(ip, port))
            and rec.tls_sni.get(tcp.endpoint(ip, port), None) is None
        ]
        if rec.classic_addresses and not working:
            # As OONI: no request without a connection that works; the failure of the first
            # address's connection or handshake is the HTTP experiment's failure.
            rec.http_failure = self._endpoint_failure(rec, rec.classic_addresses[0], port)
            rec.http_attempted = True
        elif working:
            rec.http_attempted = True
            rec.hops, rec.http_failure = await http.fetch(
                target.url,
                self._redirect_resolver(rec, clock),
                clock=clock,
                budgets=self.budgets,
                anchors=self.config.anchors,
                scrubber=self.scrubber,
                first_ip=working[0],
            )
            for depth, hop in enumerate(rec.hops):
                rec.requests.insert(0, hop.to_entry(rec.tid(), [f"depth={depth}"]))
        await rec.control_task
        # Addresses only the control knew: are they reachable from here?
        known = {ip for ip, _ in ordered}
        extra = []
        if rec.control:
            for ip in (rec.control.get("dns") or {}).get("addrs") or []:
                if isinstance(ip, str) and _is_ip(ip) and ip not in known:
                    known.add(ip)
                    extra.extend((ip, p, t, "control") for p, t in ports)
        if extra:
            await self._endpoints(extra[: self.budgets.max_addresses * 2], host, rec, clock)
        if target.media or self.config.throughput:
            await self._throughput(target, rec, clock)

    @staticmethod
    def _endpoint_failure(rec: _Record, ip: str, port: int) -> str:
        key = tcp.endpoint(ip, port)
        if rec.tls_sni.get(key):
            return str(rec.tls_sni[key])
        for entry in rec.tcp_connect:
            if (entry["ip"], entry["port"]) == (ip, port) and entry["status"]["failure"]:
                return str(entry["status"]["failure"])
        return failures.UNKNOWN

    async def _throughput(self, target: Target, rec: _Record, clock: float) -> None:
        # The downloads' lookups (the reference host's above all) are not steps of measuring
        # the URL, so they stay out of ``queries``; each download names what it connected to.
        resolve = self._redirect_resolver(rec, clock, record=False)
        common = dict(
            clock=clock, budgets=self.budgets, anchors=self.config.anchors, scrubber=self.scrubber
        )
        object_url = throughput.object_url(target.url, target.throughput_path)
        own = await throughput.download(object_url, resolve, **common)
        summary: dict[str, Any] = {"target": own.summary(), "reference": None}
        if self.config.reference_url:
            ref = await throughput.download(self.config.reference_url, resolve, **common)
            pairs = [(own, ref)]
            if throughput.needs_confirming(own, ref):
                again = await throughput.download(object_url, resolve, **common)
                pairs.append(
                    (again, await throughput.download(self.config.reference_url, resolve, **common))
                )
                summary["rounds"] = [
                    {"target": t.summary(), "reference": r.summary()} for t, r in pairs
                ]
            # The pair kindest to the target is reported: "throttled" only if every one was.
            own, ref = max(pairs, key=lambda pair: throughput.ratio(*pair))
            summary["target"], summary["reference"] = own.summary(), ref.summary()
            if own.bps and ref.bps:
                summary["ratio"] = round(own.bps / ref.bps, 4)
        rec.throughput = summary

    # -- the record ----------------------------------------------------------------------
    def _assemble(self, target: Target, rec: _Record, start: Any, runtime: float) -> dict[str, Any]:
        cfg = self.config
        resolver_ip = cfg.system_resolver[0] if cfg.system_resolver else ""
        resolver_info = cfg.plan.lookup(resolver_ip) if resolver_ip else None
        resolver_asn = f"AS{resolver_info.asn}" if resolver_info else "AS0"
        resolver_name = resolver_info.as_org_name if resolver_info else ""
        if cfg.resolver is not None:  # found by the probe itself (prepare.locate)
            resolver_ip, resolver_asn = cfg.resolver.ip, cfg.resolver.asn
            resolver_name = cfg.resolver.network_name
        control_url = rec.control_url or cfg.control_url
        annotations: dict[str, Any] = {"x_testbed": cfg.testbed} if cfg.testbed else {}
        if cfg.location is not None:
            annotations["x_geolocation"] = cfg.location.annotation()
        if cfg.checkin_note is not None:
            annotations["x_checkin"] = dict(cfg.checkin_note)
        test_keys: dict[str, Any] = {
            "agent": "redirect",
            "client_resolver": (cfg.system_resolver[0] if cfg.system_resolver else "") or None,
            "retries": None,
            "socksproxy": None,
            "network_events": None,
            "x_dns_whoami": None,
            "x_doh": None,
            "x_do53": None,
            "x_dns_duplicate_responses": rec.duplicates or None,
            "queries": rec.queries or None,
            "requests": rec.requests or None,
            "tcp_connect": rec.tcp_connect or None,
            "tls_handshakes": rec.tls_handshakes or None,
            "quic_handshakes": rec.quic_handshakes or None,
            "x_control_request": rec.control_request,
            "control": rec.control,
            "x_conn_priority_log": None,
            "control_failure": rec.control_failure,
            "x_dns_flags": 0,
            "dns_experiment_failure": rec.classic_failure,
            "http_experiment_failure": rec.http_failure,
            "x_null_null_flags": 0,
            "x_resolvers": {
                label: (format_hostport(*where) if isinstance(where, tuple) else where)
                for label, _, where in self._resolvers()
            },
            "x_throughput": rec.throughput,
            "x_deadline_exceeded": rec.deadline_exceeded,
        }
        test_keys.update(summarize(test_keys, target.url, cfg.plan))
        measurement: dict[str, Any] = {
            "annotations": annotations,
            "data_format_version": "0.2.0",
            "extensions": {
                "dnst": 0,
                "httpt": 0,
                "netevents": 0,
                "tcpconnect": 0,
                "tlshandshake": 0,
                "tunnel": 0,
            },
            "input": target.url,
            "measurement_start_time": ooni_time(start),
            "probe_asn": cfg.probe_asn,
            "probe_cc": cfg.probe_cc,
            "probe_ip": PROBE_IP_PLACEHOLDER,
            "probe_network_name": cfg.probe_network_name,
            "report_id": cfg.report_id,
            "resolver_asn": resolver_asn,
            "resolver_ip": resolver_ip,
            "resolver_network_name": resolver_name,
            "software_name": SOFTWARE_NAME,
            "software_version": cfg.software_version,
            "test_helpers": {
                "backend": {"address": control_url, "type": urlsplit(control_url).scheme}
            }
            if control_url
            else {},
            "test_keys": test_keys,
            "test_name": "web_connectivity",
            "test_runtime": round(runtime, 6),
            "test_start_time": ooni_time(start),
            "test_version": TEST_VERSION,
        }
        if target.category_code:
            measurement["annotations"]["category_code"] = target.category_code
        return measurement

    def _finish(self, measurement: dict[str, Any]) -> dict[str, Any]:
        scrubbed = self.scrubber.scrub(measurement)
        scrubbed["probe_ip"] = PROBE_IP_PLACEHOLDER
        if self.config.signing_key is not None:
            from censorwatch.signing.signatures import sign_measurement

            scrubbed = sign_measurement(scrubbed, self.config.signing_key)
        scrubbed["measurement_uid"] = derive_measurement_uid(scrubbed)
        return scrubbed


def summarize(test_keys: dict[str, Any], url: str, plan: AddressPlan) -> dict[str, Any]:
    """OONI's classic summary keys of the measurement being assembled, computed by the
    analysis from its observations (``analysis.classic``), as every other reader sees it."""
    try:
        typed, _ = to_typed({"test_keys": test_keys}, MeasurementView)
    except (ValueError, msgspec.ValidationError):
        typed = MeasurementView()
    tk = typed.test_keys if isinstance(typed.test_keys, TestKeysView) else TestKeysView()
    return classic_keys(tk, url, plan).as_test_keys()
