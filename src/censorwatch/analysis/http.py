"""The HTTP step of one hop, and the final page once every hop went through.

A hop's response is checked for a censor's page (fingerprints first, then the page's own
words), then its failure is judged against the control. The final page is compared with the
control's; when nothing broke the verdict is ``ok``. docs/verdicts.md.
"""

from __future__ import annotations

from censorwatch.analysis import confidence as C
from censorwatch.analysis.blockpage import BLOCKPAGE_STATUSES, blockpage_reason
from censorwatch.analysis.context import WebAnalysis
from censorwatch.analysis.dns import lookup_failure_method
from censorwatch.analysis.outcome import (
    CERT_FAILURES,
    LOCAL_FAILURES,
    RESET_FAILURES,
    SERVER_FAULTS,
    TIMEOUT_FAILURES,
    Outcome,
    fmt,
)
from censorwatch.analysis.page import content_diff
from censorwatch.analysis.throughput import check_quic, check_throughput
from censorwatch.observations.builder import HttpObs
from censorwatch.observations.text import title_of


def check_http_hop(a: WebAnalysis, depth: int) -> bool:
    """A failed request at this hop, or a censor's redirect/blockpage in its response."""
    h = next((r for r in a.obs.http if r.depth == depth), None)
    if h is None:
        return False
    if h.scheme == "http" and (h.body or h.headers) and _censor_page(a, h):
        return True
    if h.failure is None:
        a.out.layers["http"] = "ok"
        return False
    return _judge_request_failure(a, h, h.failure)


def _censor_page(a: WebAnalysis, h: HttpObs) -> bool:
    """A plain-HTTP response that a fingerprint, or its own words, mark as a block page."""
    out = a.out
    match = a.fps.classify_normalized(h.body or "", h.headers, a.cc)
    if match.blockpage:
        out.fingerprint = match.name
        out.layers["http"] = "blocked"
        out.blocked(
            "http.blockpage",
            C.FINGERPRINT_MATCH,
            f"http {h.url}: status {h.status}, blockpage fingerprint {match.name}",
            *a.control_page_evidence(),
        )
        return True
    if match.blockpage is False:
        a.known_false_positive = match.name
    elif a.ctrl.http_ok and h.status in BLOCKPAGE_STATUSES:
        # No fingerprint knows the page: does it say in words that it is a block page?
        title = title_of(h.body or "")
        reason = blockpage_reason(h.body, h.status, title, a.ctrl.http_title)
        if reason:
            out.layers["http"] = "blocked"
            out.blocked(
                "http.blockpage",
                C.HTTP_BLOCKPAGE_WORDS,
                f"http {h.url}: status {h.status}, title {title!r}, reads as a block "
                f"page ({reason}); no known fingerprint",
                *a.control_page_evidence(),
            )
            return True
    return False


def _judge_request_failure(a: WebAnalysis, h: HttpObs, f: str) -> bool:
    out, ctrl = a.out, a.ctrl
    ev = [f"http_request {h.url}: {f}" + (f" after status {h.status}" if h.status else "")]
    if f in SERVER_FAULTS or f.startswith("unknown_failure: stopped after"):
        return _judge_server_fault(a, ev)
    if f.startswith("dns_") or f == "android_dns_cache_no_data":
        return _judge_redirect_lookup(a, ev, f)
    if ctrl.available and not ctrl.http_ok:
        out.layers["http"] = "down"
        out.done("down", C.HTTP_DOWN, *ev, f"control: http {fmt(ctrl.http_failure)}")
        return True
    if not ctrl.http_ok:
        out.done("unknown", C.NONE, *ev, "no control measurement to compare")
        return True
    ctrl_ev = a.control_page_evidence()
    ev.extend(a.tls_context or [])
    started = h.status > 0 or h.truncated or (h.body_length > 0)
    timed_out = f in TIMEOUT_FAILURES or "timeout" in f
    if started and timed_out:
        out.blocked(
            "throttled",
            C.HTTP_STALLED,
            *ev,
            "the response started but the body did not arrive in time",
            *ctrl_ev,
        )
    elif timed_out:
        out.blocked("http.timeout", C.HTTP_TIMEOUT, *ev, *ctrl_ev)
    elif f in RESET_FAILURES:
        out.blocked("http.reset", C.HTTP_RESET, *ev, *ctrl_ev)
    elif f in CERT_FAILURES or f.startswith("ssl_"):
        method = "tls.mitm" if f in CERT_FAILURES else "tls.reset"
        out.blocked(method, C.HTTP_TLS_FAILURE, *ev, *ctrl_ev)
    elif f in LOCAL_FAILURES:
        out.done("unknown", C.NONE, *ev, "the probe's own network failed")
    else:
        out.blocked("http.reset", C.HTTP_OTHER, *ev, *ctrl_ev)
    return True


def _judge_server_fault(a: WebAnalysis, ev: list[str]) -> bool:
    """A failure only the server causes (an unusable redirect, a loop): never blocked, and
    never ok either, since the page did not arrive. Down when the control failed too;
    unknown when it reached the page or there is no control (too little to call it down)."""
    out, ctrl = a.out, a.ctrl
    if ctrl.available and not ctrl.http_ok:
        out.layers["http"] = "down"
        out.done(
            "down",
            C.HTTP_SERVER_FAULT_DOWN,
            *ev,
            f"control: http {fmt(ctrl.http_failure)} (the site is broken for everyone)",
        )
        return True
    out.layers["http"] = "unknown"
    out.done(
        "unknown",
        C.NONE,
        *ev,
        "the site's own redirect is unusable: not interference, but the page did not arrive",
        *(a.control_page_evidence() or ["no control measurement to compare"]),
    )
    return True


def _judge_redirect_lookup(a: WebAnalysis, ev: list[str], f: str) -> bool:
    """The probe resolved a redirect's host inside the HTTP step and that failed."""
    out, ctrl = a.out, a.ctrl
    if ctrl.available and not ctrl.http_ok:
        out.layers["dns"] = "down"
        out.done("down", C.HTTP_DOWN, *ev, f"control: http {fmt(ctrl.http_failure)}")
        return True
    if not ctrl.http_ok:
        out.done("unknown", C.NONE, *ev, "no control measurement to compare")
        return True
    method, conf = lookup_failure_method(f)
    out.blocked(method, conf - C.DNS_IN_HTTP_PENALTY, *ev, *a.control_page_evidence())
    return True


def check_final_page(a: WebAnalysis) -> Outcome:
    """Every hop went through: throttling, a page unlike the control's, QUIC, else ``ok``."""
    out = a.out
    final = a.final_response()
    if check_throughput(a):
        return out
    if final is not None and _judge_unfinished_chain(a, final):
        return out
    if final is not None and _judge_plain_page(a, final):
        return out
    if check_quic(a):
        return out
    return _judge_nothing_broke(a, final)


def _judge_unfinished_chain(a: WebAnalysis, final: HttpObs) -> bool:
    """The last response is a redirect that nothing in the measurement followed: the page
    never arrived, so the verdict cannot be ok. No step names a failure to judge (a probe
    that tags only its requests, say), so: down if the control failed too, else unknown."""
    location = final.headers.get("location") if 300 <= final.status < 400 else None
    if final.failure is not None or not location:
        return False
    out, ctrl = a.out, a.ctrl
    ev = (
        f"http {final.url}: status {final.status} to {location[0]}, and no later step "
        "of the redirect chain reached a page"
    )
    if ctrl.available and not ctrl.http_ok:
        out.layers["http"] = "down"
        ctrl_ev = f"control: http {fmt(ctrl.http_failure)}"
        out.done("down", C.HTTP_CHAIN_UNFINISHED_DOWN, ev, ctrl_ev)
        return True
    out.layers["http"] = "unknown"
    out.done(
        "unknown",
        C.NONE,
        ev,
        *(a.control_page_evidence() or ["no control measurement to compare"]),
    )
    return True


def _judge_plain_page(a: WebAnalysis, final: HttpObs) -> bool:
    """A plain-HTTP final page (nothing vouches for it): a known page, or unlike the control's."""
    out = a.out
    authentic = final.scheme == "https" and out.layers["tls"] == "ok"
    if authentic or final.scheme != "http":
        return False
    if a.known_false_positive:
        out.layers["http"] = "ok"
        out.done(
            "ok",
            C.PAGE_KNOWN_FALSE_POSITIVE,
            f"http {final.url}: status {final.status}, "
            f"a known non-censorship page ({a.known_false_positive})",
            *a.dns_inconsistent,
        )
        return True
    diff = content_diff(a, final)
    if diff:
        out.layers["http"] = "blocked"
        out.blocked(
            "http.diff",
            C.PAGE_DIFFERS,
            f"http {final.url}: " + "; ".join(diff),
            *a.dns_inconsistent,
        )
        return True
    return False


def _judge_nothing_broke(a: WebAnalysis, final: HttpObs | None) -> Outcome:
    out, ctrl = a.out, a.ctrl
    if final is None and not a.obs.tls and not a.obs.tcp:
        if ctrl.available and not ctrl.http_ok:
            return out.done(
                "down",
                C.PAGE_NO_CONNECTION_DOWN,
                f"control: http {fmt(ctrl.http_failure)}",
                "the probe made no connection",
            )
        return out.done("unknown", C.NONE, "the measurement holds no connection attempt")
    tls_ok = out.layers["tls"] == "ok"
    if final is None and not tls_ok and out.layers["tcp"] != "ok":
        return out.done("unknown", C.NONE, "no HTTP request and no completed handshake")
    ev = []
    if final is not None:
        ev.append(
            f"http {final.url}: status {final.status}"
            + (f", {final.body_length} bytes" if final.body_length >= 0 else "")
        )
    elif tls_ok:
        ev.append(f"tls_handshake to {a.host}: ok")
    ev.extend(a.dns_inconsistent)
    if ctrl.available:
        ev.extend(a.control_page_evidence() or [f"control: http {fmt(ctrl.http_failure)}"])
        confidence = C.OK_TLS_WITH_CONTROL if tls_ok else C.OK_WITH_CONTROL
    else:
        ev.append(f"control: {ctrl.failure or 'none'}")
        confidence = C.OK_TLS_NO_CONTROL if tls_ok else C.OK_NO_CONTROL
    return out.done("ok", confidence, *ev)
