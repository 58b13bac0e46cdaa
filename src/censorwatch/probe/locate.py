"""Where the censor sits (``--locate``): the offending packet sent with rising TTLs.

After a URL is measured, the probe sends the packet that carries the blocked name — the DNS
query (to the public UDP resolver), the TLS ClientHello with the SNI, or the HTTP request with
the Host — with IP TTL 1, 2, 3 …, each time beside a control packet that differs only in the
name (``CONTROL_NAME``, never censored). Up to the censor's hop both die at a router, which
answers time-exceeded; from the censor's hop on, the trigger gets a forged answer, a reset or
silence while the control still hears the router. ``analysis.locate`` reads the per-TTL
record and names that hop, its address, its AS and where it is (own ISP, national gateway,
beyond the border). Recorded under ``test_keys.x_locate`` (docs/probe.md).

Which trigger: the one of the blocked layer (``dns.forged`` → DNS, ``tls.*`` → TLS,
``http.*`` → HTTP); for a URL not found blocked, DNS and the URL's own scheme's. Bounded
(``Budgets.locate_*``): at most ``locate_max_hops`` TTLs, ``locate_probes_per_hop`` triggers
(and as many controls) per TTL, ``locate_rate`` probes per second, a deadline and a byte cap
per localization; it stops once the control reaches the destination or two TTLs in a row
confirm the censor's hop. Off unless ``--locate``: it sends the offending packet a few more
times, to the same destination the measurement already contacted.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from censorwatch.analysis import locate as decision
from censorwatch.observations.builder import Observations, observe
from censorwatch.observations.schema import LocateRun, MeasurementView, TestKeysView, to_typed
from censorwatch.probe import locate_probes as probes
from censorwatch.probe.config import ProbeConfig
from censorwatch.probe.locate_probes import Heard
from censorwatch.targets import Target

#: The innocuous name of every control probe (RFC 2606: reserved, never anyone's block).
CONTROL_NAME = "example.com"
#: Methods whose block sits in the system resolver itself: a TTL cannot place a censor that
#: is the end host of the query.
RESOLVER_METHODS = frozenset({"dns.nxdomain", "dns.bogon", "dns.failure"})


@dataclass(frozen=True)
class Trigger:
    """What one localization sends: the kind, to where, and the payload for a name."""

    kind: str  # dns | tls | http
    host: str
    destination: str
    port: int
    path: str = "/"

    @property
    def over_tcp(self) -> bool:
        return self.kind != "dns"


def unavailable() -> str | None:
    """Why ``--locate`` cannot run on this system (None when it can)."""
    return probes.unavailable()


def _observations(measurement: dict[str, Any]) -> Observations:
    typed, _ = to_typed(measurement, MeasurementView)
    tk = typed.test_keys if isinstance(typed.test_keys, TestKeysView) else TestKeysView()
    return observe(tk)


def _ipv4(address: str) -> bool:
    return address.count(".") == 3 and ":" not in address


def server_address(obs: Observations) -> str | None:
    """The target's own address: the control's answer first, else one the probe reached."""
    for address in obs.control.dns_addrs:
        if _ipv4(address):
            return address
    for tcp in obs.tcp:
        if tcp.failure is None and _ipv4(tcp.ip):
            return tcp.ip
    return next((a for q in obs.queries for a in q.addrs if _ipv4(a)), None)


def triggers(
    measurement: dict[str, Any], target: Target, config: ProbeConfig, method: str | None
) -> list[Trigger | str]:
    """What to send, or for each kind that cannot be sent, why (a string)."""
    parts = urlsplit(target.url)
    host = (parts.hostname or "").lower()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not host or _ipv4(host) or ":" in host:
        return ["the URL names an address, not a host: no name to trigger on"]
    layer = (method or "").split(".", 1)[0]
    if method in RESOLVER_METHODS:
        return [
            f"the block ({method}) is the system resolver's own answer: a TTL cannot place a "
            "censor that is the end host of the query"
        ]
    if method is not None and layer not in decision.TRIGGER_FOR_LAYER:
        return [f"the block ({method}) acts on addresses or traffic, not on a name in a packet"]
    kinds = (
        [decision.TRIGGER_FOR_LAYER[layer]]
        if method is not None
        else ["dns", "http" if parts.scheme == "http" else "tls"]
    )
    out: list[Trigger | str] = []
    obs = _observations(measurement)
    for kind in kinds:
        if kind == "dns":
            resolver = config.udp_resolver
            if resolver is None or not _ipv4(resolver[0]):
                out.append("dns: no public IPv4 UDP resolver is configured to send queries to")
            else:
                out.append(Trigger("dns", host, resolver[0], resolver[1]))
            continue
        address = server_address(obs)
        if address is None:
            out.append(f"{kind}: no IPv4 address of {host} is known to send the trigger to")
        else:
            out.append(Trigger(kind, host, address, 443 if kind == "tls" else 80, path))
    return out


class Pacer:
    """At most ``rate`` probes started per second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / max(rate, 0.1)
        self.next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        start = max(now, self.next)
        self.next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


def _detail(kind: str, data: bytes) -> str:
    """A short, readable account of what came back (a forged DNS answer, a status line)."""
    if kind == "dns":
        try:
            import dns.message
            import dns.rcode

            message = dns.message.from_wire(data)
            addresses = [r.to_text() for rrset in message.answer for r in rrset]
            return " ".join([dns.rcode.to_text(message.rcode()), *addresses])[:120]
        except Exception:
            return f"{len(data)} bytes, not a DNS message"
    first = data.split(b"\r\n", 1)[0][:80]
    if first.startswith(b"HTTP/"):
        return first.decode("latin-1")
    if data[:1] == b"\x16":
        return f"a TLS handshake record ({len(data)} bytes)"
    return f"{len(data)} bytes"


class Localization:
    """One trigger's TTL sweep, and its record."""

    def __init__(self, trigger: Trigger, config: ProbeConfig, method: str | None) -> None:
        self.trigger = trigger
        self.config = config
        self.budgets = config.budgets
        self.method = method
        self.pacer = Pacer(self.budgets.locate_rate)
        self.packets = 0
        self.bytes = 0

    def _payload(self, name: str) -> tuple[bytes, bytes | None]:
        """The packet for ``name`` and, for DNS, the id an answer must carry."""
        t = self.trigger
        if t.kind == "dns":
            query_id = random.randrange(1, 65536)
            return probes.dns_query(name, query_id), query_id.to_bytes(2, "big")
        if t.kind == "tls":
            return probes.client_hello(name), None
        return probes.http_request(name, t.path), None

    async def _send(self, name: str | None, ttl: int) -> Heard:
        await self.pacer.wait()
        b, t = self.budgets, self.trigger
        self.packets += 1
        if name is None:
            call: Callable[[], Heard] = lambda: probes.path_probe(  # noqa: E731
                t.destination, ttl, wait=b.locate_wait
            )
        else:
            payload, accept = self._payload(name)
            if t.over_tcp:
                call = lambda: probes.tcp_probe(  # noqa: E731
                    t.destination,
                    t.port,
                    payload,
                    ttl,
                    wait=b.locate_wait,
                    connect_timeout=b.connect_timeout,
                    max_read=b.locate_max_read,
                )
            else:
                call = lambda: probes.udp_probe(  # noqa: E731
                    t.destination,
                    t.port,
                    payload,
                    ttl,
                    wait=b.locate_wait,
                    max_read=b.locate_max_read,
                    accept=accept,
                )
        heard = await asyncio.to_thread(call)
        self.bytes += heard.sent + heard.received
        return heard

    async def _hop(self, ttl: int) -> dict[str, Any]:
        k = max(1, self.budgets.locate_probes_per_hop)
        names: list[str | None] = [n for _ in range(k) for n in (self.trigger.host, CONTROL_NAME)]
        if self.trigger.over_tcp:
            names.append(None)  # the path probe: who answers at this TTL
        heard = await asyncio.gather(*(self._send(n, ttl) for n in names))
        trigger = [h for n, h in zip(names, heard, strict=True) if n == self.trigger.host]
        control = [h for n, h in zip(names, heard, strict=True) if n == CONTROL_NAME]
        path = [h for n, h in zip(names, heard, strict=True) if n is None]
        sources = [h.icmp_source for h in (*control, *path, *trigger) if h.icmp_source]
        address = sources[0] if sources else None
        hop: dict[str, Any] = {
            "ttl": ttl,
            "address": address,
            "asn": None,
            "as_org_name": None,
            "cc": None,
            "trigger": [h.outcome for h in trigger],
            "control": [h.outcome for h in control],
        }
        if path:
            hop["path"] = path[0].outcome
        info = self.config.plan.lookup(address) if address else None
        if info is not None:
            hop.update(asn=info.asn, as_org_name=info.as_org_name or None, cc=info.cc or None)
        answered = next((h for h in trigger if h.data), None)
        if answered is not None:
            hop["trigger_detail"] = _detail(self.trigger.kind, answered.data)
        failed = next((h.failure for h in (*trigger, *control) if h.failure), None)
        if failed:
            hop["failure"] = failed
        return hop

    async def run(self) -> dict[str, Any]:
        t, b = self.trigger, self.budgets
        record: dict[str, Any] = {
            "trigger": t.kind,
            "host": t.host,
            "control_name": CONTROL_NAME,
            "destination": t.destination,
            "port": t.port,
            "for_method": self.method,
            "max_hops": b.locate_max_hops,
            "probes_per_hop": b.locate_probes_per_hop,
            "not_run": None,
            "hops": [],
            "stopped": "max_hops",
        }
        started = time.monotonic()
        try:
            async with asyncio.timeout(b.locate_deadline):
                for ttl in range(1, b.locate_max_hops + 1):
                    record["hops"].append(await self._hop(ttl))
                    located = self._decide(record)
                    if located.destination_hop is not None:
                        record["stopped"] = "destination"
                        break
                    if located.confirmed:
                        record["stopped"] = "confirmed"
                        break
                    if self.bytes >= b.locate_max_bytes:
                        record["stopped"] = "bytes"
                        break
        except TimeoutError:
            record["stopped"] = "deadline"
        record["packets"] = self.packets
        record["bytes"] = self.bytes
        record["runtime"] = round(time.monotonic() - started, 6)
        record["result"] = self._decide(record).record()
        return record

    def _decide(self, record: dict[str, Any]) -> decision.Located:
        run = msgspec.convert(record, LocateRun, strict=False)
        return decision.decide(run, self.config.probe_asn, self.config.probe_cc)


def _not_run(reason: str, method: str | None) -> dict[str, Any]:
    kind = reason.split(":", 1)[0] if reason[:4] in ("dns:", "tls:", "http") else None
    return {"trigger": kind, "for_method": method, "not_run": reason, "hops": []}


async def attach(measurement: dict[str, Any], target: Target, config: ProbeConfig) -> None:
    """With ``--locate``, localize the censor of this URL (blocked or not) and record each
    localization under ``test_keys.x_locate``; otherwise leave the measurement as it is."""
    if not config.locate_censor or urlsplit(target.url).scheme not in ("http", "https"):
        return
    from censorwatch.probe.workarounds import blocked_method

    method = blocked_method(measurement, config)
    reason = unavailable()
    runs: list[dict[str, Any]] = []
    if reason is not None:
        runs.append(_not_run(reason, method))
    else:
        for item in triggers(measurement, target, config, method):
            if isinstance(item, str):
                runs.append(_not_run(item, method))
            else:
                runs.append(await Localization(item, config, method).run())
    measurement["test_keys"]["x_locate"] = runs
