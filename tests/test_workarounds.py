"""The circumvention summary on constructed step records, and the ClientHello splitting.

The summary is judged on a real OONI measurement (a TLS reset from OONI's wc05_qa suite) with
ways around appended under ``x_workarounds`` as the probe writes them; the split ClientHello
is a real one from Python's ssl, read by the testbed censor's own per-packet SNI parser.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
from pathlib import Path
from typing import Any

import msgspec
import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.core import analyze_json
from censorwatch.analysis.workarounds import (
    FAILS,
    NOT_TRIED,
    WORKS,
    headline,
    judge,
    label,
    summarize,
)
from censorwatch.observations.schema import WorkaroundStep
from censorwatch.probe.workaround_tls import as_two_records, split_point
from censorwatch.probe.workarounds import ech_offered
from censorwatch.testbed.services.packets import tls_client_hello_sni

TITLE = "Default Web Page"  # the control's title in the measurement below


def step(technique: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "technique": technique,
        "host": "www.example.com",
        "not_tried": None,
        "address": "93.184.216.34:443",
        "server_name": "www.example.com",
        "failure": None,
        "status_code": 200,
        "title": TITLE,
        "body_length": 1256,
        "bytes_received": 1800,
        "certificate_valid": True,
        "negotiated_protocol": "http/1.1",
        "t0": 0.01,
        "t": 0.2,
    }
    return {**base, **fields}


STEPS = [
    step("doh:dns.google", resolver="https://dns.google/dns-query", addresses=["93.184.216.34"],
         resolver_failure=None, failure="connection_reset", status_code=None, title=""),
    step("no_sni", server_name=None, certificate_valid=False),
    step("decoy_sni", server_name="example.org", title="Website blocked"),
    step("split_sni_tcp", certificate_valid=False, title="Blocked"),
    step("ech", not_tried="no Encrypted ClientHello here", ech_offered=False),
    step("http3", status_code=404, title="not found"),
    step("udp:8.8.8.8:53", resolver_failure="generic_timeout_error", status_code=None),
    step("front:cdn.example.net", front="cdn.example.net", server_name="cdn.example.net",
         status_code=301, title=""),
]  # fmt: skip


@pytest.fixture
def measurement(shared_data: Path) -> dict[str, Any]:
    path = shared_data / "ooni" / "wc05_qa" / "tlsBlockingConnectionResetWithConsistentDNS.json"
    return json.loads(path.read_text())


def with_steps(m: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    m = copy.deepcopy(m)
    m["test_keys"]["x_workarounds"] = steps
    return m


def typed(s: dict[str, Any]) -> WorkaroundStep:
    return msgspec.convert(s, WorkaroundStep)


def test_each_rule_decides_its_case():
    expected = {
        "doh:dns.google": (FAILS, "connection_reset at 93.184.216.34:443"),
        "no_sni": (WORKS, "not valid for the name"),  # no name sent: no such certificate
        "decoy_sni": (FAILS, "a different page"),  # a block page has its own title
        "split_sni_tcp": (FAILS, "an interception"),
        "ech": (NOT_TRIED, "no Encrypted ClientHello here"),
        "http3": (FAILS, "HTTP 404"),
        "udp:8.8.8.8:53": (FAILS, "the resolver failed: generic_timeout_error"),
        "front:cdn.example.net": (WORKS, "HTTP 301"),  # a redirect is the server answering
    }
    for s in STEPS:
        status, reason = judge(typed(s), TITLE)
        want_status, want_words = expected[s["technique"]]
        assert status == want_status, (s["technique"], reason)
        assert want_words in reason, (s["technique"], reason)


def test_without_a_control_title_any_page_below_400_counts():
    blocked_page = typed(step("decoy_sni", title="Website blocked"))
    assert judge(blocked_page, TITLE)[0] == FAILS
    assert judge(blocked_page, "")[0] == WORKS


def test_the_summary_is_an_addition_that_never_changes_the_verdict(measurement):
    plain = analyze(measurement).to_record()
    assert "workarounds" not in plain  # records without steps are as before
    tried = with_steps(measurement, STEPS)
    record = analyze(tried).to_record()
    summary = record.pop("workarounds")
    plain.pop("measurement_uid")
    record.pop("measurement_uid")
    assert record == plain
    assert list(summary) == [s["technique"] for s in STEPS]
    assert summary["no_sni"]["status"] == WORKS
    assert summary["ech"] == {"status": NOT_TRIED, "reason": "no Encrypted ClientHello here"}


def test_bytes_road_and_dict_road_agree(measurement):
    tried = with_steps(measurement, STEPS)
    by_dict = analyze(tried).to_record()
    by_bytes = analyze_json(json.dumps(tried).encode()).to_record()
    assert by_bytes == by_dict
    assert by_bytes["workarounds"] == summarize([typed(s) for s in STEPS], TITLE)


def test_odd_values_cost_the_field_not_the_summary(measurement):
    odd = [step("no_sni", status_code="two hundred"), "not a step", step("http3")]
    record = analyze(with_steps(measurement, odd)).to_record()
    assert record["verdict"] == "blocked"
    assert record["workarounds"]["http3"]["status"] == WORKS
    # the odd status code is pruned: no response is known, so that attempt fails
    assert record["workarounds"]["no_sni"]["status"] == FAILS


def test_headline_names_each_family_once_by_its_words():
    summary = summarize([typed(s) for s in STEPS], TITLE)
    line = headline(summary)
    assert line.startswith("works: TLS without SNI, a front")
    assert "fails: DNS over HTTPS" in line
    assert "not tried: Encrypted ClientHello" in line
    assert headline(None) == ""


def test_dot_steps_are_judged_like_doh_steps(measurement):
    resolved = dict(resolver_failure=None, addresses=["93.184.216.34"])
    cases = [
        ({}, WORKS, "HTTP 200 at 93.184.216.34:443"),
        ({"resolver_failure": "ssl_invalid_hostname", "addresses": [], "status_code": None},
         FAILS, "the resolver failed: ssl_invalid_hostname"),
        ({"failure": "connection_reset", "status_code": None, "title": ""},
         FAILS, "connection_reset at 93.184.216.34:443"),
        ({"certificate_valid": False}, FAILS, "an interception"),
        ({"title": "Website blocked"}, FAILS, "a different page"),
    ]  # fmt: skip
    for change, want_status, want_words in cases:
        judged = {}
        for kind, resolver in (("dot", "8.8.8.8:853"), ("doh", "https://dns.google/dns-query")):
            s = step(f"{kind}:dns.google", resolver=resolver, **{**resolved, **change})
            judged[kind] = judge(typed(s), TITLE)
        assert judged["dot"] == judged["doh"], change
        assert judged["dot"][0] == want_status and want_words in judged["dot"][1], judged
    assert label("dot:dns.google") == "DNS over TLS (dns.google)"
    steps = [
        step("doh:dns.google", resolver_failure="connection_reset", status_code=None),
        step("dot:dns.google", resolver="8.8.8.8:853", **resolved),
        step("dot:dns.quad9.net", resolver="9.9.9.9:853", resolver_failure="generic_timeout_error"),
    ]
    record = analyze(with_steps(measurement, steps)).to_record()
    assert record["workarounds"]["dot:dns.quad9.net"]["status"] == FAILS
    assert headline(record["workarounds"]) == "works: DNS over TLS; fails: DNS over HTTPS"


def _client_hello(name: str) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_split_hello_hides_the_name_from_a_per_packet_parser():
    hello = _client_hello("video.twimg.com")
    assert tls_client_hello_sni(hello) == "video.twimg.com"  # the parser works on the whole
    cut = split_point(hello, "video.twimg.com")
    assert cut is not None
    first, second = hello[:cut], hello[cut:]
    assert tls_client_hello_sni(first) != "video.twimg.com"
    assert tls_client_hello_sni(second) is None
    # reassembled, the two TCP segments are the hello again: a reassembling censor sees it
    assert tls_client_hello_sni(first + second) == "video.twimg.com"


def test_two_records_carry_the_same_handshake_and_hide_the_name():
    hello = _client_hello("x.com")
    cut = split_point(hello, "x.com")
    assert cut is not None
    framed = as_two_records(hello, cut)
    assert tls_client_hello_sni(framed) != "x.com"
    # record by record, the handshake bytes are exactly the original's
    payload, pos = b"", 0
    while pos < len(framed):
        assert framed[pos] == 0x16 and framed[pos + 1 : pos + 3] == hello[1:3]
        length = int.from_bytes(framed[pos + 3 : pos + 5], "big")
        payload += framed[pos + 5 : pos + 5 + length]
        pos += 5 + length
    assert payload == hello[5:]


def test_ech_offered_reads_the_https_record():
    import base64

    import dns.message
    import dns.rrset

    ech_config_list = base64.b64encode(b"\x00\x04\xfe\x0d\x00\x00").decode()
    query = dns.message.make_query("x.com", "HTTPS")
    with_ech = dns.message.make_response(query)
    with_ech.answer.append(
        dns.rrset.from_text("x.com.", 300, "IN", "HTTPS", f'1 . alpn="h3" ech="{ech_config_list}"')
    )
    without = dns.message.make_response(query)
    without.answer.append(dns.rrset.from_text("x.com.", 300, "IN", "HTTPS", '1 . alpn="h3"'))
    assert ech_offered(with_ech.to_wire()) is True
    assert ech_offered(without.to_wire()) is False
    assert ech_offered(dns.message.make_response(query).to_wire()) is False
    assert ech_offered(b"\x00garbage") is None


def test_the_tries_can_be_switched_off_by_option_or_configuration(
    tmp_path: Path, measurement: dict[str, Any]
) -> None:
    import asyncio

    from censorwatch.probe import defaults as probe_defaults
    from censorwatch.probe.config import ProbeConfig
    from censorwatch.probe.workarounds import attach, blocked_method
    from censorwatch.scrub import Scrubber
    from censorwatch.targets import Target

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert probe_defaults.load(empty).workarounds is True  # the shipped default: on
    off = tmp_path / "probe.toml"
    off.write_text("[workarounds]\nenabled = false\n")
    shipped_off = probe_defaults.load(off)
    assert shipped_off.workarounds is False
    assert ProbeConfig.from_env(defaults=shipped_off, env={}).workarounds is False
    assert ProbeConfig.from_env(defaults=shipped_off, env={}, workarounds=True).workarounds
    assert ProbeConfig.from_env(env={}, workarounds=False).workarounds is False
    bad = tmp_path / "bad.toml"
    bad.write_text('[workarounds]\nenabled = "no"\n')
    with pytest.raises(probe_defaults.ConfigFileError, match="enabled must be true or false"):
        probe_defaults.load(bad)
    # A blocked measurement (its addresses moved to loopback, so nothing could leave this
    # host) is left as it is when the tries are off.
    text = json.dumps(measurement)
    for ip in set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text)):
        text = text.replace(ip, "127.0.0.77")
    blocked = json.loads(text)
    config = ProbeConfig.from_env(env={}, workarounds=False)
    assert blocked_method(blocked, config) is not None
    before = copy.deepcopy(blocked)
    asyncio.run(attach(blocked, Target(blocked["input"]), config, Scrubber()))
    assert blocked == before and "x_workarounds" not in blocked["test_keys"]
