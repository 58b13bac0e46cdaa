"""Circumvention tools (tor, psiphon): can the tool reach its network from here?

The blocked/ok decision is OONI's fastpath rule for each test (ooni/backend
``fastpath/core.py``): tor is blocked when more than half of the targets that ran failed;
psiphon when the test reports a failure. A run OONI counts as failed is ``unknown``. The method
comes from the failing targets' own steps; an obfs4 or Psiphon handshake is not a step of the
verdict vocabulary, so such a failure leaves the method empty. docs/verdicts.md, "Other tests".
"""

from __future__ import annotations

from collections import Counter

from censorwatch.analysis import confidence as C
from censorwatch.analysis.endpoints import (
    blocked,
    connects_method,
    endpoint_method,
    method_of_failure,
    tls_method,
)
from censorwatch.analysis.outcome import Outcome
from censorwatch.observations.nettests import NettestObs, TorTargetObs


def _unknown(*evidence: str) -> Outcome:
    return Outcome().done("unknown", C.NONE, *evidence)


def _target_label(t: TorTargetObs) -> str:
    return f"{t.protocol or 'target'} {t.address or t.target_id}"


def _target_method(t: TorTargetObs) -> str | None:
    """Where one tor target failed: its connect, its TLS handshake (OR ports), or its
    directory request (dir ports); None for a handshake the vocabulary has no name for."""
    method, _ = connects_method(t.steps)
    if method is not None:
        return method
    failed_tls = [h for h in t.steps.tls if h.failure]
    if failed_tls:
        return tls_method(failed_tls[0].failure or "")
    failed_http = [h for h in t.steps.http if h.failure]
    if failed_http:
        return endpoint_method(t.steps, failed_http[0].host, failed_http[0].failure)[0]
    if t.protocol in ("or_port", "or_port_dirauth", "dir_port"):
        return method_of_failure(t.failure)
    return None


def tor(obs: NettestObs) -> Outcome:
    """Blocked when more than half of the targets that ran failed (OONI's score is the failed
    share; targets that did not run are not counted)."""
    targets = obs.tor_targets
    if targets is None:
        return _unknown(obs.tor_problem or "no tor targets")
    malformed = [t for t in targets if t.state == "malformed"]
    if malformed:
        return _unknown(f"tor target {malformed[0].target_id}: no usable failure field")
    ok = [t for t in targets if t.state == "ok"]
    failed = [t for t in targets if t.state == "failed"]
    ran = len(ok) + len(failed)
    if not ran:
        return _unknown("no tor target ran")
    evidence = [f"tor: {len(ok)} of {ran} targets reachable"]
    evidence += [f"{_target_label(t)}: {t.failure}" for t in failed[:5]]
    if len(failed) / ran <= 0.5:
        confidence = C.NETTEST_OK_PARTIAL if failed else C.NETTEST_OK
        return Outcome().done("ok", confidence, *evidence)
    methods = Counter(_target_method(t) for t in failed)
    method = max(methods, key=lambda m: (methods[m], m is not None))
    confidence = C.TOR_ALL_FAILED if not ok else C.TOR_MOST_FAILED
    return blocked(method, confidence, *evidence)


def psiphon(obs: NettestObs) -> Outcome:
    """Blocked when the test reports a failure (bootstrapping the tunnel, or using it); ok
    when it bootstrapped; a run without a resolver_ip or without a bootstrap time is failed."""
    flags = obs.flags
    failure = flags.get("failure")
    bootstrap_time = flags.get("bootstrap_time", 0)
    if not obs.run.has_resolver_ip:
        return _unknown("the measurement has no resolver_ip (OONI counts it as a failed run)")
    if failure is None:
        if bootstrap_time == 0:
            return _unknown("no failure and no bootstrap time: an invalid run")
        return Outcome().done("ok", C.NETTEST_OK, f"psiphon bootstrapped in {bootstrap_time} s")
    if bootstrap_time == 0:
        return blocked(None, C.PSIPHON_BOOTSTRAP_FAILED, f"psiphon bootstrap failed: {failure}")
    return blocked(
        None,
        C.PSIPHON_USE_FAILED,
        f"psiphon bootstrapped in {bootstrap_time} s, then failed: {failure}",
    )
