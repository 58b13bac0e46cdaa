"""One measurement under analysis: its observations, the verdict so far, and shared look-ups.

The layer modules (``dns``, ``transport``, ``http``, ``throughput``) are functions of this
context; it holds what they share between hops (addresses proven genuine, the DNS
inconsistency note, the TLS context of a plain-HTTP hop) and the look-ups several of them use.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.analysis.outcome import Outcome
from censorwatch.netinfo import AddressPlan
from censorwatch.observations.builder import (
    PLAIN_DNS_ENGINES,
    SYSTEM_ENGINES,
    ControlObs,
    DnsObs,
    HttpObs,
    Observations,
    TcpObs,
    TlsObs,
    url_parts,
)

ENCRYPTED_ENGINES = ("doh", "dot")
_NOTHING: frozenset[str] = frozenset()


class WebAnalysis:
    """One pass over one measurement's observations."""

    __slots__ = (
        "_by_host",
        "_primary",
        "_tcp_by_depth",
        "_tls_by_depth",
        "_verified_by_name",
        "cc",
        "ctrl",
        "depth_tagged",
        "dns_inconsistent",
        "fps",
        "host",
        "is_bogon",
        "known_false_positive",
        "obs",
        "out",
        "plan",
        "port",
        "same_failure_addrs",
        "scheme",
        "tls_context",
        "validated",
    )

    def __init__(
        self,
        obs: Observations,
        url: str,
        cc: str | None,
        fingerprints: Fingerprints,
        plan: AddressPlan,
    ) -> None:
        self.obs = obs
        self.ctrl: ControlObs = obs.control
        self.cc = cc
        self.fps = fingerprints
        self.plan = plan
        self.out = Outcome()
        self.scheme, self.host, self.port = url_parts(url)
        self.is_bogon = bogon_checker(plan)
        self._by_host: dict[str, list[DnsObs]] | None = None
        self._primary: dict[tuple[str, int | None], list[DnsObs]] = {}
        self._tcp_by_depth: dict[int, list[TcpObs]] | None = None
        self._tls_by_depth: dict[int, list[TlsObs]] | None = None
        self._verified_by_name: dict[str, set[str]] | None = None
        # OONI 0.5 tags every step with its redirect depth; other probes tag only requests.
        self.depth_tagged = obs.depth_tagged
        self.validated: set[str] = set()  # addresses proven genuine by a valid TLS handshake
        self.dns_inconsistent: list[str] = []
        self.tls_context: list[str] | None = None  # a plain-HTTP hop's failed handshake
        self.known_false_positive: str | None = None  # a known false-positive page on the way
        # The control's addresses whose handshakes failed at the probe just as those to the
        # probe's own (different-AS) answer did: the DNS step leaves the verdict to TLS.
        self.same_failure_addrs: set[str] = set()

    def queries_for(self, host: str) -> list[DnsObs]:
        by_host = self._by_host
        if by_host is None:
            by_host = self._by_host = {}
            for q in self.obs.queries:
                by_host.setdefault(q.hostname, []).append(q)
        return by_host.get(host, [])

    def tcp_at(self, depth: int) -> list[TcpObs]:
        """The connects of one hop (all of them when steps carry no depth), in order."""
        if not self.depth_tagged:
            return self.obs.tcp
        if self._tcp_by_depth is None:
            self._tcp_by_depth = {}
            for t in self.obs.tcp:
                self._tcp_by_depth.setdefault(t.depth, []).append(t)
        return self._tcp_by_depth.get(depth, [])

    def tls_at(self, depth: int) -> list[TlsObs]:
        """The TLS handshakes of one hop (all of them when steps carry no depth), in order."""
        if not self.depth_tagged:
            return self.obs.tls
        if self._tls_by_depth is None:
            self._tls_by_depth = {}
            for t in self.obs.tls:
                self._tls_by_depth.setdefault(t.depth, []).append(t)
        return self._tls_by_depth.get(depth, [])

    def verified_addresses(self, name: str) -> frozenset[str] | set[str]:
        """Addresses whose certificate for ``name`` validated in the probe's own handshake (with
        the real SNI and verification on): proof that they serve the genuine site."""
        by_name = self._verified_by_name
        if by_name is None:
            by_name = self._verified_by_name = {}
            for t in self.obs.tls:
                if t.failure is None and not t.sni_probe and not t.no_tls_verify:
                    by_name.setdefault(t.server_name, set()).add(t.ip)
        return by_name.get(name, _NOTHING)

    def primary_queries(self, host: str, depth: int | None) -> list[DnsObs]:
        """The queries a browser's lookup would have made: the system resolver's."""
        key = (host, depth)
        cached = self._primary.get(key)
        if cached is None:
            cached = self._primary[key] = self._primary_queries(host, depth)
        return cached

    def _primary_queries(self, host: str, depth: int | None) -> list[DnsObs]:
        qs = self.queries_for(host)
        if depth is not None:
            qs = [q for q in qs if q.depth == depth] or qs
        chosen = [q for q in qs if q.classic]
        if chosen:
            return chosen
        chosen = [q for q in qs if q.engine in SYSTEM_ENGINES]
        if not chosen:
            chosen = [q for q in qs if q.engine in PLAIN_DNS_ENGINES]
        return chosen or [q for q in qs if q.engine not in ENCRYPTED_ENGINES]

    def probe_addrs(self, depth: int, host: str) -> set[str]:
        return {a for q in self.primary_queries(host, depth) for a in q.addrs}

    def reference_addrs(self, host: str) -> list[str]:
        """Answers from encrypted resolvers (DoH/DoT): a second opinion the censor can't edit."""
        return [
            a
            for q in self.queries_for(host)
            if q.engine in ENCRYPTED_ENGINES and q.failure is None
            for a in q.addrs
        ]

    def ctrl_tls_ok(self, ip: str, port: int, host: str) -> bool | None:
        """Did the control's handshake to this address (with this name) work; None: untested."""
        tls = self.ctrl.tls
        if not tls:
            return None  # (most controls tried no handshake: no keys to format)
        entry = tls.get(f"{ip}:{port}") or tls.get(f"[{ip}]:{port}")
        if entry is None:
            return None
        sni, failure = entry
        if sni and sni != host:
            return None
        return failure is None

    def asn(self, ip: str, hint: dict[str, int]) -> int | None:
        if ip in hint:
            return hint[ip]
        if ip in self.ctrl.asns:
            return self.ctrl.asns[ip]
        info = self.plan.lookup(ip)
        return info.asn if info else None

    def probe_network_works(self) -> bool:
        """Did anything reach the outside? Then a failure is about the target, not the probe."""
        if self.ctrl.available:
            return True
        if any(q.failure is None and q.addrs for q in self.obs.queries):
            return True
        return any(t.failure is None for t in self.obs.tcp)

    def final_response(self) -> HttpObs | None:
        return self.obs.http[-1] if self.obs.http else None

    def control_page_evidence(self) -> list[str]:
        """The control's view of the page, as one evidence line (none if it has no page)."""
        c = self.ctrl
        if not c.http_ok:
            return []
        title = f", title {c.http_title!r}" if c.http_title else ""
        return [f"control: http status {c.http_status}, {c.http_body_length} bytes{title}"]


# id(plan) -> (a weak reference to the plan, its memoising checker). Keyed by id rather than
# by a WeakKeyDictionary: the lookup happens once per measurement and must be cheap.
_BOGON_CHECKERS: dict[int, tuple[weakref.ref[AddressPlan], Callable[[str], bool]]] = {}


def bogon_checker(plan: AddressPlan) -> Callable[[str], bool]:
    """``plan.is_bogon`` with a per-plan memory (the same answers recur across measurements)."""
    entry = _BOGON_CHECKERS.get(id(plan))
    if entry is not None and entry[0]() is plan:
        return entry[1]
    plan_ref = weakref.ref(plan)
    cache: dict[str, bool] = {}

    def is_bogon(ip: str) -> bool:
        known = cache.get(ip)
        if known is None:
            current = plan_ref()
            known = current.is_bogon(ip) if current is not None else False
            if len(cache) < 65536:
                cache[ip] = known
        return known

    if len(_BOGON_CHECKERS) >= 64:
        for key, (ref, _) in list(_BOGON_CHECKERS.items()):
            if ref() is None:
                del _BOGON_CHECKERS[key]
    _BOGON_CHECKERS[id(plan)] = (plan_ref, is_bogon)
    return is_bogon
