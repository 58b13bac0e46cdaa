"""Verdicts on the emulated censored network: every censor method gives its method.

Every network is probed at once (each from its own namespace, through ``testbed exec``, the way
a user does it); then each test reads the raw measurement — which step failed, and how — and
the verdict the analysis draws from it.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from censorwatch.analysis import analyze
from censorwatch.netinfo import AddressPlan
from censorwatch.testbed import plan as planmod
from testbed_support import METHOD_NETWORKS, OPEN, methods_scenario, running_testbed

pytestmark = pytest.mark.netns

FAST = [
    "--connect-timeout",
    "2",
    "--tls-timeout",
    "2",
    "--dns-timeout",
    "3",
    "--http-timeout",
    "4",
    "--url-deadline",
    "20",
]

# What each network's probe measures.
RUNS: dict[str, list[str]] = {
    asn: ["--url", "https://x.com/", "--url", "http://x.com/"]
    for method, asn in METHOD_NETWORKS.items()
    if method != "throttle"
}
RUNS[METHOD_NETWORKS["throttle"]] = ["--url", "https://video.twimg.com/", "--throughput"]
RUNS[OPEN] = [
    "--url",
    "https://x.com/",
    "--url",
    "http://x.com/",
    "--url",
    "https://down.example/",
    "--url",
    "https://video.twimg.com/",
    "--throughput",
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("verdicts-testbed")
    scenario = folder / "every-method.toml"
    scenario.write_text(methods_scenario())
    with running_testbed(scenario, "cwverd") as tb:
        procs = {}
        for asn, args in RUNS.items():
            out = folder / f"{asn}.jsonl"
            cmd = tb.exec_command(asn, "censorwatch", "probe", *args, *FAST, "--output", str(out))
            procs[asn] = (
                out,
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            )
        results: dict[tuple[str, str], dict] = {}
        for asn, (out, proc) in procs.items():
            _, stderr = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"probe on {asn} failed: {stderr[-2000:]}"
            for line in out.read_text().splitlines():
                m = json.loads(line)
                results[(asn, m["input"])] = m
        plan = AddressPlan.load(tb.state.address_plan_file)
        yield {
            "tb": tb,
            "m": results,
            "plan": plan,
            "text": {k: json.dumps(v) for k, v in results.items()},
        }


def m_of(measured: dict, method_or_asn: str, url: str) -> dict:
    asn = METHOD_NETWORKS.get(method_or_asn, method_or_asn)
    return measured["m"][(asn, url)]


def verdict(measured: dict, method_or_asn: str, url: str):
    return analyze(m_of(measured, method_or_asn, url), plan=measured["plan"])


def queries(m: dict, resolver: str) -> list[dict]:
    """The IPv4 lookups asked of ``resolver``: the system lookup (recorded as OONI's probes
    record it, ``getaddrinfo``, its resolver in ``x_resolvers``) or a query of type A."""
    system = m["test_keys"]["x_resolvers"].get("system", "")
    return [
        q
        for q in m["test_keys"]["queries"] or []
        if q["query_type"] in ("A", "ANY")
        and (system if q["engine"] == "getaddrinfo" else q["resolver_address"]).startswith(resolver)
    ]


def handshakes(m: dict, sni: str | None) -> list[dict]:
    return [h for h in m["test_keys"]["tls_handshakes"] or [] if h.get("server_name") == sni]


def test_unblocked_network_every_step_succeeds(measured: dict) -> None:
    m = m_of(measured, OPEN, "https://x.com/")
    tk = m["test_keys"]
    x_queries = [
        q for q in tk["queries"] if q["query_type"] in ("A", "ANY") and q["hostname"] == "x.com"
    ]
    engines = {(q["engine"], q["resolver_address"]) for q in x_queries}
    assert {e for e, _ in engines} == {"getaddrinfo", "udp", "doh"} and len(engines) >= 3, engines
    assert all(q["failure"] is None for q in x_queries)
    assert {a["asn"] for q in x_queries for a in q["answers"] if a.get("ipv4")} == {13414}
    assert tk["tcp_connect"] and all(c["status"]["success"] for c in tk["tcp_connect"])
    assert handshakes(m, "x.com") and all(h["failure"] is None for h in handshakes(m, "x.com"))
    assert tk["requests"][0]["response"]["code"] == 200
    assert tk["control"]["http_request"]["status_code"] == 200
    assert m["probe_asn"] == OPEN and m["probe_cc"] == "PK"
    for url in ("https://x.com/", "http://x.com/"):
        assert verdict(measured, OPEN, url).verdict == "ok"


def test_probe_ip_appears_nowhere(measured: dict) -> None:
    for (asn, _), text in measured["text"].items():
        probe_ip = measured["tb"].plan.network(asn).probe_ip
        assert probe_ip not in text, f"{asn}'s probe address leaked into its measurement"


def test_down_everywhere_is_down_not_blocked(measured: dict) -> None:
    m = m_of(measured, OPEN, "https://down.example/")
    failures = {c["status"]["failure"] for c in m["test_keys"]["tcp_connect"]}
    assert failures == {"connection_refused"}
    v = verdict(measured, OPEN, "https://down.example/")
    assert v.verdict == "down", v


def test_dns_nxdomain(measured: dict) -> None:
    m = m_of(measured, "dns-nxdomain", "https://x.com/")
    isp = measured["tb"].plan.network(METHOD_NETWORKS["dns-nxdomain"]).censor_lan_ip
    assert [q["failure"] for q in queries(m, isp)] == ["dns_nxdomain_error"]
    assert queries(m, planmod.PUBLIC_RESOLVER)[0]["failure"] is None
    v = verdict(measured, "dns-nxdomain", "https://x.com/")
    assert (v.verdict, v.method, v.layers.dns) == ("blocked", "dns.nxdomain", "blocked"), v


def test_dns_bogon(measured: dict) -> None:
    m = m_of(measured, "dns-bogon", "https://x.com/")
    isp = measured["tb"].plan.network(METHOD_NETWORKS["dns-bogon"]).censor_lan_ip
    answers = queries(m, isp)[0]["answers"]
    assert [a["ipv4"] for a in answers if a["answer_type"] == "A"] == [planmod.BOGON_ANSWER]
    v = verdict(measured, "dns-bogon", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "dns.bogon"), v


def test_dns_inject(measured: dict) -> None:
    m = m_of(measured, "dns-inject", "https://x.com/")
    wan = measured["tb"].plan.network(METHOD_NETWORKS["dns-inject"]).censor_wan_ip
    public = queries(m, planmod.PUBLIC_RESOLVER)[0]
    assert [a["ipv4"] for a in public["answers"]] == [wan], "the forged answer wins the race"
    assert m["test_keys"]["x_dns_duplicate_responses"], "the real answer arrives after it"
    v = verdict(measured, "dns-inject", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "dns.forged"), v


def test_dns_timeout(measured: dict) -> None:
    m = m_of(measured, "dns-timeout", "https://x.com/")
    udp = [
        q
        for q in m["test_keys"]["queries"]
        if q["engine"] in ("udp", "getaddrinfo") and q["query_type"] in ("A", "ANY")
    ]
    assert len(udp) == 2 and all(q["failure"] == "generic_timeout_error" for q in udp)
    doh = [q for q in m["test_keys"]["queries"] if q["engine"] == "doh" and q["query_type"] == "A"]
    assert doh and doh[0]["failure"] is None, "DNS over HTTPS still answers"
    v = verdict(measured, "dns-timeout", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "dns.failure"), v


def test_tcp_drop(measured: dict) -> None:
    m = m_of(measured, "tcp-drop", "https://x.com/")
    assert {c["status"]["failure"] for c in m["test_keys"]["tcp_connect"]} == {
        "generic_timeout_error"
    }
    assert all(s["status"] for s in m["test_keys"]["control"]["tcp_connect"].values())
    v = verdict(measured, "tcp-drop", "https://x.com/")
    assert (v.verdict, v.method, v.layers.tcp) == ("blocked", "tcp.timeout", "blocked"), v


def test_tcp_rst(measured: dict) -> None:
    m = m_of(measured, "tcp-rst", "https://x.com/")
    assert {c["status"]["failure"] for c in m["test_keys"]["tcp_connect"]} == {"connection_refused"}
    v = verdict(measured, "tcp-rst", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "tcp.reset"), v


def test_tls_rst_is_sni_based(measured: dict) -> None:
    m = m_of(measured, "tls-rst", "https://x.com/")
    assert all(c["status"]["success"] for c in m["test_keys"]["tcp_connect"])
    assert {h["failure"] for h in handshakes(m, "x.com")} == {"connection_reset"}
    no_sni = [h for h in m["test_keys"]["tls_handshakes"] if "x_sni_probe=none" in h["tags"]]
    assert no_sni and all(h["failure"] is None for h in no_sni), "same address, no SNI: fine"
    v = verdict(measured, "tls-rst", "https://x.com/")
    assert (v.verdict, v.method, v.layers.tls) == ("blocked", "tls.reset", "blocked"), v


def test_tls_drop(measured: dict) -> None:
    m = m_of(measured, "tls-drop", "https://x.com/")
    assert {h["failure"] for h in handshakes(m, "x.com")} == {"generic_timeout_error"}
    v = verdict(measured, "tls-drop", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "tls.timeout"), v


def test_tls_mitm(measured: dict) -> None:
    m = m_of(measured, "tls-mitm", "https://x.com/")
    hs = handshakes(m, "x.com")
    assert {h["failure"] for h in hs} == {"ssl_unknown_authority"}
    assert hs[0]["peer_certificates"], "the forged certificate is kept as evidence"
    v = verdict(measured, "tls-mitm", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "tls.mitm"), v


def test_http_blockpage(measured: dict) -> None:
    m = m_of(measured, "http-blockpage", "http://x.com/")
    response = m["test_keys"]["requests"][0]["response"]
    assert response["code"] == 200 and "blocked" in str(response["body"]).lower()
    assert "blocked" not in str(m["test_keys"]["control"]["http_request"]["title"]).lower()
    v = verdict(measured, "http-blockpage", "http://x.com/")
    assert (v.verdict, v.method, v.layers.http) == ("blocked", "http.blockpage", "blocked"), v
    assert verdict(measured, "http-blockpage", "https://x.com/").verdict == "ok"


def test_http_rst(measured: dict) -> None:
    m = m_of(measured, "http-rst", "http://x.com/")
    assert m["test_keys"]["requests"][0]["failure"] == "connection_reset"
    v = verdict(measured, "http-rst", "http://x.com/")
    assert (v.verdict, v.method) == ("blocked", "http.reset"), v


def test_quic_drop(measured: dict) -> None:
    m = m_of(measured, "quic-drop", "https://x.com/")
    quic = m["test_keys"].get("quic_handshakes") or []
    assert quic and {h["failure"] for h in quic} == {"generic_timeout_error"}
    assert m["test_keys"]["control"]["quic_handshake"], "the control reached it over QUIC"
    open_quic = m_of(measured, OPEN, "https://x.com/")["test_keys"].get("quic_handshakes")
    assert open_quic and all(h["failure"] is None for h in open_quic)
    v = verdict(measured, "quic-drop", "https://x.com/")
    assert (v.verdict, v.method) == ("blocked", "quic.blocked"), v


def test_throttle(measured: dict) -> None:
    m = m_of(measured, "throttle", "https://video.twimg.com/")
    tp = m["test_keys"]["x_throughput"]
    assert tp["target"]["bps"] < 2_000_000 < tp["reference"]["bps"], tp
    assert len(tp["target"]["samples"]) >= 3 and tp["reference"]["samples"][-1][1] > 0
    v = verdict(measured, "throttle", "https://video.twimg.com/")
    assert (v.verdict, v.method) == ("blocked", "throttled"), v
    open_v = verdict(measured, OPEN, "https://video.twimg.com/")
    assert open_v.verdict == "ok", open_v
