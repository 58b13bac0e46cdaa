"""Instant-messaging apps (whatsapp, telegram, signal, facebook_messenger): blocked or ok.

The blocked/ok decision is OONI's own, as its fastpath scores these tests (ooni/backend
``fastpath/core.py``), so a verdict here agrees with OONI's anomaly and failure flags; a run
that OONI counts as failed is ``unknown``. What the rule adds is the method (which step broke,
from the measurement's own steps) and the evidence. docs/verdicts.md, "Other tests".
"""

from __future__ import annotations

from datetime import UTC, datetime

from packaging.version import InvalidVersion, Version

from censorwatch.analysis import confidence as C
from censorwatch.analysis.endpoints import (
    blocked,
    connects_method,
    endpoint_method,
    method_of_failure,
)
from censorwatch.analysis.outcome import Outcome
from censorwatch.observations.builder import HttpObs
from censorwatch.observations.nettests import FACEBOOK_ENDPOINTS, NettestObs

WHATSAPP_WEB = "https://web.whatsapp.com/"
WHATSAPP_REGISTRATION = "https://v.whatsapp.net/v2/register"
TELEGRAM_WEB = frozenset({"https://web.telegram.org/", "http://web.telegram.org/"})


def _unknown(*evidence: str) -> Outcome:
    return Outcome().done("unknown", C.NONE, *evidence)


def _last(requests: list[HttpObs], url: str) -> HttpObs | None:
    """The last request for ``url`` (OONI's rule reads the last one)."""
    found = None
    for h in requests:
        if h.url == url:
            found = h
    return found


def _request_evidence(h: HttpObs) -> str:
    state = h.failure or (f"HTTP {h.status}" if h.status else "ok")
    return f"{h.url}: {state}"


# -- whatsapp (ts-018) -----------------------------------------------------------------------


def whatsapp(obs: NettestObs) -> Outcome:
    """Blocked when the web app's or the registration server's request failed, or when no
    connect to WhatsApp's endpoints succeeded. The probe's own ``*_status`` flags are not
    read (OONI stopped reading them: the web app's 400 to a probe is not a block)."""
    for key in ("registration_server_failure", "whatsapp_web_failure"):
        value = obs.flags.get(key)
        if isinstance(value, str) and value.startswith("unknown_failure"):
            return _unknown(f"{key}: {value} (the probe's own error: a failed run)")
    requests = obs.steps.http
    if not requests:
        return _unknown("the measurement has no HTTP requests")
    web, registration = _last(requests, WHATSAPP_WEB), _last(requests, WHATSAPP_REGISTRATION)
    if web is None or registration is None:
        return _unknown("the web app's or the registration server's request is missing")
    evidence = [_request_evidence(registration), _request_evidence(web)]
    for failed in (registration, web):
        if failed.failure:
            method, steps = endpoint_method(obs.steps, failed.host, failed.failure)
            confidence = C.APP_BLOCKED if failed is registration else C.APP_WEB_BLOCKED
            return blocked(method, confidence, *steps, *evidence)
    tcp = obs.tcp
    total = tcp.succeeded + tcp.failed
    evidence.append(f"tcp: {tcp.succeeded} of {total} connects to WhatsApp's endpoints worked")
    if obs.flags.get("whatsapp_web_status") == "blocked":
        evidence.append("the probe's whatsapp_web_status=blocked is not read (see above)")
    if total == 0:
        return _unknown("no connect to WhatsApp's endpoints was recorded", *evidence)
    if tcp.succeeded:
        confidence = C.NETTEST_OK_PARTIAL if tcp.failed else C.NETTEST_OK
        return Outcome().done("ok", confidence, *evidence)
    method, steps = connects_method(obs.steps)
    return blocked(method, C.APP_BLOCKED, *steps, *evidence)


# -- telegram (ts-020) -----------------------------------------------------------------------


def telegram(obs: NettestObs) -> Outcome:
    """OONI's score: the share of data-centre connects that failed, plus the share of
    data-centre HTTP requests that failed (each 0.5 when none was made), plus 1 when the probe
    found Telegram Web blocked; above 0.5 is blocked."""
    requests = obs.steps.http
    if any(not h.url for h in requests):
        return _unknown("a request without a URL (a bug of early probes): a failed run")
    web = [h for h in requests if h.url in TELEGRAM_WEB]
    dcs = [h for h in requests if h.url not in TELEGRAM_WEB]
    dc_failed = [h for h in dcs if h.failure]
    tcp = obs.tcp
    tcp_total = tcp.succeeded + tcp.failed
    web_blocked = obs.flags.get("telegram_web_status") == "blocked"
    tcp_share = tcp.failed / tcp_total if tcp_total else 0.5
    http_share = len(dc_failed) / len(dcs) if dcs else 0.5
    evidence = [
        f"tcp: {tcp.succeeded} of {tcp_total} connects to the data centres worked",
        f"http: {len(dcs) - len(dc_failed)} of {len(dcs)} requests to the data centres worked",
        f"telegram_web_status: {obs.flags.get('telegram_web_status')}",
    ]
    evidence.extend(_request_evidence(h) for h in web)
    if not tcp_total and not dcs and not web_blocked:
        # OONI's score reaches 1.0 here from two "not measured" halves: nothing was measured.
        return _unknown("no data centre was measured", *evidence)
    if tcp_share + http_share + (1 if web_blocked else 0) <= 0.5:
        partial = tcp.failed or dc_failed
        return Outcome().done("ok", C.NETTEST_OK_PARTIAL if partial else C.NETTEST_OK, *evidence)
    if tcp_share + http_share <= 0.5:  # Telegram Web alone decided
        failure = next((h.failure for h in web if h.failure), None)
        failure = failure or _text(obs.flags.get("telegram_web_failure"))
        method, steps = endpoint_method(obs.steps, "web.telegram.org", failure)
        return blocked(method, C.APP_WEB_BLOCKED, *steps, *evidence)
    if tcp_total and tcp_share >= http_share:
        method, steps = connects_method(obs.steps, all_failed=False)
        if method is None and tcp.failures:
            steps = [f"tcp_connect {tcp.failures[0]}"]
    else:
        h = dc_failed[0] if dc_failed else None
        method, steps = endpoint_method(obs.steps, h.host, h.failure) if h else (None, [])
    return blocked(method, C.APP_BLOCKED, *steps, *evidence)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- signal (ts-029) -------------------------------------------------------------------------

_CERTIFICATE_CHANGE = datetime(2023, 11, 7, tzinfo=UTC)  # ooni/probe#2627
_NEW_ENDPOINTS = datetime(2022, 10, 19, tzinfo=UTC)  # ooni/probe#2344
_CA_UPDATE = datetime(2023, 5, 2, tzinfo=UTC)  # ooni/backend#679


def _signal_run_problem(obs: NettestObs) -> str | None:
    """Why OONI counts this signal run as failed, or None."""
    flags = obs.flags
    if "failed_operation" not in flags or "failure" not in flags:
        return "the measurement lacks failed_operation or failure: a failed run"
    if flags["failed_operation"] or flags["failure"]:
        return (
            f"the test itself failed (failed_operation={flags['failed_operation']}, "
            f"failure={flags['failure']})"
        )
    run = obs.run
    if run.start_time is None:
        return "no readable measurement_start_time"
    if run.test_version == "0.2.4":
        return "test_version 0.2.4 is known to be broken (ooni/probe#2636)"
    try:
        test_version, engine = Version(run.test_version), Version(run.engine_version)
    except InvalidVersion:
        return f"unreadable version ({run.test_version!r}, {run.engine_version!r})"
    start = run.start_time
    known_broken = (
        (test_version <= Version("0.2.3") and start >= _CERTIFICATE_CHANGE)
        or (test_version < Version("0.2.2") and start >= _NEW_ENDPOINTS)
        or (engine < Version("3.17.2") and start >= _CA_UPDATE)
    )
    if known_broken:
        return (
            f"test {run.test_version} / engine {run.engine_version} on "
            f"{start:%Y-%m-%d}: a version known to misreport Signal's servers (a failed run)"
        )
    return None


def signal(obs: NettestObs) -> Outcome:
    """The probe's ``signal_backend_status`` (it checks Signal's servers against Signal's own
    CA), unless the run is one OONI knows to be broken."""
    problem = _signal_run_problem(obs)
    if problem is not None:
        return _unknown(problem)
    status = obs.flags.get("signal_backend_status")
    failed = [h for h in obs.steps.http if h.failure]
    evidence = [f"signal_backend_status: {status}"]
    evidence.extend(_request_evidence(h) for h in failed[:3])
    if status == "ok":
        return Outcome().done("ok", C.NETTEST_OK, *evidence)
    if status != "blocked":
        return _unknown(*evidence)
    backend_failure = _text(obs.flags.get("signal_backend_failure"))
    evidence.insert(1, f"signal_backend_failure: {backend_failure}")
    method, steps = (
        endpoint_method(obs.steps, failed[0].host, failed[0].failure) if failed else (None, [])
    )
    return blocked(method or method_of_failure(backend_failure), C.APP_BLOCKED, *steps, *evidence)


# -- facebook_messenger (ts-019) -------------------------------------------------------------

_FB_CONSISTENCY = tuple(
    f"facebook_{name}_{kind}"
    for name in FACEBOOK_ENDPOINTS
    for kind in ("dns_consistent", "reachable")
    if not (name == "stun" and kind == "reachable")  # OONI does not score STUN's reachability
)
_FB_ANOMALY = ("facebook_tcp_blocking", "facebook_dns_blocking")
#: The flags that, all true with tcp_blocking false, OONI reads as a probe bug: ok.
_FB_PROBE_BUG = (
    *(k for k in _FB_CONSISTENCY if "external_cdn" not in k and "scontent_cdn" not in k),
    "facebook_dns_blocking",
)


def facebook_messenger(obs: NettestObs) -> Outcome:
    """OONI's score: 0.5 for each consistency/reachability flag that is false and each
    blocking flag that is true; above 0.5 is blocked (so two flags are needed)."""
    flags = obs.flags
    if not any(isinstance(flags.get(k), bool) for k in _FB_CONSISTENCY + _FB_ANOMALY):
        return _unknown("the measurement has none of the facebook_* flags")
    if all(flags.get(k) is True for k in _FB_PROBE_BUG) and flags.get("facebook_tcp_blocking") is (
        False
    ):
        return Outcome().done(
            "ok", C.NETTEST_OK, "every endpoint consistent and reachable (dns_blocking ignored)"
        )
    raised = [k for k in _FB_CONSISTENCY if flags.get(k) is False]
    raised += [k for k in _FB_ANOMALY if flags.get(k) is True]
    evidence = [f"{k}: {flags[k]}" for k in raised]
    if len(raised) <= 1:  # 0.5 per flag; OONI's threshold is "more than 0.5"
        confidence = C.NETTEST_OK_PARTIAL if raised else C.NETTEST_OK
        return Outcome().done("ok", confidence, *(evidence or ["every facebook_* flag is clear"]))
    dns_bad = [n for n in FACEBOOK_ENDPOINTS if flags.get(f"facebook_{n}_dns_consistent") is False]
    if dns_bad or flags.get("facebook_dns_blocking") is True:
        host = FACEBOOK_ENDPOINTS[dns_bad[0]] if dns_bad else ""
        method, steps = endpoint_method(obs.steps, host) if host else (None, [])
        if method is None or not method.startswith("dns."):
            # The lookup answered, with addresses outside Facebook's network.
            method = "dns.forged"
            answers = [q for q in obs.steps.queries if q.hostname == host and q.addrs]
            steps = [f"dns {host}: {', '.join(answers[0].addrs)}"] if answers else []
        return blocked(method, C.FACEBOOK_FLAGS_BLOCKED, *steps, *evidence)
    method, steps = connects_method(obs.steps)
    if method is None:
        unreachable = [
            n for n in FACEBOOK_ENDPOINTS if flags.get(f"facebook_{n}_reachable") is False
        ]
        if unreachable:
            method, steps = endpoint_method(obs.steps, FACEBOOK_ENDPOINTS[unreachable[0]])
    return blocked(method, C.FACEBOOK_FLAGS_BLOCKED, *steps, *evidence)
