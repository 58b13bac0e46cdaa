"""Verdicts for OONI's other tests (whatsapp, telegram, signal, facebook_messenger, dnscheck,
tor, psiphon), against OONI's own fastpath scoring (ooni/backend ``fastpath/core.py``).

Every case names the fastpath rule that decides it; the real files are the specifications'
examples and the odd shapes OONI's backend tests feed to fastpath (whose own unit tests assert
the same outcome for them: whatsapp.json ok, tor.json ok, signal_022 ok, signal_2627 failed,
telegram_nourl failed). A fastpath "failure" (accuracy < 0.5) is our ``unknown``; an anomaly
(blocking_general > 0.5) is ``blocked``; neither is ``ok``. Variants alter a real file the way
a censor (or a broken probe) would. Both roads (bytes and dict) must agree on each.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from censorwatch.analysis import confidence as C
from censorwatch.analysis.core import analyze, analyze_json
from censorwatch.events.platforms import load_platforms, platforms_of
from censorwatch.model import Verdict

PLATFORM_OF_TEST = {
    "whatsapp": "whatsapp",
    "telegram": "telegram",
    "signal": "signal",
    "facebook_messenger": "facebook_messenger",
    "tor": "tor",
    "psiphon": "psiphon",
}


@pytest.fixture(scope="module")
def ooni(shared_data: Path) -> Path:
    return shared_data / "ooni"


def load(ooni: Path, name: str) -> dict[str, Any]:
    return json.loads((ooni / name).read_bytes())


def both_roads(m: dict[str, Any]) -> Verdict:
    """The verdict, after checking that the bytes road and the dict road give the same one."""
    by_bytes = analyze_json(msgspec.json.encode(m))
    by_dict = analyze(copy.deepcopy(m))
    assert by_bytes.to_record() == by_dict.to_record()
    return by_bytes


# -- the real files ------------------------------------------------------------------------

REAL = [
    # (file, verdict, the fastpath rule that decides it)
    ("examples/ts-018-whatsapp.example.json", "ok", "web app, registration and connects ok"),
    ("odd/whatsapp.json", "ok", "the probe's web_status=blocked is not read"),
    ("examples/ts-019-facebook-messenger.example.json", "ok", "no flag raised"),
    ("examples/ts-020-telegram.example.json", "ok", "score 0"),
    ("odd/telegram_nourl.json", "unknown", "a request without url: accuracy 0"),
    ("examples/ts-029-signal.example.json", "ok", "signal_backend_status ok"),
    ("odd/signal_022.json", "ok", "0.2.2 before the version cut-offs"),
    ("odd/signal_2627.json", "unknown", "test_version < 0.2.2 after 2022-10-19"),
    ("odd/tor.json", "ok", "0 of 3 targets failed"),
    ("examples/ts-028-dnscheck.example.json", "ok", "censorwatch's rule: IPv4 lookups worked"),
]


@pytest.mark.parametrize(("name", "want", "rule"), REAL)
def test_real_files_get_fastpaths_verdict(ooni: Path, name: str, want: str, rule: str):
    m = load(ooni, name)
    v = both_roads(m)
    assert v.verdict == want, (rule, v.evidence)
    assert v.evidence and not any("could not be analysed" in e for e in v.evidence)
    assert v.input == m.get("input")
    platform = PLATFORM_OF_TEST.get(m["test_name"])
    if platform is not None:  # input-less: the verdict is about the platform
        assert v.input is None
        assert platforms_of(v.target or "", load_platforms()) == [platform]


def test_signal_2627_says_why_it_is_not_judged(ooni: Path):
    # The probe said blocked (ssl_unknown_authority): an old test version after Signal's
    # endpoints changed, which OONI counts as a failed run, not a block.
    m = load(ooni, "odd/signal_2627.json")
    assert m["test_keys"]["signal_backend_status"] == "blocked"
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == ("unknown", None, 0.0)
    assert "known to misreport" in v.evidence[0]


def test_dnscheck_target_is_the_resolver(ooni: Path):
    v = both_roads(load(ooni, "examples/ts-028-dnscheck.example.json"))
    assert (v.input, v.target) == ("dot://dns.google:853", "dns.google")
    assert any("no route" in e and "not counted" in e for e in v.evidence)


def test_null_test_keys_of_a_messaging_test_is_unknown(ooni: Path):
    m = load(ooni, "examples/ts-020-telegram.example.json")
    m["test_keys"] = None
    v = both_roads(m)
    assert (v.verdict, v.evidence, v.target) == (
        "unknown",
        ["the measurement has no test_keys"],
        "telegram.org",
    )


def test_values_of_an_odd_type_are_named_on_both_roads(ooni: Path):
    # ooniprobe 2.x wrote "failure": false in tcp_connect: pruned, named, still judged.
    v = both_roads(load(ooni, "examples/ts-019-facebook-messenger.example.json"))
    assert v.verdict == "ok"
    assert any("tcp_connect[0].status.failure" in e for e in v.evidence)


# -- whatsapp ------------------------------------------------------------------------------


def _request(m: dict[str, Any], url: str) -> dict[str, Any]:
    return next(r for r in m["test_keys"]["requests"] if r["request"]["url"] == url)


def test_whatsapp_registration_server_reset_at_tls(ooni: Path):
    m = load(ooni, "examples/ts-018-whatsapp.example.json")
    tk = m["test_keys"]
    reg = _request(m, "https://v.whatsapp.net/v2/register")
    reg["failure"], reg["response"] = "connection_reset", None
    for h in tk["tls_handshakes"]:
        if h["server_name"] == "v.whatsapp.net":
            h["failure"] = "connection_reset"
    tk["registration_server_status"] = "blocked"
    v = both_roads(m)
    assert (v.verdict, v.method, v.layers.tls) == ("blocked", "tls.reset", "blocked")
    assert v.confidence == C.APP_BLOCKED
    assert "sni=v.whatsapp.net: connection_reset" in v.evidence[0]


def test_whatsapp_web_app_failing_is_blocked(ooni: Path):
    m = load(ooni, "examples/ts-018-whatsapp.example.json")
    web = _request(m, "https://web.whatsapp.com/")
    web["failure"] = "generic_timeout_error"
    v = both_roads(m)
    assert (v.verdict, v.confidence) == ("blocked", C.APP_WEB_BLOCKED)
    assert v.method == "http.timeout"  # the connect and the handshake worked


def test_whatsapp_every_endpoint_connect_failing_is_blocked(ooni: Path):
    m = load(ooni, "examples/ts-018-whatsapp.example.json")
    for t in m["test_keys"]["tcp_connect"]:
        t["status"] = {"failure": "generic_timeout_error", "success": False}
    v = both_roads(m)
    assert (v.verdict, v.method) == ("blocked", "tcp.timeout")
    assert any("0 of 34 connects" in e for e in v.evidence)


def test_whatsapp_one_endpoint_connect_working_is_ok(ooni: Path):
    m = load(ooni, "examples/ts-018-whatsapp.example.json")
    for t in m["test_keys"]["tcp_connect"][1:]:
        t["status"] = {"failure": "connection_refused", "success": False}
    v = both_roads(m)
    assert (v.verdict, v.confidence) == ("ok", C.NETTEST_OK_PARTIAL)


def test_whatsapp_probe_error_is_a_failed_run_even_when_a_request_failed(ooni: Path):
    m = load(ooni, "examples/ts-018-whatsapp.example.json")
    m["test_keys"]["registration_server_failure"] = "unknown_failure: read: no buffer space"
    _request(m, "https://v.whatsapp.net/v2/register")["failure"] = "connection_reset"
    assert both_roads(m).verdict == "unknown"


def test_whatsapp_without_requests_or_connects_is_unknown(ooni: Path):
    m = load(ooni, "examples/ts-018-whatsapp.example.json")
    no_tcp = copy.deepcopy(m)
    no_tcp["test_keys"]["tcp_connect"] = []
    m["test_keys"]["requests"] = None
    assert both_roads(m).verdict == "unknown"
    assert both_roads(no_tcp).verdict == "unknown"


# -- telegram ------------------------------------------------------------------------------


def test_telegram_all_data_centres_failing(ooni: Path):
    m = load(ooni, "examples/ts-020-telegram.example.json")
    tk = m["test_keys"]
    for t in tk["tcp_connect"]:
        if t["ip"] != "149.154.167.99":  # web.telegram.org still works
            t["status"] = {"failure": "generic_timeout_error", "success": False}
    for r in tk["requests"]:
        if "web.telegram.org" not in r["request"]["url"]:
            r["failure"], r["response"] = "generic_timeout_error", None
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == ("blocked", "tcp.timeout", C.APP_BLOCKED)


def test_telegram_half_the_connects_failing_is_not_enough(ooni: Path):
    # Score 0.5 (half the connects) + 0 (every request worked): OONI wants more than 0.5.
    m = load(ooni, "examples/ts-020-telegram.example.json")
    tcp = m["test_keys"]["tcp_connect"]
    tcp.append(copy.deepcopy(tcp[0]))  # 14 connects: 7 fail
    for t in tcp[:7]:
        t["status"] = {"failure": "connection_reset", "success": False}
    assert both_roads(m).verdict == "ok"
    tcp[7]["status"] = {"failure": "connection_reset", "success": False}  # 8 of 14
    v = both_roads(m)
    assert (v.verdict, v.method) == ("blocked", "tcp.reset")


def test_telegram_web_alone_blocked(ooni: Path):
    m = load(ooni, "examples/ts-020-telegram.example.json")
    tk = m["test_keys"]
    tk["telegram_web_status"], tk["telegram_web_failure"] = "blocked", "ssl_invalid_hostname"
    web = _request(m, "https://web.telegram.org/")
    web["failure"], web["response"] = "ssl_invalid_hostname", None
    tk["tls_handshakes"][0]["failure"] = "ssl_invalid_hostname"
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == ("blocked", "tls.mitm", C.APP_WEB_BLOCKED)


def test_telegram_with_nothing_measured_is_unknown(ooni: Path):
    # A deliberate difference: fastpath scores 0.5 + 0.5 for two unmeasured halves (anomaly).
    m = load(ooni, "examples/ts-020-telegram.example.json")
    m["test_keys"]["tcp_connect"], m["test_keys"]["requests"] = [], []
    v = both_roads(m)
    assert v.verdict == "unknown" and "no data centre was measured" in v.evidence[0]


# -- signal --------------------------------------------------------------------------------


def test_signal_tls_resets(ooni: Path):
    m = load(ooni, "examples/ts-029-signal.example.json")
    tk = m["test_keys"]
    for h in tk["tls_handshakes"]:
        h["failure"] = "connection_reset"
    for r in tk["requests"]:
        r["failure"], r["response"] = "connection_reset", None
    tk["signal_backend_status"], tk["signal_backend_failure"] = "blocked", "connection_reset"
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == ("blocked", "tls.reset", C.APP_BLOCKED)
    assert v.target == "signal.org"


def test_signal_forged_certificate(ooni: Path):
    m = load(ooni, "examples/ts-029-signal.example.json")
    tk = m["test_keys"]
    chat = _request(m, "https://chat.signal.org/")
    chat["failure"], chat["response"] = "ssl_unknown_authority", None
    for h in tk["tls_handshakes"]:
        if h["server_name"] == "chat.signal.org":
            h["failure"] = "ssl_unknown_authority"
    tk["signal_backend_status"], tk["signal_backend_failure"] = "blocked", "ssl_unknown_authority"
    assert both_roads(m).method == "tls.mitm"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"test_version": "0.2.4"}, "0.2.4"),
        ({"test_version": "0.2.3"}, "known to misreport"),  # after 2023-11-07
        ({"annotations": {"engine_version": "3.17.1"}}, "known to misreport"),
        ({"annotations": {"engine_version": "3.17.2-alpha"}}, "known to misreport"),
        ({"test_version": "not a version"}, "unreadable version"),
        ({"measurement_start_time": None}, "measurement_start_time"),
    ],
)
def test_signal_runs_fastpath_counts_as_failed(ooni: Path, change: dict, reason: str):
    m = load(ooni, "examples/ts-029-signal.example.json")
    m["test_keys"]["signal_backend_status"] = "blocked"
    m.update(change)
    v = both_roads(m)
    assert v.verdict == "unknown" and reason in v.evidence[0]


def test_signal_without_failed_operation_or_with_a_test_failure_is_unknown(ooni: Path):
    m = load(ooni, "examples/ts-029-signal.example.json")
    failed = copy.deepcopy(m)
    del m["test_keys"]["failed_operation"]
    assert both_roads(m).verdict == "unknown"
    failed["test_keys"]["failure"] = "generic_timeout_error"
    assert both_roads(failed).verdict == "unknown"
    released = load(ooni, "examples/ts-029-signal.example.json")
    released["annotations"]["engine_version"] = "3.17.2"
    assert both_roads(released).verdict == "ok"


# -- facebook_messenger --------------------------------------------------------------------


def test_facebook_one_flag_is_not_enough_two_are(ooni: Path):
    m = load(ooni, "examples/ts-019-facebook-messenger.example.json")
    tk = m["test_keys"]
    tk["facebook_b_api_dns_consistent"] = False  # 0.5
    assert both_roads(m).verdict == "ok"
    tk["facebook_dns_blocking"] = True  # 1.0
    tk["queries"][-1]["answers"] = [{"ipv4": "10.10.34.35", "answer_type": "A"}]
    v = both_roads(m)
    assert (v.verdict, v.method) == ("blocked", "dns.forged")
    assert "dns b-api.facebook.com: 10.10.34.35" in v.evidence


def test_facebook_lookup_failures_are_dns_failures(ooni: Path):
    m = load(ooni, "examples/ts-019-facebook-messenger.example.json")
    tk = m["test_keys"]
    tk["facebook_edge_dns_consistent"], tk["facebook_dns_blocking"] = False, True
    edge = next(q for q in tk["queries"] if q["hostname"] == "edge-mqtt.facebook.com")
    edge["failure"], edge["answers"] = "dns_nxdomain_error", []
    assert both_roads(m).method == "dns.nxdomain"


def test_facebook_unreachable_endpoints(ooni: Path):
    m = load(ooni, "examples/ts-019-facebook-messenger.example.json")
    tk = m["test_keys"]
    tk["facebook_star_reachable"], tk["facebook_tcp_blocking"] = False, True
    for t in tk["tcp_connect"]:
        t["status"] = {"failure": "connection_reset", "success": False}
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == (
        "blocked",
        "tcp.reset",
        C.FACEBOOK_FLAGS_BLOCKED,
    )


def test_facebook_dns_blocking_alongside_consistent_answers_is_a_probe_bug(ooni: Path):
    m = load(ooni, "examples/ts-019-facebook-messenger.example.json")
    m["test_keys"]["facebook_dns_blocking"] = True
    assert both_roads(m).verdict == "ok"
    # OONI's shortcut does not look at the CDN flags: still ok, as in fastpath.
    m["test_keys"]["facebook_external_cdn_dns_consistent"] = False
    assert both_roads(m).verdict == "ok"
    m["test_keys"]["facebook_star_dns_consistent"] = False  # shortcut off: 3 flags, 1.5
    assert both_roads(m).verdict == "blocked"


# -- dnscheck (censorwatch's rules: fastpath does not score dnscheck) -----------------------


def test_dnscheck_bootstrap_failure(ooni: Path):
    m = load(ooni, "examples/ts-028-dnscheck.example.json")
    tk = m["test_keys"]
    tk["bootstrap_failure"], tk["lookups"] = "dns_nxdomain_error", {}
    for q in tk["bootstrap"]["queries"]:
        q["failure"], q["answers"] = "dns_nxdomain_error", None
    v = both_roads(m)
    assert (v.verdict, v.method, v.target) == ("blocked", "dns.nxdomain", "dns.google")
    tk["bootstrap_failure"] = "generic_timeout_error"
    assert both_roads(m).verdict == "unknown"


def test_dnscheck_every_routable_lookup_failing(ooni: Path):
    m = load(ooni, "examples/ts-028-dnscheck.example.json")
    for endpoint, lk in m["test_keys"]["lookups"].items():
        if "[" not in endpoint:  # the IPv4 addresses; IPv6 had no route anyway
            lk["failure"], lk["failed_operation"] = "generic_timeout_error", "connect"
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == (
        "blocked",
        "tcp.timeout",
        C.DNSCHECK_LOOKUPS_FAILED,
    )
    for lk in m["test_keys"]["lookups"].values():
        lk["failure"], lk["failed_operation"] = "connection_reset", "tls_handshake"
    assert both_roads(m).method == "tls.reset"


def test_dnscheck_with_no_route_at_all_is_unknown(ooni: Path):
    m = load(ooni, "examples/ts-028-dnscheck.example.json")
    for lk in m["test_keys"]["lookups"].values():
        lk["failure"], lk["failed_operation"] = "network_unreachable", "connect"
    assert both_roads(m).verdict == "unknown"


# -- tor -----------------------------------------------------------------------------------


def _fail_target(target: dict[str, Any], failure: str) -> None:
    target["failure"] = failure
    for t in target.get("tcp_connect") or []:
        t["status"] = {"failure": failure, "success": False}


def test_tor_all_targets_failing(ooni: Path):
    m = load(ooni, "odd/tor.json")
    for target in m["test_keys"]["targets"].values():
        _fail_target(target, "generic_timeout_error")
    v = both_roads(m)
    assert (v.verdict, v.method, v.confidence) == ("blocked", "tcp.timeout", C.TOR_ALL_FAILED)
    assert (v.input, v.target) == (None, "torproject.org")


def test_tor_failed_share_decides(ooni: Path):
    m = load(ooni, "odd/tor.json")
    targets = list(m["test_keys"]["targets"].values())
    _fail_target(targets[0], "connection_reset")
    assert both_roads(m).verdict == "ok"  # 1 of 3
    _fail_target(targets[2], "connection_reset")
    v = both_roads(m)  # 2 of 3
    assert (v.verdict, v.method, v.confidence) == ("blocked", "tcp.reset", C.TOR_MOST_FAILED)
    targets[1]["failure"] = False  # did not run: 2 of 2
    assert both_roads(m).confidence == C.TOR_ALL_FAILED


def test_tor_obfs4_handshake_failure_has_no_method(ooni: Path):
    m = load(ooni, "odd/tor.json")
    targets = m["test_keys"]["targets"]
    for target in targets.values():
        target["failure"] = False
    obfs4 = targets["f372c264e9a470335d9ac79fe780847bda052aa3b6a9ee5ff497cb6501634f9f"]
    obfs4["failure"] = "generic_timeout_error"  # connected, then the obfs4 handshake stalled
    v = both_roads(m)
    assert (v.verdict, v.method) == ("blocked", None)
    assert any("obfs4 38.229.1.78:80: generic_timeout_error" in e for e in v.evidence)


@pytest.mark.parametrize(
    "breakage",
    ["none_ran", "list", "empty", "no_network_events", "empty_failure"],
)
def test_tor_runs_fastpath_counts_as_failed(ooni: Path, breakage: str):
    m = load(ooni, "odd/tor.json")
    targets = m["test_keys"]["targets"]
    first = next(iter(targets.values()))
    if breakage == "none_ran":
        for target in targets.values():
            target["failure"] = False
    elif breakage == "list":
        m["test_keys"]["targets"] = list(targets.values())
    elif breakage == "empty":
        m["test_keys"]["targets"] = {}
    elif breakage == "no_network_events":
        del first["network_events"]
    else:
        first["failure"] = ""
    assert both_roads(m).verdict == "unknown"


# -- psiphon (no shared example: built from ts-015's documented shape) ----------------------


def psiphon_measurement(**test_keys: Any) -> dict[str, Any]:
    keys = {"bootstrap_time": 6.6, "failure": None, "max_runtime": 60, "queries": None}
    keys.update(test_keys)
    return {
        "data_format_version": "0.3.4",
        "measurement_start_time": "2020-01-11 16:49:24",
        "probe_asn": "AS30722",
        "probe_cc": "IT",
        "report_id": "20200111T164924Z_AS30722_psiphon",
        "resolver_ip": "172.217.34.2",
        "software_name": "miniooni",
        "software_version": "0.1.0-dev",
        "test_name": "psiphon",
        "test_version": "0.3.2",
        "test_keys": keys,
    }


@pytest.mark.parametrize(
    ("keys", "want", "confidence"),
    [
        ({}, "ok", C.NETTEST_OK),
        ({"bootstrap_time": 0, "failure": "generic_timeout_error"}, "blocked", None),
        ({"failure": "eof_error"}, "blocked", C.PSIPHON_USE_FAILED),
        ({"bootstrap_time": 0}, "unknown", C.NONE),
    ],
)
def test_psiphon(keys: dict, want: str, confidence: float | None):
    v = both_roads(psiphon_measurement(**keys))
    assert (v.verdict, v.method, v.target) == (want, None, "psiphon.ca")
    if confidence is not None:
        assert v.confidence == confidence
    else:
        assert v.confidence == C.PSIPHON_BOOTSTRAP_FAILED
        assert "bootstrap failed: generic_timeout_error" in v.evidence[0]


def test_psiphon_without_resolver_ip_is_a_failed_run():
    m = psiphon_measurement(failure="generic_timeout_error")
    del m["resolver_ip"]
    assert both_roads(m).verdict == "unknown"


# -- the bench road -------------------------------------------------------------------------


def test_files_road_gives_the_same_verdicts(ooni: Path, tmp_path: Path):
    from censorwatch.analysis.core import analyze_files
    from censorwatch.analysis.fingerprints import Fingerprints
    from censorwatch.netinfo import AddressPlan

    lines = [json.dumps(load(ooni, name)) for name, _, _ in REAL]
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(lines) + "\n")
    got = [
        r.verdict.verdict for _, r, _ in analyze_files([path], Fingerprints.empty(), AddressPlan())
    ]
    assert got == [want for _, want, _ in REAL]


# -- the platform profiles the targets come from --------------------------------------------


def test_profiles_name_each_tests_platform_and_load():
    from censorwatch.targets import profiles

    assert profiles.nettest_domains() == {
        "whatsapp": "whatsapp.com",
        "telegram": "telegram.org",
        "signal": "signal.org",
        "facebook_messenger": "facebook.com",
        "tor": "torproject.org",
        "psiphon": "psiphon.ca",
    }
    for name in PLATFORM_OF_TEST.values():
        assert profiles.load(name)  # every endpoint is a valid URL
    platforms = load_platforms()
    # The app's own hosts (as web_connectivity measures them) fall into the same platform.
    for host, platform in [
        ("web.telegram.org", "telegram"),
        ("v.whatsapp.net", "whatsapp"),
        ("chat.signal.org", "signal"),
        ("edge-mqtt.facebook.com", "facebook_messenger"),
    ]:
        assert platforms_of(host, platforms) == [platform]
