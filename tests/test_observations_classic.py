"""OONI's classic summary keys computed from observations (``analysis.classic``): which
addresses count as the probe's, and how DNS, TCP, TLS and HTTP outcomes become ``blocking``."""

from __future__ import annotations

from typing import Any

import msgspec

from censorwatch.analysis.classic import (
    FLAG_DNS,
    FLAG_HTTP_DIFF,
    FLAG_SUCCESS,
    FLAG_TCP,
    FLAG_TLS,
    classic_keys,
    probe_addresses,
)
from censorwatch.netinfo import AddressPlan, ASInfo
from censorwatch.observations.builder import observe
from censorwatch.observations.schema import TestKeysView

SITE = "93.184.216.34"
MIRROR = "93.184.216.35"  # the same AS as SITE, another address
ELSEWHERE = "151.101.1.1"
PAGE = "<html><head><title>Example Domain</title></head><body>hello</body></html>"


def _plan() -> AddressPlan:
    plan = AddressPlan()
    plan.add_prefix("93.184.216.0/24", ASInfo(15133, "Edgecast"))
    plan.add_prefix("151.101.0.0/16", ASInfo(54113, "Fastly"))
    return plan.freeze()


def _query(addrs: list[str], tags: list[str], host: str = "www.example.com") -> dict[str, Any]:
    return {
        "hostname": host,
        "engine": "udp",
        "failure": None if addrs else "dns_nxdomain_error",
        "answers": [{"answer_type": "A", "ipv4": a} for a in addrs] or None,
        "tags": tags,
    }


def _test_keys(
    addrs: list[str],
    *,
    tcp_failure: str | None = None,
    tls_failure: str | None = None,
    body: str | None = PAGE,
    control_addrs: list[str] | None = None,
    control: bool = True,
    extra_queries: list[dict[str, Any]] | None = None,
) -> TestKeysView:
    endpoints = [f"{a}:443" for a in addrs]
    http_failure = tcp_failure or tls_failure
    tk: dict[str, Any] = {
        "queries": [_query(addrs, ["classic", "x_resolver=system"]), *(extra_queries or [])],
        "tcp_connect": [
            {
                "ip": a,
                "port": 443,
                "status": {"success": tcp_failure is None, "failure": tcp_failure},
            }
            for a in addrs
        ],
        "tls_handshakes": [
            {"address": e, "server_name": "www.example.com", "failure": tls_failure}
            for e in (endpoints if tcp_failure is None else [])
        ],
        "requests": None
        if http_failure or body is None
        else [
            {
                "request": {"url": "https://www.example.com/", "method": "GET"},
                "response": {
                    "code": 200,
                    "body": body,
                    "x_body_length": len(body),
                    "headers_list": [["Content-Type", "text/html"], ["X-Site", "1"]],
                },
                "failure": None,
                "tags": ["depth=0"],
            }
        ],
        "dns_experiment_failure": None if addrs else "dns_nxdomain_error",
        "http_experiment_failure": http_failure,
        "control": {
            "dns": {"failure": None, "addrs": control_addrs if control_addrs else [SITE]},
            "tcp_connect": {f"{SITE}:443": {"status": True, "failure": None}},
            "tls_handshake": {
                f"{SITE}:443": {"server_name": "www.example.com", "status": True, "failure": None}
            },
            "http_request": {
                "status_code": 200,
                "body_length": len(PAGE),
                "title": "Example Domain",
                "headers": {"Content-Type": "text/html", "X-Site": "1"},
                "failure": None,
            },
        }
        if control
        else None,
    }
    return msgspec.convert(tk, TestKeysView)


URL = "https://www.example.com/"


def test_the_same_page_as_the_control_is_accessible() -> None:
    keys = classic_keys(_test_keys([SITE]), URL, _plan())
    assert keys.dns_consistency == "consistent"
    assert (keys.blocking, keys.accessible) == (False, True)
    assert keys.body_proportion == 1.0 and keys.title_match and keys.headers_match
    assert keys.x_blocking_flags == FLAG_SUCCESS


def test_another_address_of_the_same_as_is_consistent_and_a_stranger_is_not() -> None:
    assert classic_keys(_test_keys([MIRROR]), URL, _plan()).dns_consistency == "consistent"
    stranger = classic_keys(_test_keys([ELSEWHERE], tls_failure="ssl_invalid_hostname"), URL,
                            _plan())  # fmt: skip
    assert stranger.dns_consistency == "inconsistent"
    assert (stranger.blocking, stranger.accessible) == ("dns", False)
    assert stranger.x_blocking_flags & FLAG_DNS


def test_a_name_valid_handshake_proves_an_unknown_address_right() -> None:
    # No AS facts at all: the certificate valid for the name is what makes it consistent.
    keys = classic_keys(_test_keys([ELSEWHERE]), URL, AddressPlan())
    assert keys.dns_consistency == "consistent"


def test_a_bogon_answer_is_dns_blocking() -> None:
    keys = classic_keys(_test_keys(["10.10.34.35"], tcp_failure="connection_refused"), URL,
                        _plan())  # fmt: skip
    assert keys.dns_consistency == "inconsistent" and keys.blocking == "dns"


def test_connections_that_fail_only_from_the_probe_are_tcp_ip_blocking() -> None:
    keys = classic_keys(_test_keys([SITE], tcp_failure="generic_timeout_error"), URL, _plan())
    assert (keys.blocking, keys.accessible) == ("tcp_ip", False)
    assert keys.x_blocking_flags & FLAG_TCP


def test_a_reset_handshake_is_flagged_as_tls() -> None:
    keys = classic_keys(_test_keys([SITE], tls_failure="connection_reset"), URL, _plan())
    assert keys.blocking == "http-failure" and keys.x_blocking_flags & FLAG_TLS


def test_a_different_page_is_http_diff() -> None:
    page = "<html><title>Blocked</title>" + "x" * 5000 + "</html>"
    keys = classic_keys(_test_keys([SITE], body=page), URL, _plan())
    assert (keys.blocking, keys.title_match, keys.body_length_match) == ("http-diff", False, False)
    assert keys.x_blocking_flags & FLAG_HTTP_DIFF


def test_redirect_queries_are_not_the_probes_addresses() -> None:
    redirect = _query([SITE], ["x_resolver=system", "x_redirect"], host="cdn.example.com")
    tk = _test_keys([ELSEWHERE], extra_queries=[redirect], tls_failure="ssl_invalid_hostname")
    assert probe_addresses(observe(tk), URL) == [ELSEWHERE]
    assert classic_keys(tk, URL, _plan()).dns_consistency == "inconsistent"


def test_without_a_system_resolver_the_first_resolver_speaks() -> None:
    raw = msgspec.to_builtins(_test_keys([]))
    raw["queries"] = [
        _query([SITE], ["x_resolver=udp"]),
        {**_query([ELSEWHERE], ["x_resolver=doh"]), "engine": "doh"},
    ]
    tk = msgspec.convert(raw, TestKeysView)
    assert probe_addresses(observe(tk), URL) == [SITE]


def test_an_address_url_is_its_own_answer() -> None:
    tk = _test_keys([])
    assert probe_addresses(observe(tk), f"http://{SITE}/") == [SITE]
    assert probe_addresses(observe(tk), "http://[2606:2800:220:1::1]:8080/") == [
        "2606:2800:220:1::1"
    ]


def test_without_a_control_only_accessibility_is_said() -> None:
    keys = classic_keys(_test_keys([SITE], control=False), URL, _plan())
    assert keys.as_test_keys() == {
        "dns_consistency": None,
        "body_length_match": None,
        "body_proportion": None,
        "headers_match": None,
        "status_code_match": None,
        "title_match": None,
        "blocking": None,
        "accessible": True,
        "x_blocking_flags": 0,
    }
