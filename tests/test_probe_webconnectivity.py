"""End-to-end web_connectivity measurements against real servers on 127.77.0.0/16.

The probe asks a censoring "system" resolver, a clean public resolver and DoH; the control
service runs for real (uvicorn) and resolves through the clean resolver.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import probe_loopback as pl
from censorwatch import failures
from censorwatch.analysis import analyze
from censorwatch.control.server import BackgroundServer
from censorwatch.model import derive_measurement_uid
from censorwatch.netinfo import AddressPlan, ASInfo
from censorwatch.probe.webconnectivity import WebConnectivity
from censorwatch.targets import Target

pytestmark = pytest.mark.timeout(60)
WC05 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ooni" / "wc05_qa"


def measure(
    net: pl.Internet,
    url: str,
    control_url: str | None,
    media: bool = False,
    plan: AddressPlan | None = None,
    **budgets: Any,
) -> dict[str, Any]:
    config = pl.probe_config(net, control_url, **budgets)
    if plan is not None:
        config.plan = plan
    probe = WebConnectivity(config)
    return asyncio.run(probe.measure(Target(url, media=media)))


def by_tag(entries: list[dict[str, Any]] | None, tag: str) -> list[dict[str, Any]]:
    return [e for e in entries or [] if tag in e["tags"]]


def main_handshakes(tk: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in tk["tls_handshakes"] or [] if not any("x_sni_probe" in t for t in h["tags"])]


def test_success_is_a_complete_ooni_measurement(net: pl.Internet, control: BackgroundServer):
    m = measure(net, net.https("site.test"), control.url)
    tk = m["test_keys"]
    reference = json.loads((WC05 / "successWithHTTPS.json").read_text())
    assert set(reference) - {"report_id"} <= set(m)
    assert set(reference["test_keys"]) <= set(tk)
    assert m["test_name"] == "web_connectivity" and m["software_name"] == "censorwatch"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", m["measurement_start_time"])
    assert m["probe_ip"] == "127.0.0.1" and m["probe_asn"] == "AS64500"
    body = {k: v for k, v in m.items() if k != "measurement_uid"}
    assert m["measurement_uid"] == derive_measurement_uid(body)
    # DNS: the system lookup as OONI's probes record it (one getaddrinfo lookup of both
    # families), then a public UDP resolver and DoH, A and AAAA each
    engines = sorted((q["engine"], q["query_type"]) for q in tk["queries"])
    assert engines == sorted(
        [("getaddrinfo", "ANY"), ("udp", "A"), ("udp", "AAAA"), ("doh", "A"), ("doh", "AAAA")]
    )
    a_answers = [q for q in tk["queries"] if q["query_type"] in ("A", "ANY")]
    assert all(q["failure"] is None for q in a_answers)
    assert all(q["answers"][0]["ipv4"] == pl.WEB for q in a_answers)
    (system,) = by_tag(tk["queries"], "classic")
    assert system["resolver_address"] == "" and system["rcode"] is None
    assert tk["x_resolvers"]["system"].startswith(pl.SYSTEM_DNS)
    assert [r["query_type"] for r in system["x_raw_responses"]] == ["A", "AAAA"]
    assert all(isinstance(q["rcode"], int) for q in tk["queries"] if q["engine"] != "getaddrinfo")
    # TCP, TLS with the certificate chain, HTTP
    assert [c["status"]["success"] for c in tk["tcp_connect"]] == [True]
    (hs,) = tk["tls_handshakes"]
    assert hs["failure"] is None and hs["server_name"] == "site.test"
    assert hs["tls_version"].startswith("TLSv1.")
    leaf = x509.load_der_x509_certificate(base64.b64decode(hs["peer_certificates"][0]["data"]))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "site.test" in san.get_values_for_type(x509.DNSName)
    (req,) = tk["requests"]
    assert req["failure"] is None and req["response"]["code"] == 200
    assert "Welcome to the test site" in req["response"]["body"]
    # QUIC to the same address and port, beside TLS over TCP
    (q,) = tk["quic_handshakes"]
    assert q["network"] == "quic" and q["failure"] is None and q["negotiated_protocol"] == "h3"
    assert q["address"] == hs["address"] and q["peer_certificates"]
    # control, same shape as OONI's
    ctrl = tk["control"]
    assert set(ctrl) == set(reference["test_keys"]["control"])
    assert tk["x_control_request"]["x_quic_enabled"] is True
    assert ctrl["quic_handshake"][hs["address"]]["status"] is True
    assert ctrl["http_request"]["title"] == "Welcome to the test site"
    assert tk["x_control_request"]["tcp_connect"] == [f"{pl.WEB}:{net.https_port}"]
    assert tk["control_failure"] is None
    assert tk["dns_consistency"] == "consistent"
    assert tk["blocking"] is False and tk["accessible"] is True
    assert tk["x_blocking_flags"] == 32


def test_redirect_from_http_to_https(net: pl.Internet, control: BackgroundServer):
    tk = measure(net, net.http("redirect.test"), control.url)["test_keys"]
    assert [r["request"]["url"] for r in tk["requests"]] == [
        net.https("site.test"),
        net.http("redirect.test"),
    ]
    assert [r["response"]["code"] for r in tk["requests"]] == [200, 302]
    assert tk["accessible"] is True


def test_more_than_ten_redirects(net: pl.Internet, control: BackgroundServer):
    tk = measure(net, net.https("loop.test", "/loop/0"), control.url)["test_keys"]
    assert len(tk["requests"]) == 11
    assert tk["http_experiment_failure"] == failures.HTTP_TOO_MANY_REDIRECTS


def test_nxdomain_everywhere_is_a_site_that_is_down(net: pl.Internet, control: BackgroundServer):
    tk = measure(net, net.https("nx.test"), control.url)["test_keys"]
    assert tk["dns_experiment_failure"] == failures.DNS_NXDOMAIN
    assert {q["failure"] for q in tk["queries"]} == {failures.DNS_NXDOMAIN}
    # df-002: the response code is an integer (3, NXDOMAIN)
    assert {q["rcode"] for q in tk["queries"] if q["engine"] != "getaddrinfo"} == {3}
    (system,) = by_tag(tk["queries"], "classic")
    assert {r["rcode"] for r in system["x_raw_responses"]} == {3}
    assert tk["control"]["dns"]["failure"] == "dns_name_error"
    assert tk["tcp_connect"] is None
    assert tk["dns_consistency"] == "consistent"
    assert tk["blocking"] is False and tk["accessible"] is False


def test_nxdomain_from_the_system_resolver_only_is_dns_blocking(
    net: pl.Internet, control: BackgroundServer
):
    tk = measure(net, net.https("censored.test"), control.url)["test_keys"]
    system = by_tag(tk["queries"], "x_resolver=system")
    public = by_tag(tk["queries"], "x_resolver=udp") + by_tag(tk["queries"], "x_resolver=doh")
    assert {q["failure"] for q in system} == {failures.DNS_NXDOMAIN}
    assert {a["ipv4"] for q in public for a in q["answers"] or []} == {pl.WEB}
    # the address only the other resolvers knew is still measured, and works
    assert by_tag(tk["tcp_connect"], "x_source=udp")[0]["status"]["success"] is True
    assert tk["dns_consistency"] == "inconsistent"
    assert tk["blocking"] == "dns" and tk["accessible"] is False


@pytest.mark.slow
def test_injected_answer_racing_the_real_one_is_recorded(
    net: pl.Internet, control: BackgroundServer
):
    tk = measure(net, net.https("inject.test"), control.url)["test_keys"]
    (system_a,) = by_tag(tk["queries"], "x_resolver=system")
    assert [a["ipv4"] for a in system_a["answers"] if a["answer_type"] == "A"] == [pl.BOGON]
    (late,) = tk["x_dns_duplicate_responses"]
    assert late["addresses"] == [pl.WEB] and late["differs"] is True
    assert late["t"] > system_a["t"]
    assert tk["blocking"] == "dns"


@pytest.mark.slow
def test_a_late_real_answer_is_heard_while_the_measurement_goes_on(
    net: pl.Internet, control: BackgroundServer
):
    # the real answer comes 0.8 s after the forged one: the probe does not wait for it
    # before connecting, yet still records it (the grace is long so that a fast flow on
    # loopback cannot end before the answer comes)
    url = net.https("lateinject.test")
    tk = measure(net, url, control.url, dns_duplicate_window=2.0, dns_late_grace=2.0)
    tk = tk["test_keys"]
    (system,) = by_tag(tk["queries"], "x_resolver=system")
    (late,) = tk["x_dns_duplicate_responses"]
    assert late["addresses"] == [pl.WEB] and late["differs"] is True
    assert late["t"] - system["t"] >= 0.7
    first_connect = min(c["t0"] for c in tk["tcp_connect"])
    assert first_connect < late["t"]


@pytest.mark.slow
def test_answer_pointing_at_another_public_host_is_inconsistent(
    net: pl.Internet, control: BackgroundServer
):
    # every 127.77/16 address counts as public, in two different ASes: the forged answer is no
    # bogon, so only the failed handshake there (and the other resolvers) expose it
    plan = AddressPlan(public_prefixes=[ipaddress.ip_network("127.77.0.0/16")])
    plan.add_prefix(f"{pl.WEB}/32", ASInfo(13414, "X Corp"))
    plan.add_prefix(f"{pl.GARBAGE}/32", ASInfo(64512, "Somewhere Else"))
    url = f"https://hijack.test:{net.https_port}/"
    tk = measure(net, url, control.url, plan=plan.freeze())["test_keys"]
    (system_a,) = by_tag(tk["queries"], "classic")
    assert system_a["answers"][0]["ipv4"] == pl.GARBAGE
    assert system_a["answers"][0]["asn"] == 64512
    assert by_tag(tk["tls_handshakes"], "x_source=udp")[0]["failure"] is None
    assert tk["dns_consistency"] == "inconsistent"
    assert tk["blocking"] == "dns"


@pytest.mark.slow
def test_dns_timeout(net: pl.Internet, control: BackgroundServer):
    started = time.monotonic()
    tk = measure(net, net.https("dnsto.test"), control.url)["test_keys"]
    system = by_tag(tk["queries"], "x_resolver=system")
    assert {q["failure"] for q in system} == {failures.GENERIC_TIMEOUT}
    assert all(0.9 < q["t"] - q["t0"] < 2.0 for q in system)
    assert tk["dns_experiment_failure"] == failures.GENERIC_TIMEOUT
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("host", "port_attr", "failure"),
    [
        ("refused.test", "https_port", failures.CONNECTION_REFUSED),
        ("drop.test", "drop_port", failures.GENERIC_TIMEOUT),
    ],
)
@pytest.mark.slow
def test_tcp_failures(
    net: pl.Internet, control: BackgroundServer, host: str, port_attr: str, failure: str
):
    url = f"https://{host}:{getattr(net, port_attr)}/"
    tk = measure(net, url, control.url)["test_keys"]
    assert {c["status"]["failure"] for c in tk["tcp_connect"]} == {failure}
    assert tk["tls_handshakes"] is None
    assert tk["http_experiment_failure"] == failure
    if failure == failures.GENERIC_TIMEOUT:
        assert all(0.9 < c["t"] - c["t0"] < 2.0 for c in tk["tcp_connect"])


@pytest.mark.parametrize(
    ("host", "failure", "leaf_name"),
    [
        ("wrong.test", failures.SSL_INVALID_HOSTNAME, "unrelated.test"),
        ("rogue.test", failures.SSL_UNKNOWN_AUTHORITY, "rogue.test"),
    ],
)
def test_bad_certificates_fail_and_are_recorded(
    net: pl.Internet, control: BackgroundServer, host: str, failure: str, leaf_name: str
):
    tk = measure(net, net.https(host), control.url)["test_keys"]
    (hs,) = main_handshakes(tk)
    assert hs["failure"] == failure
    leaf = x509.load_der_x509_certificate(base64.b64decode(hs["peer_certificates"][0]["data"]))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert leaf_name in san.get_values_for_type(x509.DNSName)
    assert tk["http_experiment_failure"] == failure
    assert tk["control"]["tls_handshake"][hs["address"]]["failure"] == failure


@pytest.mark.slow
def test_sni_filtering_is_told_from_ip_blocking(net: pl.Internet, control: BackgroundServer):
    url = f"https://blocked.test:{net.proxy_port}/"
    tk = measure(net, url, control.url)["test_keys"]
    (real,) = main_handshakes(tk)
    assert real["failure"] == failures.CONNECTION_RESET and real["server_name"] == "blocked.test"
    (none,) = by_tag(tk["tls_handshakes"], "x_sni_probe=none")
    (decoy,) = by_tag(tk["tls_handshakes"], "x_sni_probe=decoy")
    assert none["failure"] is None and none["server_name"] == ""
    assert decoy["failure"] is None and decoy["server_name"] == "example.org"
    # without SNI the same address serves a certificate valid for the blocked name
    assert none["x_certificate_valid_for_host"] is True
    assert none["address"] == real["address"] == decoy["address"]
    assert tk["http_experiment_failure"] == failures.CONNECTION_RESET
    # nothing answers UDP there, as when a censor drops QUIC
    assert {q["failure"] for q in tk["quic_handshakes"]} == {failures.GENERIC_TIMEOUT}


def test_quic_can_be_switched_off(net: pl.Internet, control: BackgroundServer):
    config = pl.probe_config(net, control.url)
    config.quic = False
    tk = asyncio.run(WebConnectivity(config).measure(Target(net.https("site.test"))))["test_keys"]
    assert tk["quic_handshakes"] is None
    assert tk["x_control_request"]["x_quic_enabled"] is False
    assert tk["control"]["quic_handshake"] == {}


def test_probe_address_is_scrubbed(net: pl.Internet, control: BackgroundServer):
    m = measure(net, net.http("echo.test", "/echo"), control.url)
    response = m["test_keys"]["requests"][0]["response"]
    assert response["body"].endswith("you are [scrubbed]</html>")
    assert response["headers"]["X-Client-IP"] == "[scrubbed]"
    text = json.dumps(m)
    assert text.count("127.0.0.1") == 1  # probe_ip, OONI's placeholder
    assert m["probe_ip"] == "127.0.0.1"


def test_throughput_of_a_media_host_and_the_reference(net: pl.Internet, control: BackgroundServer):
    tk = measure(net, net.https("media.test"), control.url, media=True)["test_keys"]
    summary = tk["x_throughput"]
    assert summary["target"]["bytes"] == pl.THROUGHPUT_SIZE
    assert summary["reference"]["bytes"] == pl.THROUGHPUT_SIZE
    assert summary["target"]["failure"] is None and summary["target"]["bps"] > 0
    # the samples live under x_throughput: df-008 has no operation for them
    assert tk["network_events"] is None
    for which in ("target", "reference"):
        times = [t for t, _ in summary[which]["samples"]]
        series = [n for _, n in summary[which]["samples"]]
        assert times == sorted(times)
        assert series == sorted(series) and series[-1] == pl.THROUGHPUT_SIZE
    # the downloads' own lookups (the reference host's) are not the measurement's queries
    assert {q["hostname"] for q in tk["queries"]} == {"media.test"}


@pytest.mark.slow
def test_throttled_host_is_slower_than_the_reference(net: pl.Internet):
    started = time.monotonic()
    tk = measure(net, net.https("slow.test"), None, media=True, throughput_seconds=1.0)["test_keys"]
    summary = tk["x_throughput"]
    assert 0 < summary["target"]["bytes"] < pl.THROUGHPUT_SIZE  # cut by the time budget
    assert summary["target"]["seconds"] < 1.5
    assert summary["ratio"] < 0.2
    assert len(summary["target"]["samples"]) >= 5
    # slow twice: the second pair confirmed the first, and the kinder one is reported
    rounds = summary["rounds"]
    assert len(rounds) == 2 and all(r["target"]["bps"] < r["reference"]["bps"] / 5 for r in rounds)
    best = max(r["target"]["bps"] / r["reference"]["bps"] for r in rounds)
    assert summary["ratio"] == round(best, 4)
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_one_stalled_transfer_is_measured_again_and_not_called_throttled(
    net: pl.Internet, control: BackgroundServer
):
    m = measure(net, net.https("stall.test"), control.url, media=True, throughput_seconds=1.0)
    summary = m["test_keys"]["x_throughput"]
    first, second = summary["rounds"]
    assert first["target"]["bps"] < first["reference"]["bps"] / 5  # the stall
    assert second["target"]["bytes"] == pl.THROUGHPUT_SIZE  # then the whole object
    assert summary["target"] == second["target"] and summary["ratio"] > 0.5
    verdict = analyze(m)
    assert verdict.method != "throttled" and verdict.layers.http != "throttled", verdict


def test_a_fast_target_is_measured_once(net: pl.Internet, control: BackgroundServer):
    summary = measure(net, net.https("media.test"), control.url, media=True)["test_keys"][
        "x_throughput"
    ]
    assert "rounds" not in summary and summary["ratio"] > 0.5


def test_without_control_the_failure_is_recorded(net: pl.Internet):
    tk = measure(net, net.https("site.test"), None)["test_keys"]
    assert tk["control_failure"] == failures.CONTROL_NOT_CONFIGURED
    assert tk["control"] is None and tk["blocking"] is None
    assert tk["requests"][0]["response"]["code"] == 200


def test_unreachable_control(net: pl.Internet):
    url = f"http://{pl.REFUSED}:{net.https_port}/"
    tk = measure(net, net.https("site.test"), url)["test_keys"]
    assert tk["control_failure"] == failures.CONNECTION_REFUSED
    assert tk["x_control_request"]["http_request"] == net.https("site.test")


@pytest.mark.slow
def test_url_deadline_bounds_everything(net: pl.Internet):
    started = time.monotonic()
    url = f"https://silent.test:{net.silent_port}/"
    m = measure(net, url, None, url_deadline=1.5, tls_timeout=5.0, http_timeout=5.0)
    elapsed = time.monotonic() - started
    assert m["test_keys"]["x_deadline_exceeded"] is True
    assert elapsed < 3.0
    assert m["test_runtime"] < 2.5
