"""censorwatch's own probe output: SNI retries, duplicate DNS answers, throughput, address plan.

Each measurement here is written in the shape the probe emits (OONI format plus ``x_`` keys),
one per censor method of the testbed, and must get that method.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from censorwatch.analysis import analyze
from censorwatch.netinfo import AddressPlan, ASInfo

X_IP = "198.51.100.10"  # the testbed's X server, in a documentation range
REF_IP = "203.0.113.20"  # a reference host that is no target


@pytest.fixture()
def plan() -> AddressPlan:
    p = AddressPlan()
    p.public_prefixes = [
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("203.0.113.0/24"),
    ]
    p.add_prefix("198.51.100.0/24", ASInfo(13414, "X Corp", "US"))
    p.add_prefix("203.0.113.0/24", ASInfo(64500, "Reference", "US"))
    return p.freeze()


def query(
    host: str, addrs: list[str], failure: str | None = None, resolver: str = "system"
) -> dict[str, Any]:
    """A query as the probe records it: the system resolver's are tagged classic."""
    tags = ["classic", "x_resolver=system"] if resolver == "system" else [f"x_resolver={resolver}"]
    return {
        "hostname": host,
        "engine": "doh" if resolver == "doh" else "udp",
        "failure": failure,
        "query_type": "A",
        "answers": [{"answer_type": "A", "ipv4": a} for a in addrs] or None,
        "tags": tags,
    }


def tcp(
    ip: str, port: int, failure: str | None = None, source: str = "system", probe: str = ""
) -> dict[str, Any]:
    tags = ["tcptls_experiment", f"x_source={source}"]
    if probe:
        tags.append(f"x_sni_probe={probe}")
    return {
        "ip": ip,
        "port": port,
        "status": {"success": failure is None, "failure": failure},
        "tags": tags,
    }


def tls(
    ip: str, sni: str | None, failure: str | None = None, probe: str | None = None
) -> dict[str, Any]:
    tags = ["tcptls_experiment", "x_source=system"]
    if probe:
        tags.append(f"x_sni_probe={probe}")
    return {"address": f"{ip}:443", "server_name": sni or "", "failure": failure, "tags": tags}


def request(
    url: str,
    status: int = 200,
    body: str | None = "<html><title>x.com</title></html>",
    failure: str | None = None,
    truncated: bool = False,
    depth: int = 0,
) -> dict[str, Any]:
    return {
        "tags": [f"depth={depth}"],
        "request": {"url": url, "method": "GET"},
        "response": {
            "code": status,
            "body": body,
            "body_is_truncated": truncated,
            "headers": {"Content-Type": "text/html"},
        },
        "failure": failure,
    }


def control(
    host: str = "x.com", ok: bool = True, addrs: list[str] | None = None, port: int = 443
) -> dict[str, Any]:
    addrs = addrs if addrs is not None else [X_IP]
    fail = None if ok else "connection_refused"
    return {
        "dns": {"failure": None, "addrs": addrs},
        "tcp_connect": {f"{a}:{port}": {"status": ok, "failure": fail} for a in addrs},
        "tls_handshake": {
            f"{a}:443": {"server_name": host, "status": ok, "failure": fail} for a in addrs
        },
        "http_request": {
            "failure": None if ok else "connection_refused_error",
            "status_code": 200 if ok else -1,
            "body_length": 34 if ok else -1,
            "title": "x.com" if ok else "",
            "headers": {"Content-Type": "text/html"},
        },
        "ip_info": {a: {"asn": 13414} for a in addrs},
    }


def measurement(url: str = "https://x.com/", **test_keys: Any) -> dict[str, Any]:
    tk = {
        "queries": [query("x.com", [X_IP])],
        "tcp_connect": [tcp(X_IP, 443)],
        "tls_handshakes": [tls(X_IP, "x.com")],
        "requests": [request(url)],
        "control": control(),
        "control_failure": None,
    }
    tk.update(test_keys)
    return {
        "measurement_start_time": "2024-02-17 20:01:00",
        "probe_asn": "AS17557",
        "probe_cc": "PK",
        "input": url,
        "report_id": "r1",
        "test_name": "web_connectivity",
        "test_version": "0.5.28",
        "software_name": "censorwatch",
        "test_keys": tk,
    }


def verdict(m: dict[str, Any], plan: AddressPlan):
    return analyze(m, plan=plan)


def test_unblocked_network_is_ok(plan):
    v = verdict(measurement(), plan)
    assert (v.verdict, v.method) == ("ok", None)
    assert v.confidence >= 0.9
    assert v.layers.dns == v.layers.tcp == v.layers.tls == v.layers.http == "ok"


def test_down_everywhere_is_down(plan):
    m = measurement(
        tcp_connect=[tcp(X_IP, 443, "connection_refused")],
        tls_handshakes=[],
        requests=[request("https://x.com/", 0, None, "connection_refused")],
        control=control(ok=False),
    )
    v = verdict(m, plan)
    assert (v.verdict, v.layers.tcp) == ("down", "down")


def test_tls_rst_told_from_ip_blocking_by_the_sni_probe(plan):
    m = measurement(
        tls_handshakes=[
            tls(X_IP, "x.com", "connection_reset"),
            tls(X_IP, None, None, probe="none"),
            tls(X_IP, "example.org", None, probe="decoy"),
        ],
        requests=[],
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "tls.reset")
    assert v.evidence[0] == f"tls_handshake {X_IP}:443 sni=x.com: connection_reset"
    assert any("SNI filtering" in e for e in v.evidence)
    sni_confidence = v.confidence

    m["test_keys"]["tls_handshakes"] = [
        tls(X_IP, "x.com", "connection_reset"),
        tls(X_IP, None, "connection_reset", probe="none"),
    ]
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "tls.reset")
    assert any("the address itself is filtered" in e for e in v.evidence)
    assert v.confidence < sni_confidence


def test_tls_drop_is_a_tls_timeout(plan):
    m = measurement(
        tls_handshakes=[
            tls(X_IP, "x.com", "generic_timeout_error"),
            tls(X_IP, None, None, probe="none"),
        ],
        requests=[],
    )
    assert verdict(m, plan).method == "tls.timeout"


def test_tls_mitm(plan):
    for failure in ("ssl_invalid_hostname", "ssl_unknown_authority"):
        m = measurement(tls_handshakes=[tls(X_IP, "x.com", failure)], requests=[])
        v = verdict(m, plan)
        assert (v.verdict, v.method, v.layers.tls) == ("blocked", "tls.mitm", "blocked")


def test_dns_inject_with_duplicate_answers(plan):
    forged = "198.51.100.200"
    plan.add_prefix("198.51.100.200/32", ASInfo(64999, "Censor box", "PK"))
    plan.freeze()
    m = measurement(
        queries=[query("x.com", [forged])],
        x_dns_duplicate_responses=[
            {
                "hostname": "x.com",
                "query_type": "A",
                "resolver_address": "192.0.2.53:53",
                "rcode": "NOERROR",
                "answers": [],
                "addresses": [X_IP],
                "differs": True,
                "engine": "udp",
                "tags": ["x_resolver=system"],
            }
        ],
        tcp_connect=[tcp(forged, 443), tcp(X_IP, 443)],
        tls_handshakes=[tls(forged, "x.com", "ssl_invalid_hostname")],
        requests=[],
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "dns.forged")
    assert v.confidence >= 0.95
    assert any("injected" in e for e in v.evidence)


def test_address_plan_makes_testbed_ranges_public(plan):
    forged = "198.51.100.200"
    plan.add_prefix("198.51.100.200/32", ASInfo(64999, "Censor box", "PK"))
    plan.freeze()
    m = measurement(
        queries=[query("x.com", [forged])],
        tcp_connect=[tcp(forged, 443)],
        tls_handshakes=[tls(forged, "x.com", "ssl_unknown_authority")],
        requests=[],
    )
    assert verdict(m, plan).method == "dns.forged"
    # Without the plan the documentation range is a bogon: the plan is what makes the
    # testbed's addresses public internet.
    assert analyze(m).method == "dns.bogon"
    # A valid certificate from a "private" address proves it is the real server.
    assert analyze(measurement()).verdict == "ok"


def test_dns_bogon_nxdomain_timeout(plan):
    v = verdict(measurement(queries=[query("x.com", ["10.10.34.34"])], requests=[]), plan)
    assert (v.verdict, v.method) == ("blocked", "dns.bogon")
    v = verdict(
        measurement(
            queries=[query("x.com", [], "dns_nxdomain_error")],
            requests=[],
            tcp_connect=[],
            tls_handshakes=[],
        ),
        plan,
    )
    assert (v.verdict, v.method) == ("blocked", "dns.nxdomain")
    m = measurement(
        queries=[
            query("x.com", [], "generic_timeout_error"),
            query("x.com", [X_IP], resolver="doh"),
        ],
        requests=[],
        tcp_connect=[],
        tls_handshakes=[],
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "dns.failure")


def test_tcp_drop_and_rst(plan):
    v = verdict(
        measurement(
            tcp_connect=[tcp(X_IP, 443, "generic_timeout_error")], tls_handshakes=[], requests=[]
        ),
        plan,
    )
    assert (v.verdict, v.method, v.layers.tcp) == ("blocked", "tcp.timeout", "blocked")
    v = verdict(
        measurement(
            tcp_connect=[tcp(X_IP, 443, "connection_refused")], tls_handshakes=[], requests=[]
        ),
        plan,
    )
    assert (v.verdict, v.method) == ("blocked", "tcp.reset")


def test_http_blockpage_and_rst(plan):
    page = (
        "<html><head><title>Blocked</title></head><body><h1>This site has been blocked"
        "</h1><p>Access to this website is blocked by the authority under section 37."
        "</p></body></html>"
    )
    m = measurement(
        "http://x.com/",
        tcp_connect=[tcp(X_IP, 80)],
        requests=[request("http://x.com/", 200, page)],
        control=control(port=80),
    )
    v = verdict(m, plan)
    assert v.verdict == "blocked" and v.method in ("http.blockpage", "http.diff")
    assert v.layers.http == "blocked"
    m = measurement(
        "http://x.com/",
        tcp_connect=[tcp(X_IP, 80)],
        requests=[request("http://x.com/", 0, None, "connection_reset")],
        control=control(port=80),
    )
    assert verdict(m, plan).method == "http.reset"


def test_quic_drop(plan):
    failed = {"address": f"{X_IP}:443", "server_name": "x.com", "failure": "generic_timeout_error"}
    ctrl = control()
    ctrl["quic_handshake"] = {
        f"{X_IP}:443": {"server_name": "x.com", "status": True, "failure": None}
    }
    v = verdict(measurement(quic_handshakes=[failed], control=ctrl), plan)
    assert (v.verdict, v.method) == ("blocked", "quic.blocked")
    assert "control: quic ok" in v.evidence
    # Filed among the TLS handshakes with network "quic": still QUIC, not a TLS failure.
    v = verdict(
        measurement(
            tls_handshakes=[tls(X_IP, "x.com"), failed | {"network": "quic"}], control=ctrl
        ),
        plan,
    )
    assert (v.verdict, v.method) == ("blocked", "quic.blocked")
    # A server not known to speak QUIC: its failing QUIC handshake blocks nothing.
    v = verdict(measurement(quic_handshakes=[failed]), plan)
    assert v.verdict == "ok"
    assert any("not known to speak QUIC" in e for e in v.evidence)


def test_throttling_from_x_throughput(plan):
    slow = {
        "target": {"bytes": 2_000_000, "seconds": 16.0, "bps": 1_000_000},
        "reference": {"bytes": 2_000_000, "seconds": 0.2, "bps": 80_000_000},
    }
    v = verdict(measurement(x_throughput=slow), plan)
    assert (v.verdict, v.method) == ("blocked", "throttled")
    assert "ratio 0.01" in v.evidence[0]
    fair = {
        "target": {"bytes": 2_000_000, "seconds": 0.3, "bps": 53_000_000},
        "reference": {"bytes": 2_000_000, "seconds": 0.2, "bps": 80_000_000},
    }
    assert verdict(measurement(x_throughput=fair), plan).verdict == "ok"


def test_throttling_from_network_events(plan):
    events = [
        {
            "operation": "bytes_received_cumulative",
            "num_bytes": n,
            "t": t,
            "tags": [f"x_throughput={which}"],
        }
        for which, points in (
            ("target", [(0.0, 0), (8.0, 1_000_000)]),
            ("reference", [(0.0, 0), (0.1, 1_000_000)]),
        )
        for t, n in points
    ]
    v = verdict(measurement(network_events=events), plan)
    assert (v.verdict, v.method) == ("blocked", "throttled")


def test_probe_network_down_is_unknown_not_blocked(plan):
    m = measurement(
        queries=[
            query("x.com", [], "generic_timeout_error"),
            query("x.com", [], "generic_timeout_error", resolver="doh"),
        ],
        tcp_connect=[],
        tls_handshakes=[],
        requests=[],
        control=None,
        control_failure="generic_timeout_error",
    )
    v = verdict(m, plan)
    assert v.verdict == "unknown"
    assert any("own network" in e for e in v.evidence)


def test_system_resolver_decides_not_the_public_one(plan):
    """NXDOMAIN from the ISP's resolver while a public resolver answers: blocked, dns.nxdomain."""
    m = measurement(
        queries=[
            query("x.com", [], "dns_nxdomain_error"),
            query("x.com", [X_IP], resolver="udp"),
            query("x.com", [X_IP], resolver="doh"),
        ],
        tcp_connect=[tcp(X_IP, 443, source="udp")],
        tls_handshakes=[],
        requests=[],
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "dns.nxdomain")
    assert v.evidence[0] == "dns x.com: dns_nxdomain_error"


def test_sni_retry_connections_do_not_count_as_the_connection(plan):
    m = measurement(
        tcp_connect=[tcp(X_IP, 443, "generic_timeout_error"), tcp(X_IP, 443, probe="decoy")],
        tls_handshakes=[],
        requests=[],
    )
    assert verdict(m, plan).method == "tcp.timeout"


def test_identical_duplicate_answers_are_not_injection(plan):
    dup = {"hostname": "x.com", "addresses": [X_IP, "198.51.100.11"], "differs": False}
    assert verdict(measurement(x_dns_duplicate_responses=[dup]), plan).verdict == "ok"


def test_redirect_to_a_host_whose_lookup_fails(plan):
    """The probe resolves redirect targets inside the HTTP step (no depth tags on DNS)."""
    m = measurement(
        "https://t.co/abc",
        queries=[query("t.co", [X_IP])],
        tls_handshakes=[tls(X_IP, "t.co")],
        requests=[
            request("https://x.com/", 0, None, "dns_nxdomain_error", depth=1),
            request("https://t.co/abc", 301, ""),
        ],
        control=control("t.co"),
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "dns.nxdomain")


def test_throughput_summary_as_the_probe_writes_it(plan):
    summary = {
        "target": {
            "url": "https://video.twimg.com/large.bin",
            "address": X_IP + ":443",
            "bytes": 640_000,
            "seconds": 5.0,
            "bps": 1_024_000,
            "status_code": 200,
            "failure": None,
        },
        "reference": {
            "url": "https://reference.example/large.bin",
            "address": REF_IP + ":443",
            "bytes": 8_000_000,
            "seconds": 0.4,
            "bps": 160_000_000,
            "status_code": 200,
            "failure": None,
        },
        "ratio": 0.0064,
    }
    v = verdict(measurement(x_throughput=summary), plan)
    assert (v.verdict, v.method, v.layers.http) == ("blocked", "throttled", "blocked")
    summary["reference"] = None  # no reference host: a slow network cannot be ruled out
    assert verdict(measurement(x_throughput=summary), plan).verdict == "ok"


def test_nothing_arrives_while_the_reference_flows(plan):
    """Seen in the testbed at 1 Mbit/s: the large object gets 0 bytes in the 4 s budget."""
    summary = {
        "target": {"bytes": 0, "seconds": 4.0, "bps": 0.0, "failure": "generic_timeout_error"},
        "reference": {"bytes": 2_097_152, "seconds": 0.04, "bps": 459e6, "failure": None},
    }
    v = verdict(measurement(x_throughput=summary), plan)
    assert (v.verdict, v.method) == ("blocked", "throttled")
    summary["target"]["failure"] = "connection_reset"  # not a rate: no throttling verdict
    assert verdict(measurement(x_throughput=summary), plan).verdict == "ok"


def test_without_a_control_doh_is_the_reference(plan):
    forged = "198.51.100.200"
    plan.add_prefix("198.51.100.200/32", ASInfo(64999, "Censor box", "PK"))
    plan.freeze()
    m = measurement(
        queries=[query("x.com", [forged]), query("x.com", [X_IP], resolver="doh")],
        tcp_connect=[tcp(forged, 443)],
        tls_handshakes=[tls(forged, "x.com", "ssl_unknown_authority")],
        requests=[],
        control=None,
        control_failure="connection_refused",
    )
    v = verdict(m, plan)
    assert (v.verdict, v.method) == ("blocked", "dns.forged")
    assert v.confidence < 0.8
    # The same answer as DoH: nothing to say about DNS without a control.
    m["test_keys"]["queries"] = [query("x.com", [X_IP]), query("x.com", [X_IP], resolver="doh")]
    m["test_keys"]["tcp_connect"] = [tcp(X_IP, 443)]
    m["test_keys"]["tls_handshakes"] = [tls(X_IP, "x.com")]
    m["test_keys"]["requests"] = [request("https://x.com/")]
    v = verdict(m, plan)
    assert v.verdict == "ok" and v.confidence <= 0.75


def test_fast_transfers_are_not_throttled_whatever_the_ratio(plan):
    """Seen in the demo under load: 330 Mbit/s against 1.5 Gbit/s is noise, not throttling."""
    summary = {
        "target": {"bytes": 2_097_152, "seconds": 0.05, "bps": 330e6, "failure": None},
        "reference": {"bytes": 2_097_152, "seconds": 0.01, "bps": 1_470e6, "failure": None},
    }
    assert verdict(measurement(x_throughput=summary), plan).verdict == "ok"
    slow = {
        **summary,
        "target": {
            "bytes": 262_144,
            "seconds": 4.0,
            "bps": 0.5e6,
            "failure": "generic_timeout_error",
        },
    }
    assert verdict(measurement(x_throughput=slow), plan).method == "throttled"
