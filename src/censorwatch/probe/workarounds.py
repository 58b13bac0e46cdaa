"""What still gets through: the ways around a block, tried once the block is seen.

When the measurement of a URL shows it blocked (the analysis' own verdict on the record just
assembled), the probe tries the ways around that exist in the wild, each bounded by
``Budgets.workaround_timeout`` and ``workaround_max_bytes``, all of them together by
``workarounds_deadline``, and records each as one step under ``test_keys.x_workarounds``
(docs/probe.md). The analysis (``analysis/workarounds.py``) judges each step: works, fails or
not tried.

Every attempt goes to a destination the blocked attempt already involved — the target's own
addresses, names and ports, the resolvers the probe is configured with, and the platform's
own other hosts — and asks for the same page. None uses a proxy, a tunnel or a third party the
user did not name, so no step tells an on-path observer more than the blocked attempt did:
that this network's user wanted this platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import dns.message
import dns.rdatatype

from censorwatch import failures
from censorwatch.observations.builder import Observations, observe
from censorwatch.observations.schema import MeasurementView, TestKeysView, to_typed
from censorwatch.probe import defaults, http, workaround_h3
from censorwatch.probe import dns as probedns
from censorwatch.probe.config import ProbeConfig
from censorwatch.probe.tls import DECOY_SNI
from censorwatch.probe.workaround_tls import PageResult, Split, https_get
from censorwatch.scrub import Scrubber
from censorwatch.targets import Target, profiles

#: Attempts in flight at once for one URL.
CONCURRENCY = 4
#: Resolvers of each kind asked (the configured one first, then the probe's defaults').
MAX_RESOLVERS = 3
#: The platform's other hosts tried as fronts.
MAX_FRONTS = 3
#: The SvcParamKey of ``ech`` in HTTPS/SVCB records (RFC 9460 §14.3.2).
ECH_PARAM_KEY = 5
ECH_NOT_IN_PYTHON = (
    "Python's ssl module offers no Encrypted ClientHello (OpenSSL 3.0 has none), "
    "and no TLS library installed here does"
)


def registrable(host: str) -> str:
    return ".".join(host.rstrip(".").lower().split(".")[-2:])


@lru_cache(maxsize=256)
def platform_fronts(host: str) -> tuple[str, ...]:
    """The platform's other hosts on another registrable domain (its CDN and media hosts),
    from the profiles that list ``host``'s domain: where a front can be found."""
    own = registrable(host)
    for name in profiles.available():
        hosts = [urlsplit(t.url).hostname or "" for t in profiles.load(name)]
        if own in {registrable(h) for h in hosts}:
            return tuple(dict.fromkeys(h for h in hosts if h and registrable(h) != own))
    return ()


def blocked_method(measurement: dict[str, Any], config: ProbeConfig) -> str | None:
    """The analysis' method when it finds this measurement blocked, else None."""
    from censorwatch.analysis import analyze

    verdict = analyze(measurement, plan=config.plan)
    return verdict.method if verdict.verdict == "blocked" else None


def _observations(measurement: dict[str, Any]) -> Observations:
    typed, _ = to_typed(measurement, MeasurementView)
    tk = typed.test_keys if isinstance(typed.test_keys, TestKeysView) else TestKeysView()
    return observe(tk)


class Attempts:
    """The ways around one block: what to try, and each attempt's step record."""

    def __init__(
        self,
        target: Target,
        method: str,
        obs: Observations,
        config: ProbeConfig,
        scrubber: Scrubber,
        clock: float,
    ) -> None:
        parts = urlsplit(target.url)
        self.host = (parts.hostname or "").lower()
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.method = method
        self.config = config
        self.budgets = config.budgets
        self.scrubber = scrubber
        self.clock = clock
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.pages: dict[tuple[str, str | None, Split, str], asyncio.Task[PageResult]] = {}
        self.system = [
            a for q in obs.queries if q.classic and not q.redirect for a in q.addrs if ":" not in a
        ]
        self.encrypted = [
            a
            for q in obs.queries
            if q.engine in ("doh", "dot") and not q.redirect
            for a in q.addrs
            if ":" not in a
        ]
        self.control = [a for a in obs.control.dns_addrs if ":" not in a]
        trusted = list(dict.fromkeys([*self.control, *self.encrypted]))
        self.real = trusted[0] if trusted else (self.system[0] if self.system else None)
        self.outside = [a for a in trusted if a not in self.system]

    # -- one attempt -------------------------------------------------------------------
    def _step(self, technique: str, **fields: Any) -> dict[str, Any]:
        return {"technique": technique, "host": self.host, "not_tried": None, **fields}

    def _not_tried(self, technique: str, reason: str, **fields: Any) -> dict[str, Any]:
        return {**self._step(technique, **fields), "not_tried": reason}

    @staticmethod
    def _page_fields(page: PageResult) -> dict[str, Any]:
        fields = asdict(page)
        fields["t0"], fields["t"] = round(page.t0, 6), round(page.t, 6)
        return fields

    def page(
        self, ip: str, sni: str | None, split: Split = None, verify_name: str | None = None
    ) -> Awaitable[PageResult]:
        """The HTTPS GET of the target's page from ``ip``; one per distinct ClientHello."""
        key = (ip, sni, split, verify_name or self.host)
        if key not in self.pages:
            self.pages[key] = asyncio.ensure_future(self._get(ip, sni, split, verify_name))
        return asyncio.shield(self.pages[key])

    async def _get(
        self, ip: str, sni: str | None, split: Split, verify_name: str | None
    ) -> PageResult:
        async with self.gate:
            page = await https_get(
                ip,
                443,
                self.host,
                self.path,
                sni=sni,
                split=split,
                clock=self.clock,
                timeout=self.budgets.workaround_timeout,
                max_bytes=self.budgets.workaround_max_bytes,
                anchors=self.config.anchors,
                scrubber=self.scrubber,
                verify_name=verify_name,
            )
        return page

    async def _tls_variant(self, technique: str, sni: str | None, split: Split) -> dict:
        if self.real is None:
            return self._not_tried(technique, "no address of the host is known")
        page = await self.page(self.real, sni, split)
        return self._step(technique, **self._page_fields(page))

    # -- the techniques ----------------------------------------------------------------
    async def real_addresses(self) -> dict[str, Any]:
        if not self.outside:
            return self._not_tried(
                "real_addresses",
                "the system resolver already answered the control's and DoH's addresses",
            )
        page = await self.page(self.outside[0], self.host)
        return self._step("real_addresses", **self._page_fields(page))

    async def tls_over_tcp(self) -> dict[str, Any]:
        return await self._tls_variant("tls_over_tcp", self.host, None)

    async def no_sni(self) -> dict[str, Any]:
        return await self._tls_variant("no_sni", None, None)

    async def decoy_sni(self) -> dict[str, Any]:
        return await self._tls_variant("decoy_sni", DECOY_SNI, None)

    async def split_sni_tcp(self) -> dict[str, Any]:
        return await self._tls_variant("split_sni_tcp", self.host, "tcp")

    async def split_sni_record(self) -> dict[str, Any]:
        return await self._tls_variant("split_sni_record", self.host, "record")

    async def http3(self) -> dict[str, Any]:
        if self.real is None:
            return self._not_tried("http3", "no address of the host is known")
        async with self.gate:
            page = await workaround_h3.get(
                self.real,
                443,
                self.host,
                self.path,
                clock=self.clock,
                timeout=self.budgets.workaround_timeout,
                max_bytes=self.budgets.workaround_max_bytes,
                anchors=self.config.anchors,
                scrubber=self.scrubber,
            )
        return self._step("http3", **self._page_fields(page))

    async def plain_http(self) -> dict[str, Any]:
        if self.real is None:
            return self._not_tried("plain_http", "no address of the host is known")
        async with self.gate:
            exchange = await http.fetch_once(
                f"http://{self.host}{self.path}",
                self.real,
                clock=self.clock,
                budgets=self.budgets,
                anchors=self.config.anchors,
                scrubber=self.scrubber,
                max_body=self.budgets.workaround_max_bytes,
                timeout=self.budgets.workaround_timeout,
            )
        return self._step(
            "plain_http",
            address=exchange.address,
            server_name=None,
            t0=round(exchange.t0, 6),
            t=round(exchange.t, 6),
            failure=exchange.failure,
            status_code=exchange.status_code,
            title=exchange.title if exchange.status_code is not None else "",
            body_length=exchange.body_length,
            bytes_received=exchange.body_length,
            certificate_valid=None,
            negotiated_protocol="",
        )

    async def resolver(
        self, technique: str, resolve: Callable[[], Awaitable[probedns.DNSResult]]
    ) -> dict[str, Any]:
        """Resolve the host with one resolver, then fetch the page from its first answer."""
        async with self.gate:
            answer = await resolve()
        fields: dict[str, Any] = {
            "resolver": answer.resolver_address,
            "addresses": answer.addresses,
            "resolver_failure": answer.failure,
        }
        ipv4 = [a for a in answer.addresses if ":" not in a]
        if answer.failure or not ipv4:
            return self._step(technique, **fields, failure=answer.failure or "dns_no_answer")
        page = await self.page(ipv4[0], self.host)
        return self._step(technique, **fields, **self._page_fields(page))

    async def front(self, front: str) -> dict[str, Any]:
        """The platform's other host in the ClientHello, the blocked one in the Host header."""
        answer = await self._lookup(front)
        ipv4 = [a for a in answer.addresses if ":" not in a]
        if not ipv4:
            return self._step(
                f"front:{front}",
                front=front,
                resolver=answer.resolver_address,
                failure=answer.failure or "dns_no_answer",
            )
        if ipv4[0] in {*self.system, *self.control, *self.encrypted}:
            return self._not_tried(
                f"front:{front}", "on the blocked host's own addresses: no front", front=front
            )
        page = await self.page(ipv4[0], front, None, verify_name=front)
        return self._step(f"front:{front}", front=front, **self._page_fields(page))

    async def _lookup(self, name: str) -> probedns.DNSResult:
        """A name looked up by DoH when configured (the censor cannot edit it), else by the
        system resolver."""
        b = self.budgets
        async with self.gate:
            if self.config.doh_url:
                return await probedns.query_doh(
                    self.config.doh_url,
                    name,
                    "A",
                    clock=self.clock,
                    timeout=b.dns_timeout,
                    verify=self.config.anchors.ssl_context(),
                    scrubber=self.scrubber,
                )
            if self.config.system_resolver:
                return await probedns.query_udp(
                    self.config.system_resolver,
                    name,
                    "A",
                    clock=self.clock,
                    timeout=b.dns_timeout,
                    duplicate_window=0,
                    scrubber=self.scrubber,
                )
        result = probedns.DNSResult(name, "A", "none", "", 0.0)
        result.failure = failures.DNS_SERVER_MISBEHAVING
        return result

    async def ech(self) -> dict[str, Any]:
        """Not tried (no ECH here); says whether the host's HTTPS record offers it."""
        offered: bool | None = None
        if self.config.doh_url:
            async with self.gate:
                answer = await probedns.query_doh(
                    self.config.doh_url,
                    self.host,
                    "HTTPS",
                    clock=self.clock,
                    timeout=self.budgets.dns_timeout,
                    verify=self.config.anchors.ssl_context(),
                    scrubber=self.scrubber,
                )
            offered = ech_offered(answer.raw_response) if answer.failure is None else None
        return self._not_tried("ech", ECH_NOT_IN_PYTHON, ech_offered=offered)

    def other_port(self) -> dict[str, Any]:
        return self._not_tried("other_port", "no other port this platform serves HTTPS on is known")

    # -- all of them ---------------------------------------------------------------------
    def _served_here(self, address: str) -> bool:
        """Whether a default resolver's address may be asked: anywhere on the real internet;
        in a testbed only when its address plan knows the address (the testbed serves it
        there), as any other packet would leave the testbed."""
        return self.config.testbed is None or self.config.plan.lookup(address) is not None

    def _resolver_jobs(self) -> list[Awaitable[dict[str, Any]]]:
        b, cfg = self.budgets, self.config
        shipped = cfg.resolver_defaults or defaults.ProbeDefaults()
        doh_urls = list(dict.fromkeys([u for u in [cfg.doh_url, *shipped.doh_urls] if u]))
        udp = [cfg.udp_resolver] if cfg.udp_resolver else []
        for value in shipped.udp_resolvers:
            parsed = probedns.parse_hostport(value)
            if parsed not in udp and parsed != cfg.system_resolver and self._served_here(parsed[0]):
                udp.append(parsed)
        dot: dict[str, defaults.DoTResolver] = {}
        for known in shipped.dot_resolvers:
            if self._served_here(known.address):
                dot.setdefault(known.name, known)  # one step per name: its technique's key
        jobs: list[Awaitable[dict[str, Any]]] = []
        for url in doh_urls[:MAX_RESOLVERS]:
            name = urlsplit(url).hostname or url
            jobs.append(
                self.resolver(
                    f"doh:{name}",
                    lambda url=url: probedns.query_doh(
                        url,
                        self.host,
                        "A",
                        clock=self.clock,
                        timeout=b.dns_timeout,
                        verify=cfg.anchors.ssl_context(),
                        scrubber=self.scrubber,
                    ),
                )
            )
        for resolver in list(dot.values())[:MAX_RESOLVERS]:
            jobs.append(
                self.resolver(
                    f"dot:{resolver.name}",
                    lambda r=resolver: probedns.query_dot(
                        (r.address, r.port),
                        r.name,
                        self.host,
                        "A",
                        clock=self.clock,
                        timeout=b.dns_timeout,
                        verify=cfg.anchors.ssl_context(),
                        scrubber=self.scrubber,
                    ),
                )
            )
        for where in udp[:MAX_RESOLVERS]:
            jobs.append(
                self.resolver(
                    f"udp:{probedns.format_hostport(*where)}",
                    lambda where=where: probedns.query_udp(
                        where,
                        self.host,
                        "A",
                        clock=self.clock,
                        timeout=b.dns_timeout,
                        duplicate_window=0,  # a stub resolver takes the first answer
                        scrubber=self.scrubber,
                    ),
                )
            )
        return jobs

    async def run(self) -> list[dict[str, Any]]:
        jobs: list[Awaitable[dict[str, Any]]] = [
            self.real_addresses(),
            *self._resolver_jobs(),
            self.tls_over_tcp(),
            self.no_sni(),
            self.decoy_sni(),
            self.split_sni_tcp(),
            self.split_sni_record(),
            self.ech(),
            self.http3(),
            self.plain_http(),
            *(self.front(f) for f in platform_fronts(self.host)[:MAX_FRONTS]),
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        try:
            async with asyncio.timeout(self.budgets.workarounds_deadline):
                await asyncio.wait(tasks)
        except TimeoutError:
            pass
        steps = [self.other_port()]
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                steps.append(task.result())
            else:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for task in self.pages.values():
            task.cancel()
        steps.sort(key=lambda s: _ORDER.index(s["technique"].split(":")[0]))
        return steps


_ORDER = [
    "real_addresses",
    "doh",
    "dot",
    "udp",
    "tls_over_tcp",
    "no_sni",
    "decoy_sni",
    "split_sni_tcp",
    "split_sni_record",
    "ech",
    "http3",
    "plain_http",
    "other_port",
    "front",
]


def ech_offered(raw: bytes | None) -> bool | None:
    """Whether a DNS response's HTTPS (SVCB) records carry an ``ech`` parameter."""
    if not raw:
        return None
    try:
        message = dns.message.from_wire(raw)
    except Exception:
        return None
    for rrset in message.answer:
        if rrset.rdtype in (dns.rdatatype.HTTPS, dns.rdatatype.SVCB):
            for rdata in rrset:
                params = getattr(rdata, "params", {}) or {}
                if any(int(key) == ECH_PARAM_KEY for key in params):
                    return True
    return False


async def attach(
    measurement: dict[str, Any],
    target: Target,
    config: ProbeConfig,
    scrubber: Scrubber,
) -> None:
    """When ``measurement`` (assembled, not yet scrubbed) shows a block, try the ways around
    it and record them under ``test_keys.x_workarounds``; otherwise leave it as it is."""
    if not config.workarounds or urlsplit(target.url).scheme not in ("http", "https"):
        return
    method = blocked_method(measurement, config)
    if method is None:
        return
    clock = time.monotonic()
    attempts = Attempts(target, method, _observations(measurement), config, scrubber, clock)
    started = time.monotonic()
    steps = await attempts.run()
    tk = measurement["test_keys"]
    tk["x_workarounds"] = steps
    tk["x_workarounds_for"] = method
    tk["x_workarounds_runtime"] = round(time.monotonic() - started, 6)
