"""dnscheck: does an encrypted resolver (DoT or DoH) work from here?

OONI's fastpath does not score dnscheck (it has no rule for it, so every dnscheck is flagged
there as not scored); these rules are censorwatch's, read from the test's specification
(ooni/spec ts-028): the system resolver looks up the resolver's own name (the bootstrap), then
the probe queries the resolver at each address it got (the lookups). A lookup that fails for
want of a route on the probe's own network (no IPv6) says nothing about the resolver.
docs/verdicts.md, "Other tests".
"""

from __future__ import annotations

from censorwatch.analysis import confidence as C
from censorwatch.analysis.endpoints import (
    blocked,
    is_local_failure,
    method_of_failure,
    tcp_method,
    tls_method,
)
from censorwatch.analysis.outcome import NXDOMAIN_FAILURES, Outcome
from censorwatch.observations.nettests import LookupObs, NettestObs


def _unknown(*evidence: str) -> Outcome:
    return Outcome().done("unknown", C.NONE, *evidence)


def _lookup_method(lk: LookupObs) -> str | None:
    """The method of one failed lookup, by the operation that failed."""
    failure = lk.failure or ""
    if lk.failed_operation == "connect":
        return tcp_method([failure])
    if lk.failed_operation == "tls_handshake":
        return tls_method(failure)
    return method_of_failure(failure)


def dnscheck(obs: NettestObs) -> Outcome:
    """ok when any lookup worked; blocked when the resolver's name does not exist for the
    system resolver, or every lookup the network could route failed; unknown otherwise."""
    bootstrap_failure = obs.flags.get("bootstrap_failure")
    if bootstrap_failure:
        evidence = (
            f"bootstrap: the system resolver failed for the resolver's name: {bootstrap_failure}"
        )
        if bootstrap_failure in NXDOMAIN_FAILURES:
            return blocked("dns.nxdomain", C.DNSCHECK_BOOTSTRAP_NXDOMAIN, evidence)
        return _unknown(evidence, "no other vantage says whether the name resolves")
    lookups = obs.lookups
    if not lookups:
        return _unknown("no lookup was made")
    local = [lk for lk in lookups if lk.failure and is_local_failure(lk.failure)]
    usable = [lk for lk in lookups if lk not in local]
    worked = [lk for lk in usable if lk.failure is None]
    evidence = [f"{lk.endpoint}: {lk.failure or 'ok'}" for lk in usable]
    if local:
        evidence.append(
            f"{len(local)} lookup(s) had no route on the probe's own network: not counted"
        )
    if worked:
        confidence = C.NETTEST_OK_PARTIAL if len(worked) < len(usable) else C.NETTEST_OK
        return Outcome().done("ok", confidence, *evidence)
    if not usable:
        return _unknown(*evidence)
    methods = [_lookup_method(lk) for lk in usable]
    method = next((m for m in methods if m), None)
    return blocked(method, C.DNSCHECK_LOOKUPS_FAILED, *evidence)
