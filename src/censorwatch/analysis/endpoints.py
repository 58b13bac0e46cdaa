"""Which step of one endpoint broke, named in the verdict vocabulary (``dns.*``, ``tcp.*``, ...).

The tests other than web_connectivity say *that* an endpoint failed (a request's failure, a
probe flag); their steps say *where*: the endpoint's DNS lookups, its connects, its TLS
handshakes, in the order a connection makes them. The first step that failed throughout names
the method; when the steps do not show it, the failure string alone does, as far as it can
(a timeout or a reset says nothing about the step it hit: HTTP is assumed, the last one).
"""

from __future__ import annotations

from censorwatch.analysis.outcome import (
    CERT_FAILURES,
    LOCAL_FAILURES,
    NXDOMAIN_FAILURES,
    RESET_FAILURES,
    Outcome,
    is_timeout,
)
from censorwatch.observations.builder import Observations, TcpObs

#: Failure words that mean the probe's own network had no route (no IPv6, no network).
_LOCAL_WORDS = ("no route to host", "network is unreachable", "host_unreachable")


def is_local_failure(failure: str | None) -> bool:
    """A failure of the probe's own network (e.g. no IPv6 route), not of the path to a server."""
    if not failure:
        return False
    return failure in LOCAL_FAILURES or any(w in failure for w in _LOCAL_WORDS)


def method_of_failure(failure: str | None) -> str | None:
    """The method a failure string names by itself, None when it names none."""
    if not failure or is_local_failure(failure):
        return None
    if failure in NXDOMAIN_FAILURES:
        return "dns.nxdomain"
    if failure.startswith("dns_"):
        return "dns.failure"
    if failure == "connection_refused":
        return "tcp.reset"
    if failure in CERT_FAILURES:
        return "tls.mitm"
    if failure.startswith("ssl_"):
        return "tls.reset"
    if failure in RESET_FAILURES:
        return "http.reset"
    if is_timeout(failure):
        return "http.timeout"
    return None


def tcp_method(failures: list[str]) -> str | None:
    """The method of connects that all failed: a reset or refusal anywhere, else a timeout."""
    if any(f in RESET_FAILURES for f in failures):
        return "tcp.reset"
    if any(is_timeout(f) for f in failures):
        return "tcp.timeout"
    return None


def tls_method(failure: str) -> str | None:
    if failure in CERT_FAILURES:
        return "tls.mitm"
    if is_timeout(failure):
        return "tls.timeout"
    if failure in RESET_FAILURES or failure.startswith("ssl_"):
        return "tls.reset"
    return None


def endpoint_method(
    steps: Observations, host: str, failure: str | None = None
) -> tuple[str | None, list[str]]:
    """The method and the evidence for ``host`` (a name or an address) that failed.

    ``failure`` is what the test reported for it (a request's failure); it decides only when
    the steps do not show which one failed.
    """
    queries = [q for q in steps.queries if q.hostname == host]
    if queries and not any(q.addrs for q in queries):
        failed = next((q for q in queries if q.failure), None)
        if failed is not None and not is_local_failure(failed.failure):
            method = "dns.nxdomain" if failed.failure in NXDOMAIN_FAILURES else "dns.failure"
            return method, [f"dns {host}: {failed.failure}"]
    addrs = {a for q in queries for a in q.addrs} or {host}
    conns = [t for t in steps.tcp if t.ip in addrs and not t.sni_probe]
    if conns and all(t.failure for t in conns):
        method = tcp_method([t.failure or "" for t in conns])
        if method is not None:
            return method, [_connect_evidence(conns[0])]
    hands = [h for h in steps.tls if h.server_name == host or (not h.server_name and h.ip in addrs)]
    if hands and all(h.failure for h in hands):
        h = hands[0]
        method = tls_method(h.failure or "")
        if method is not None:
            where = f"{h.ip}:{h.port} " if h.ip else ""
            return method, [f"tls_handshake {where}sni={host}: {h.failure}"]
    method = method_of_failure(failure)
    return method, [f"{host}: {failure}"] if failure else []


def _connect_evidence(t: TcpObs) -> str:
    return f"tcp_connect {t.ip}:{t.port}: {t.failure}"


def connects_method(
    steps: Observations, *, all_failed: bool = True
) -> tuple[str | None, list[str]]:
    """The method of a measurement's failed connects: only when they all failed, unless
    ``all_failed`` is False (a score over many endpoints, where most failing is enough)."""
    conns = [t for t in steps.tcp if not t.sni_probe]
    failed = [t for t in conns if t.failure]
    if not failed or (all_failed and len(failed) < len(conns)):
        return None, []
    return tcp_method([t.failure or "" for t in failed]), [_connect_evidence(failed[0])]


def blocked(method: str | None, confidence: float, *evidence: str) -> Outcome:
    """A blocked outcome; ``method`` None when no step of the vocabulary names what failed
    (an obfs4 or Psiphon handshake): the evidence still says what did."""
    if method:
        return Outcome().blocked(method, confidence, *evidence)
    return Outcome().done("blocked", confidence, *evidence)
