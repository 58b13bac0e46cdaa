"""The circumvention summary: each way around a block the probe tried, judged.

The probe records its attempts as steps (``test_keys.x_workarounds``, docs/probe.md); this
module says, per technique, whether it **works** (the real page arrived), **fails** (and
why), or was **not tried** (and why). It is pure, like the rest of the analysis, and never
changes the verdict: the verdict is about what the network does to the ordinary attempt, the
summary about what else a user there could do.

A page counts as the real one when it came with a status below 400, over a certificate valid
for the name the client asked for (except for the attempts that leave the name out on purpose,
whose certificate cannot be valid for it), and — for a 2xx page when the control fetched the
URL — with the control's title. A block page has a title of its own, so it fails.
"""

from __future__ import annotations

from typing import Literal

from censorwatch.observations.schema import TestKeys, WorkaroundStep

Status = Literal["works", "fails", "not tried"]
WORKS: Status = "works"
FAILS: Status = "fails"
NOT_TRIED: Status = "not tried"

#: Techniques that do not send the real name, so no certificate for it is expected.
WITHOUT_THE_NAME = frozenset({"no_sni", "decoy_sni", "plain_http"})

#: What each technique is, in words (the explorer and the report use them).
LABELS = {
    "real_addresses": "the real addresses (from the control or DoH)",
    "doh": "DNS over HTTPS",
    "dot": "DNS over TLS",
    "udp": "another UDP resolver",
    "tls_over_tcp": "TLS over TCP",
    "no_sni": "TLS without SNI",
    "decoy_sni": "TLS with a decoy SNI",
    "split_sni_tcp": "SNI split across TCP segments",
    "split_sni_record": "SNI split across TLS records",
    "ech": "Encrypted ClientHello",
    "http3": "HTTP/3 (QUIC)",
    "plain_http": "plain HTTP",
    "other_port": "another port",
    "front": "a front (the platform's other host in the SNI)",
}


def family(technique: str) -> str:
    """``doh:dns.google`` -> ``doh``."""
    return technique.split(":", 1)[0]


def label(technique: str) -> str:
    kind, _, detail = technique.partition(":")
    words = LABELS.get(kind, kind)
    return f"{words} ({detail})" if detail else words


def judge(step: WorkaroundStep, control_title: str = "") -> tuple[Status, str]:
    """One step's status and the reason, in words."""
    if step.not_tried:
        return NOT_TRIED, step.not_tried
    where = f" at {step.address}" if step.address else ""
    if step.resolver_failure:
        return FAILS, f"the resolver failed: {step.resolver_failure}"
    if step.failure and step.status_code is None:
        return FAILS, f"{step.failure}{where}"
    if step.status_code is None:
        return FAILS, f"no response{where}"
    if step.status_code >= 400:
        return FAILS, f"HTTP {step.status_code}{where}"
    name = step.front or ""
    if family(step.technique or "") not in WITHOUT_THE_NAME and step.certificate_valid is False:
        return FAILS, f"certificate not valid for {name or 'the name'}{where}: an interception"
    title = step.title or ""
    if 200 <= step.status_code < 300 and control_title and title != control_title:
        return FAILS, f"a different page{where}: {title or 'no title'!r}, not {control_title!r}"
    reason = f"HTTP {step.status_code}{where}" + (f" {title!r}" if title else "")
    if family(step.technique or "") in ("no_sni", "decoy_sni") and not step.certificate_valid:
        reason += "; the certificate served is not valid for the name (a client must accept it)"
    return WORKS, reason


def summarize(
    steps: list[WorkaroundStep | None] | None, control_title: str = ""
) -> dict[str, dict[str, str]] | None:
    """Technique -> ``{"status", "reason"}`` in the probe's order; None when nothing was
    tried (the measurement showed no block, or came from a probe that does not try)."""
    if not steps:
        return None
    out: dict[str, dict[str, str]] = {}
    for step in steps:
        if step is None or not step.technique:
            continue
        status, reason = judge(step, control_title)
        out[step.technique] = {"status": status, "reason": reason}
    return out or None


def of_test_keys(tk: TestKeys | None) -> dict[str, dict[str, str]] | None:
    """The summary of a measurement's typed ``test_keys``."""
    if tk is None or not tk.x_workarounds:
        return None
    control = tk.control
    http = control.http_request if control is not None else None
    title = (http.title or "") if http is not None and not http.failure else ""
    return summarize(tk.x_workarounds, title)


def headline(summary: dict[str, dict[str, str]] | None) -> str:
    """One line: ``works: …; fails: …; not tried: …`` (techniques by their family's words,
    each family once)."""
    if not summary:
        return ""
    by_status: dict[str, list[str]] = {WORKS: [], FAILS: [], NOT_TRIED: []}
    for technique, result in summary.items():
        words = LABELS.get(family(technique), family(technique))
        bucket = by_status.setdefault(result["status"], [])
        if words not in bucket:
            bucket.append(words)
    # A family that works somewhere is not also listed as failing.
    by_status[FAILS] = [w for w in by_status[FAILS] if w not in by_status[WORKS]]
    parts = [f"{status}: {', '.join(words)}" for status, words in by_status.items() if words]
    return "; ".join(parts)
