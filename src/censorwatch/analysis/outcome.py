"""The working verdict of one analysis, and the failure vocabulary its rules read.

Every layer module writes into one ``Outcome``: ``blocked(method, ...)`` or
``done(verdict, ...)`` with the evidence lines that back it; ``core`` turns it into the stable
``model.Verdict`` record.
"""

from __future__ import annotations

import msgspec

NXDOMAIN_FAILURES = frozenset({"dns_nxdomain_error", "android_dns_cache_no_data"})
NO_ANSWER_FAILURES = frozenset({"dns_no_answer", "dns_no_answer_error"})
RESET_FAILURES = frozenset(
    {"connection_reset", "connection_refused", "eof_error", "connection_aborted"}
)
TIMEOUT_FAILURES = frozenset({"generic_timeout_error", "i/o timeout"})
CERT_FAILURES = frozenset(
    {"ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate"}
)
#: Failures that only the remote server causes: the network is not to blame.
SERVER_FAULTS = frozenset(
    {
        "http_invalid_redirect_location_host",
        "http_invalid_redirect_url",
        "stopped_after_10_redirects",
        "unknown_failure: stopped after too many redirects",
        "http_request_failed",
    }
)
#: Failures that say the probe's own network is broken, not a particular target.
LOCAL_FAILURES = frozenset({"network_unreachable", "network_down", "interrupted"})


def is_timeout(failure: str) -> bool:
    """A timeout, in OONI's spelling or any probe's ("... timeout ...")."""
    return failure in TIMEOUT_FAILURES or "timeout" in failure


def failure_kind(failure: str) -> str:
    """What a failure says happened: "certificate", "timeout", "reset", else the failure itself.
    Two steps failed "the same way" when their kinds agree (an EOF and a RST are both resets)."""
    if failure in CERT_FAILURES:
        return "certificate"
    if is_timeout(failure):
        return "timeout"
    if failure in RESET_FAILURES or failure == "ssl_failed_handshake":
        return "reset"
    return failure


def no_layers() -> dict[str, str | None]:
    return {"dns": None, "tcp": None, "tls": None, "http": None}


def fmt(failure: str | None) -> str:
    """A failure for an evidence line: its OONI string, or "ok"."""
    return failure or "ok"


class Outcome(msgspec.Struct, gc=False):
    """What the rules decided so far: verdict, method, confidence, evidence, layer states."""

    verdict: str = "unknown"
    method: str | None = None
    confidence: float = 0.0
    fingerprint: str | None = None
    evidence: list[str] = msgspec.field(default_factory=list)
    layers: dict[str, str | None] = msgspec.field(default_factory=no_layers)

    def blocked(self, method: str, confidence: float, *evidence: str) -> Outcome:
        self.verdict, self.method, self.confidence = "blocked", method, confidence
        self.evidence.extend(evidence)
        layer = method.split(".", 1)[0]
        if layer == "throttled":
            layer = "http"
        if layer in self.layers:
            self.layers[layer] = "blocked"
        return self

    def done(self, verdict: str, confidence: float, *evidence: str) -> Outcome:
        self.verdict, self.method, self.confidence = verdict, None, confidence
        self.evidence.extend(evidence)
        return self
