"""The scenario format and the address plan: pure parsing, no namespaces needed."""

from __future__ import annotations

import ipaddress
import tomllib

import pytest

from censorwatch.netinfo import AddressPlan
from censorwatch.testbed import plan as planmod
from censorwatch.testbed import scenario as sc
from censorwatch.testbed.services.packets import (
    http_request_host,
    name_matches,
    tls_client_hello_sni,
)

GOOD = """
name = "t"
[[network]]
asn = "AS17557"
cc = "pk"
[[network]]
asn = "AS9541"
cc = "PK"
name = "Cybernet"
nat = true
[[target]]
host = "X.com."
paths = ["/", "/robots.txt"]
[[target]]
host = "video.twimg.com"
[[target]]
host = "www.example.org"
[[censor]]
network = "AS17557"
method = "throttle"
targets = ["video.twimg.com"]
rate = "1mbit"
start = "1m"
end = "90s"
[[censor]]
network = "as9541"
method = "tls-rst"
targets = ["x.com"]
"""


def test_parses_the_documented_format() -> None:
    s = sc.parse(tomllib.loads(GOOD), "good.toml")
    assert [n.asn for n in s.networks] == ["AS17557", "AS9541"]
    assert s.networks[0].cc == "PK"
    assert s.target("x.com").paths == ("/", "/robots.txt")
    throttle, tls = s.censors
    assert (throttle.start, throttle.end, throttle.rate) == (60.0, 90.0, "1mbit")
    assert (tls.network, tls.start, tls.end) == ("AS9541", 0.0, None)
    assert [n.nat for n in s.networks] == [False, True]
    direct, behind_nat = planmod.build(s, "cw").networks
    assert direct.public_ip == direct.probe_ip
    assert behind_nat.public_ip != behind_nat.probe_ip
    assert any(  # the public address is the network's: its AS, its country
        ipaddress.ip_address(behind_nat.public_ip) in ipaddress.ip_network(entry["prefix"])
        and entry["asn"] == 9541
        and entry["cc"] == "PK"
        for entry in planmod.build(s, "cw").address_plan()["networks"]
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('asn = "AS17557"', 'asn = "17557"'), "must look like 'AS17557'"),
        (lambda t: t.replace('method = "tls-rst"', 'method = "dns-poison"'), "unknown method"),
        (
            lambda t: t.replace('targets = ["x.com"]', 'targets = ["nowhere.com"]'),
            "not declared in [[target]]",
        ),
        (lambda t: t.replace('rate = "1mbit"', 'rate = "fast"'), "is not a rate"),
        (lambda t: t.replace('end = "90s"', 'end = "30s"'), "end must come after start"),
        (lambda t: t.replace('start = "1m"', 'start = "soon"'), "is not a duration"),
        (
            lambda t: t.replace('network = "as9541"', 'network = "AS1"'),
            "not declared in [[network]]",
        ),
        (lambda t: t + '\n[[target]]\nhost = "x.com"\n', "declared twice"),
        (lambda t: t.replace('cc = "pk"', 'colour = "green"'), "unknown key"),
        (lambda t: t.replace("nat = true", 'nat = "yes"'), "nat must be true or false"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(edit, message: str) -> None:
    with pytest.raises(sc.ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sc.parse(tomllib.loads(edit(GOOD)), "bad.toml")


def test_shipped_scenario_matches_the_story() -> None:
    s = sc.load("pk-2024-x")
    assert "pk-2024-x" in sc.shipped()
    asns = [n.asn for n in s.networks]
    assert {"AS17557", "AS9541", "AS135407", "AS140499"} <= set(asns)
    blocking = {c.network for c in s.censors}
    assert blocking == {"AS17557", "AS9541", "AS135407", "AS140499"}
    never = set(asns) - blocking
    assert len(never) == 1
    first_methods = {}
    for c in s.censors:
        first_methods.setdefault(c.network, c.method)
        assert c.start > 0, "X is reachable at first and blocked after a scheduled start"
    assert len(set(first_methods.values())) == 4, "each network blocks by a different method"
    x_hosts = {
        "x.com",
        "twitter.com",
        "api.x.com",
        "abs.twimg.com",
        "pbs.twimg.com",
        "video.twimg.com",
        "t.co",
    }
    assert x_hosts <= {t.host for t in s.targets}


def test_address_plan_marks_testbed_ranges_public_and_knows_owners(tmp_path) -> None:
    s = sc.load("pk-2024-x")
    p = planmod.build(s, "cw")
    x, cdn = p.hosts["x.com"], p.hosts["video.twimg.com"]
    assert x.addresses == p.hosts["twitter.com"].addresses, "one owner shares addresses"
    assert len(x.addresses) == 2 and not set(x.addresses) & set(cdn.addresses)
    path = tmp_path / "plan.json"
    import json

    path.write_text(json.dumps(p.address_plan()))
    facts = AddressPlan.load(path)
    assert facts.lookup(x.addresses[0]).asn == 13414
    assert facts.lookup(cdn.addresses[0]).asn == 54113
    assert facts.lookup(p.network("AS17557").censor_wan_ip).asn == 17557
    assert not facts.is_bogon(x.addresses[0])
    assert facts.is_bogon(planmod.BOGON_ANSWER)


def _client_hello(sni: str | None) -> bytes:
    import ssl

    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    if sni is None:
        ctx.check_hostname = False
        obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_reads_sni_and_host_like_a_middlebox() -> None:
    assert tls_client_hello_sni(_client_hello("api.x.com")) == "api.x.com"
    assert tls_client_hello_sni(_client_hello(None)) is None
    assert tls_client_hello_sni(b"\x16\x03\x01\x00") is None
    assert tls_client_hello_sni(b"GET / HTTP/1.1\r\n") is None
    req = b"GET / HTTP/1.1\r\nUser-Agent: a\r\nHOST: X.com:80\r\n\r\n"
    assert http_request_host(req) == "x.com"
    assert http_request_host(b"\x16\x03\x01garbage") is None
    blocked = frozenset({"x.com"})
    assert name_matches("api.x.com", blocked) and name_matches("X.COM.", blocked)
    assert not name_matches("notx.com", blocked) and not name_matches("com", blocked)


def test_packet_loss_extension() -> None:
    text = GOOD + '[[censor]]\nnetwork = "AS9541"\nmethod = "packet-loss"\ntargets = ["x.com"]\n'
    with pytest.raises(sc.ScenarioError, match="missing required key 'loss'"):
        sc.parse(tomllib.loads(text), "loss.toml")
    assert sc.parse(tomllib.loads(text + 'loss = "5%"\n'), "loss.toml").censors[-1].loss == 0.05
    with pytest.raises(sc.ScenarioError, match="between 0% and 100%"):
        sc.parse(tomllib.loads(text + 'loss = "150%"\n'), "loss.toml")
    with pytest.raises(sc.ScenarioError, match="only applies to the packet-loss method"):
        sc.parse(
            tomllib.loads(
                GOOD.replace('targets = ["x.com"]\n', 'targets = ["x.com"]\nloss = "5%"\n')
            ),
            "x.toml",
        )
