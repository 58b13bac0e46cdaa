"""Two accuracy rules of the web_connectivity analysis, on real OONI measurements made to show
the pattern (docs/verdicts.md, *Answers that differ by AS*, *A redirect chain that fails*).

Every case starts from a real wc05_qa measurement (OONI Probe 0.5.28 in OONI's censorship
emulator) and edits only the fields the pattern is about:

* a CDN answer beside the origin's (ooni/probe#2517): the probe's resolver and the control
  answer addresses in different ASes, the probe connects to both sets, and TLS fails the same
  way on both. The DNS answer is not what fails, so it must not be called ``dns.forged``;
* a site whose redirect chain fails is never ``ok``: ``down`` when the control fails too,
  ``unknown`` when the evidence is thin; a redirect hop the control reaches stays blocked.

The AS of each address comes from a small address plan file (what ``--asn-db`` loads); the
measurements' own AS hints are removed so that the plan is what tells the ASes apart.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.core import analyze_json
from censorwatch.model import Verdict
from censorwatch.netinfo import AddressPlan

HOST = "www.example.com"
CDN = "23.192.228.80"  # the probe's resolver: a CDN edge (AS20940 in the plan below)
ORIGIN = "93.184.216.34"  # the control's answer: the origin (AS15133), as in the real file


@pytest.fixture(scope="module")
def qa(shared_data: Path) -> Path:
    return shared_data / "ooni" / "wc05_qa"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> AddressPlan:
    path = tmp_path_factory.mktemp("plan") / "address-plan.json"
    path.write_text(
        json.dumps(
            {
                "networks": [
                    {"prefix": "23.192.228.0/24", "asn": "AS20940", "as_org_name": "CDN"},
                    {"prefix": "93.184.216.0/24", "asn": "AS15133", "as_org_name": "Origin"},
                ]
            }
        ),
        encoding="utf-8",
    )
    return AddressPlan.load(path)


def load(qa: Path, name: str) -> dict[str, Any]:
    return json.loads((qa / f"{name}.json").read_bytes())


def verdict(m: dict[str, Any], plan: AddressPlan) -> Verdict:
    """The verdict by the bytes road, checked against the dict road (the one analysis)."""
    v = analyze_json(json.dumps(m).encode(), plan=plan)
    assert v.to_record() == analyze(m, plan=plan).to_record()
    return v


# -- a CDN answer beside the origin's ------------------------------------------------------


def _handshake(base: dict[str, Any], ip: str, failure: str | None, classic: bool) -> None:
    base["address"] = f"{ip}:443"
    base["failure"] = failure
    base["tags"] = [t for t in base["tags"] if classic or t != "classic"]
    if failure is not None:
        base.update(peer_certificates=[], cipher_suite="", tls_version="", negotiated_protocol="")


def cdn_answer(
    qa: Path,
    *,
    own_tls: str | None = "connection_reset",
    origin_tls: str | None = "connection_reset",
    origin_tcp: str | None = None,
    probe_tries_origin: bool = True,
    control_tls: dict[str, str | None] | None = None,
    control_http_failure: str | None = None,
) -> dict[str, Any]:
    """successWithHTTPS, with the probe's resolver answering the CDN address: the probe
    connects to its answer (classic) and to the control's (as OONI 0.5 does), and each
    handshake ends as given; the control's handshakes are ``control_tls``."""
    m = load(qa, "successWithHTTPS")
    tk = m["test_keys"]
    for q in tk["queries"]:
        for answer in q.get("answers") or []:
            answer.pop("asn", None)
            answer.pop("as_org_name", None)
            if q["engine"] != "doh":  # the encrypted resolver still sees the origin
                answer["ipv4"] = CDN
    own_tcp = tk["tcp_connect"][0]
    own_tcp["ip"] = CDN
    own_hand = tk["tls_handshakes"][0]
    origin_hand = copy.deepcopy(own_hand)
    _handshake(own_hand, CDN, own_tls, classic=True)
    if probe_tries_origin:
        tcp = copy.deepcopy(own_tcp)
        tcp.update(ip=ORIGIN, status={"success": origin_tcp is None, "failure": origin_tcp})
        tcp["tags"] = [t for t in tcp["tags"] if t != "classic"]
        tk["tcp_connect"].append(tcp)
        if origin_tcp is None:
            _handshake(origin_hand, ORIGIN, origin_tls, classic=False)
            tk["tls_handshakes"].append(origin_hand)
    if own_tls is not None:
        tk["requests"] = []  # no request without a handshake that worked
    control = tk["control"]
    control["ip_info"] = {}
    control["tcp_connect"] = {
        f"{ip}:443": {"status": True, "failure": None} for ip in (CDN, ORIGIN)
    }
    control["tls_handshake"] = {
        key: {"server_name": HOST, "status": failure is None, "failure": failure}
        for key, failure in (control_tls or {}).items()
    }
    if control_http_failure:
        control["http_request"] = {
            "body_length": -1,
            "failure": control_http_failure,
            "title": "",
            "headers": {},
            "status_code": -1,
        }
    return m


@pytest.mark.parametrize(
    ("failure", "method"),
    [
        ("connection_reset", "tls.reset"),
        ("eof_error", "tls.reset"),
        ("generic_timeout_error", "tls.timeout"),
        ("ssl_unknown_authority", "tls.mitm"),
    ],
)
def test_tls_failing_on_every_address_is_tls_interference_not_dns(qa, plan, failure, method):
    """The control's handshake to the origin works; the probe's fails there as at the CDN."""
    m = cdn_answer(qa, own_tls=failure, origin_tls=failure, control_tls={f"{ORIGIN}:443": None})
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", method), v.evidence
    assert (v.layers.dns, v.layers.tcp, v.layers.tls) == ("ok", "ok", "blocked")
    origin_line = (
        f"tls_handshake {ORIGIN}:443 sni={HOST}: {failure} (an address of the control's answer)"
    )
    assert origin_line in v.evidence
    assert "control: tls ok" in v.evidence
    # The disagreement is still told, as context: AS20940 (the plan) against AS15133.
    assert any("no address or AS overlap (AS20940 vs AS15133)" in e for e in v.evidence)
    assert any("the answer is not what fails" in e for e in v.evidence)


def test_the_control_failing_the_handshake_too_is_down(qa, plan):
    """The shape of ooni/probe#2517 itself: every handshake, the control's included, ends in
    EOF and the control's fetch fails: the site fails for everyone, nothing is blocked."""
    m = cdn_answer(
        qa,
        own_tls="eof_error",
        origin_tls="eof_error",
        control_tls={f"{CDN}:443": "eof_error", f"{ORIGIN}:443": "eof_error"},
        control_http_failure="unknown_error",
    )
    v = verdict(m, plan)
    assert v.verdict == "down", (v.method, v.evidence)
    assert (v.layers.dns, v.layers.tls) == ("ok", "down")
    assert (
        f"tls_handshake {ORIGIN}:443 sni={HOST}: eof_error (an address of the control's "
        "answer)" in v.evidence
    )


def test_the_control_reaching_the_origin_decides_even_where_the_cdn_refuses_it(qa, plan):
    """The control's handshake to the CDN address fails (that edge does not serve the name to
    it) but the one to the origin works: the probe failing at the origin is interference."""
    m = cdn_answer(
        qa,
        control_tls={f"{CDN}:443": "ssl_invalid_hostname", f"{ORIGIN}:443": None},
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "tls.reset"), v.evidence


def test_no_control_handshake_falls_back_to_the_control_page(qa, plan):
    """No handshake in the control: its fetched page says TLS works elsewhere."""
    v = verdict(cdn_answer(qa, control_tls={}), plan)
    assert (v.verdict, v.method) == ("blocked", "tls.reset"), v.evidence
    assert "control: reached the final page" in v.evidence


@pytest.mark.parametrize(
    "edit",
    [
        # The genuine forged answer: the origin completes the handshake, the answer does not.
        {"origin_tls": None},
        # Not the same failure: the answer resets, the origin stalls.
        {"origin_tls": "generic_timeout_error"},
        # The probe never tried the control's addresses: nothing says TLS fails everywhere.
        {"probe_tries_origin": False},
        # The probe could not connect to the origin: no handshake to compare.
        {"origin_tcp": "connection_refused"},
    ],
    ids=["origin-works", "other-failure", "origin-untried", "origin-unconnected"],
)
def test_a_forged_answer_stays_forged(qa, plan, edit):
    m = cdn_answer(qa, control_tls={f"{ORIGIN}:443": None}, **edit)
    v = verdict(m, plan)
    assert (v.verdict, v.method, v.layers.dns) == ("blocked", "dns.forged", "blocked")


@pytest.mark.parametrize(
    "name",
    [
        "tcpBlockingConnectionRefusedWithInconsistentDNS",
        "badSSLWithUnknownAuthorityWithInconsistentDNS",
    ],
)
def test_the_real_forged_answers_stay_forged(qa, plan, name):
    v = verdict(load(qa, name), plan)
    assert (v.verdict, v.method) == ("blocked", "dns.forged")


# -- a redirect chain that fails -------------------------------------------------------------


def control_fails(m: dict[str, Any], failure: str) -> dict[str, Any]:
    m["test_keys"]["control"]["http_request"] = {
        "body_length": -1,
        "failure": failure,
        "title": "",
        "headers": {},
        "status_code": -1,
    }
    return m


def control_reaches_page(m: dict[str, Any], qa: Path) -> dict[str, Any]:
    page = load(qa, "successWithHTTPS")["test_keys"]["control"]["http_request"]
    m["test_keys"]["control"]["http_request"] = page
    return m


def only_requests_tagged(m: dict[str, Any]) -> dict[str, Any]:
    """The shape of probes that tag only their requests with the redirect depth: the failing
    hop's lookup, connect or handshake then carries no depth, and no request says it failed."""
    tk = m["test_keys"]
    for key in ("queries", "tcp_connect", "tls_handshakes", "network_events"):
        for step in tk.get(key) or []:
            step["tags"] = [t for t in step.get("tags") or [] if not t.startswith("depth=")]
    return m


# (file, the failure the control's fetch of the same chain reports)
NEXT_HOP_FAILS = [
    ("redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS", "connection_refused"),
    ("redirectWithConsistentDNSAndThenConnectionRefusedForHTTP", "connection_refused"),
    ("redirectWithConsistentDNSAndThenNXDOMAIN", "dns_nxdomain_error"),
    ("redirectWithConsistentDNSAndThenTimeoutForHTTPS", "generic_timeout_error"),
    ("redirectWithConsistentDNSAndThenConnectionResetForHTTP", "connection_reset"),
    ("redirectWithConsistentDNSAndThenEOFForHTTPS", "eof_error"),
]


@pytest.mark.parametrize("tagged", [True, False], ids=["every-step-tagged", "requests-tagged"])
@pytest.mark.parametrize(("name", "failure"), NEXT_HOP_FAILS)
def test_redirect_target_failing_for_the_control_too_is_down(qa, plan, name, failure, tagged):
    m = control_fails(load(qa, name), failure)
    if not tagged:
        m = only_requests_tagged(m)
    v = verdict(m, plan)
    assert v.verdict == "down", (v.verdict, v.method, v.evidence)
    assert v.confidence >= 0.6
    assert any(e.startswith("control: ") and failure in e for e in v.evidence), v.evidence


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS", "tcp.reset"),
        ("redirectWithConsistentDNSAndThenNXDOMAIN", "dns.nxdomain"),
        ("redirectWithConsistentDNSAndThenEOFForHTTPS", "tls.reset"),
        ("redirectWithConsistentDNSAndThenTimeoutForHTTP", "http.timeout"),
    ],
)
def test_redirect_hop_blocked_only_at_the_probe_stays_blocked(qa, plan, name, method):
    """The control reached the final page (the real files): the hop's failure is a block."""
    v = verdict(load(qa, name), plan)
    assert (v.verdict, v.method) == ("blocked", method)


def test_chain_ending_at_an_unfollowed_redirect_is_never_ok(qa, plan):
    """No step of the next hop carries its depth and no request failed: the measurement ends
    at the 308. The page never arrived: unknown while the control reached it (the hop's
    failure cannot be named), not the 'ok' the redirect response used to earn."""
    m = only_requests_tagged(load(qa, "redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS"))
    v = verdict(m, plan)
    assert v.verdict == "unknown", (v.verdict, v.evidence)
    assert v.evidence[0] == (
        "http https://bit.ly/21645: status 308 to https://www.example.com/, "
        "and no later step of the redirect chain reached a page"
    )


@pytest.mark.parametrize(
    "name", ["redirectWithBrokenLocationForHTTP", "redirectWithBrokenLocationForHTTPS"]
)
def test_unusable_redirect_is_down_when_the_control_fails_too(qa, plan, name):
    v = verdict(control_fails(load(qa, name), "unknown_error"), plan)
    assert (v.verdict, v.layers.http) == ("down", "down")


@pytest.mark.parametrize(
    "name", ["redirectWithBrokenLocationForHTTP", "redirectWithBrokenLocationForHTTPS"]
)
def test_unusable_redirect_the_control_got_past_is_unknown_not_ok(qa, plan, name):
    """The real files: the probe got a 302 to "http://", the control a page. Not
    interference (the site's own answer), not reachable either: too little for down."""
    v = verdict(load(qa, name), plan)
    assert (v.verdict, v.method, v.layers.http) == ("unknown", None, "unknown")
    assert (
        "the site's own redirect is unusable: not interference, but the page did not "
        "arrive" in v.evidence
    )


def test_unusable_redirect_without_a_control_is_unknown(qa, plan):
    m = load(qa, "redirectWithBrokenLocationForHTTPS")
    m["test_keys"]["control"] = {}
    m["test_keys"]["control_failure"] = "generic_timeout_error"
    v = verdict(m, plan)
    assert v.verdict == "unknown"


def test_endless_redirects_are_down_with_the_control_and_unknown_without(qa, plan):
    name = "redirectWithMoreThanTenRedirectsAndHTTPS"
    real = verdict(load(qa, name), plan)  # the control's fetch fails too (unknown_error)
    assert (real.verdict, real.layers.http) == ("down", "down")
    got_past = verdict(control_reaches_page(load(qa, name), qa), plan)
    assert got_past.verdict == "unknown", got_past.evidence
