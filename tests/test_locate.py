"""Where the censor sits: the decision on constructed per-TTL records, the probe's own
payloads and ICMP reading on loopback, and the scenario's ``hop``."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis import locate as decision
from censorwatch.observations.schema import LocateRun
from censorwatch.probe import locate_probes
from censorwatch.testbed import plan as planmod
from censorwatch.testbed import scenario as scenariomod
from censorwatch.testbed.services.packets import http_request_host, tls_client_hello_sni

TE, ANS, RST, TO = "time_exceeded", "answer", "reset", "timeout"
PATH = [  # ttl -> (address, asn, cc): access and core of AS17557, gateway, transit, end host
    ("100.64.1.1", 17557, "PK"),
    ("198.18.1.1", 17557, "PK"),
    ("198.19.1.1", 65537, "PK"),
    ("198.19.254.1", 65536, None),
    ("198.51.100.10", 13414, "US"),
]


def run(trigger: list[str], control: list[str], kind: str = "tls", **extra: Any) -> LocateRun:
    """A five-hop record: at each TTL the trigger's and the control's (single) outcome."""
    hops = [
        {
            "ttl": ttl,
            "address": address,
            "asn": asn,
            "cc": cc,
            "trigger": [t],
            "control": [c],
        }
        for ttl, ((address, asn, cc), t, c) in enumerate(
            zip(PATH, trigger, control, strict=True), 1
        )
    ]
    return msgspec.convert({"trigger": kind, "hops": hops, **extra}, LocateRun)


CONTROL = [TE, TE, TE, TE, ANS]


@pytest.mark.parametrize(
    ("trigger", "hop", "placement", "evidence"),
    [
        ([TE, RST, RST, RST, RST], 2, "own_isp", RST),
        ([TE, TE, TO, TO, TO], 3, "national_gateway", TO),
        ([TE, TE, TE, ANS, ANS], 4, "beyond_border", ANS),
        ([ANS, ANS, ANS, ANS, ANS], 1, "own_isp", ANS),
        ([TE, TE, TE, TE, RST], 5, "destination", RST),
    ],
)
def test_the_first_hop_where_the_trigger_fares_otherwise(
    trigger: list[str], hop: int, placement: str, evidence: str
) -> None:
    located = decision.decide(run(trigger, CONTROL), "AS17557", "PK")
    assert (located.hop, located.placement, located.evidence) == (hop, placement, evidence)
    assert located.address == PATH[hop - 1][0]
    assert located.asn == f"AS{PATH[hop - 1][1]}"
    assert located.destination_hop == 5


def test_confirmed_only_when_the_next_judged_hop_differs_too() -> None:
    assert decision.decide(run([TE, RST, RST, RST, RST], CONTROL), "AS17557", "PK").confirmed
    # An injector just before the end host: at the end host both get an answer.
    last = decision.decide(run([TE, TE, TE, ANS, ANS], CONTROL), "AS17557", "PK")
    assert last.hop == 4 and not last.confirmed
    # A difference on one TTL only (a lost ICMP message) is reported, not confirmed.
    flicker = decision.decide(run([TE, TO, TE, TE, ANS], CONTROL), "AS17557", "PK")
    assert flicker.hop == 2 and not flicker.confirmed


def test_no_difference_is_none_found() -> None:
    located = decision.decide(run(CONTROL, CONTROL), "AS17557", "PK")
    assert located.placement == "none" and located.hop is None
    assert located.destination_hop == 5


def test_a_ttl_where_the_control_heard_nothing_is_not_judged() -> None:
    # hop 3 filters ICMP: both silent there; the censor's reset shows at hop 4.
    located = decision.decide(run([TE, TE, TO, RST, RST], [TE, TE, TO, TE, ANS]), "AS17557", "PK")
    assert located.hop == 4 and located.placement == "beyond_border"


def test_placement_by_as_and_country() -> None:
    located = decision.decide(run([TE, TE, RST, RST, RST], CONTROL), "AS9541", "PK")
    assert located.placement == "national_gateway", "another AS of the same country"
    assert decision.decide(run([TE, RST, RST, RST, RST], CONTROL), "AS9541", "PK").placement == (
        "national_gateway"
    ), "the other ISP's core, seen from AS9541"
    assert decision.decide(run([TE, TE, RST, RST, RST], CONTROL), "AS1", "IR").placement == (
        "beyond_border"
    )
    unknown = run([TE, RST, RST, RST, RST], CONTROL)
    unknown.hops[1].asn = None
    assert decision.decide(unknown, "AS17557", "PK").placement == "unknown"


def test_an_injected_answer_outweighs_the_icmp_error_of_the_same_ttl() -> None:
    assert decision.side([TE, ANS]) == "answer"
    assert decision.side([TE, "unreachable"]) == "icmp"
    assert decision.side([]) == "timeout"


def test_not_run_keeps_its_reason() -> None:
    located = decision.decide(
        msgspec.convert({"trigger": "dns", "not_run": "no resolver"}, LocateRun), "AS1", "PK"
    )
    assert located.placement == "not_run" and located.not_run == "no resolver"


def _measurement(x_locate: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "measurement_uid": "20240217000000.000000_PK_webconnectivity_0",
        "input": "https://x.com/",
        "test_name": "web_connectivity",
        "probe_asn": "AS17557",
        "probe_cc": "PK",
        "measurement_start_time": "2024-02-17 00:00:00",
        "test_keys": {"x_locate": x_locate},
    }


def test_the_verdict_record_carries_the_localization() -> None:
    tls = msgspec.to_builtins(run([TE, TE, RST, RST, RST], CONTROL))
    dns = msgspec.to_builtins(run(CONTROL, CONTROL, kind="dns"))
    record = analyze(_measurement([dns, tls])).to_record()
    assert record["locate"]["hop"] == 3, "the run that found a hop speaks"
    assert record["locate"]["placement"] == "national_gateway"
    assert "locate" not in analyze(_measurement([])).to_record(), "absent unless localized"


def test_odd_records_are_pruned_not_fatal() -> None:
    record = analyze(_measurement([{"trigger": 3, "hops": "x"}, None])).to_record()
    assert record["locate"]["placement"] == "none", "a run with nothing readable finds nothing"


# -- the probe's payloads are what the testbed's censor (and any middlebox) reads --------
def test_the_trigger_payloads_carry_the_name() -> None:
    assert tls_client_hello_sni(locate_probes.client_hello("x.com")) == "x.com"
    assert http_request_host(locate_probes.http_request("x.com", "/a")) == "x.com"
    import dns.message

    query = dns.message.from_wire(locate_probes.dns_query("x.com", 4242))
    assert query.id == 4242 and query.question[0].name.to_text() == "x.com."


@pytest.mark.skipif(locate_probes.unavailable() is not None, reason="needs Linux IP_RECVERR")
def test_udp_probe_reads_port_unreachable_from_the_end_host() -> None:
    """On loopback the end host is one hop away: a closed port answers unreachable."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    heard = locate_probes.udp_probe("127.0.0.1", port, b"x", 4, wait=1.0, max_read=512)
    assert heard.outcome == "unreachable" and heard.icmp_source == "127.0.0.1"


@pytest.mark.skipif(locate_probes.unavailable() is not None, reason="needs Linux IP_RECVERR")
def test_tcp_probe_gets_the_servers_answer_and_closes() -> None:
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nhello")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    heard = locate_probes.tcp_probe(
        "127.0.0.1",
        port,
        locate_probes.http_request("x.com"),
        3,
        wait=2.0,
        connect_timeout=2.0,
        max_read=4096,
    )
    thread.join(2)
    server.close()
    assert heard.outcome == "answer" and heard.data.startswith(b"HTTP/1.1 200")


# -- the scenario's hop ------------------------------------------------------------------
def _scenario(censor: str) -> scenariomod.Scenario:
    text = (
        'name = "t"\n[[network]]\nasn = "AS64700"\ncc = "PK"\n[[target]]\nhost = "x.com"\n'
        f'[[censor]]\nnetwork = "AS64700"\ntargets = ["x.com"]\n{censor}\n'
    )
    import tomllib

    return scenariomod.parse(tomllib.loads(text), "t.toml")


@pytest.mark.parametrize(
    ("spec", "hop"),
    [("", "access"), ('hop = "gateway"', "gateway"), ("hop = 2", "core"), ('hop = "4"', "transit")],
)
def test_scenario_hop_by_name_or_number(spec: str, hop: str) -> None:
    assert _scenario(f'method = "tls-rst"\n{spec}').censors[0].hop == hop


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('method = "tls-rst"\nhop = 5', "not a hop of the path"),
        ('method = "tls-rst"\nhop = "border"', "not a hop of the path"),
        ('method = "dns-nxdomain"\nhop = "gateway"', "only at hop 1"),
        ('method = "throttle"\nrate = "1mbit"\nhop = 2', "only at hop 1"),
    ],
)
def test_scenario_hop_errors_name_the_key(spec: str, message: str) -> None:
    with pytest.raises(scenariomod.ScenarioError, match=message) as info:
        _scenario(spec)
    assert "[[censor]] #1 hop" in str(info.value)


def test_every_path_has_five_hops_with_addresses_in_the_plan() -> None:
    import tomllib

    text = (
        'name = "p"\n[[network]]\nasn = "AS64700"\ncc = "PK"\n'
        '[[network]]\nasn = "AS64701"\ncc = "PK"\n[[network]]\nasn = "AS64702"\ncc = "IR"\n'
    )
    plan = planmod.build(scenariomod.parse(tomllib.loads(text), "p.toml"), "cw")
    from censorwatch.netinfo import AddressPlan

    facts = AddressPlan()
    for entry in plan.address_plan()["networks"]:
        facts.add_prefix(entry["prefix"], decision_info(entry))
    facts.freeze()
    a, b, c = (plan.path(asn) for asn in ("AS64700", "AS64701", "AS64702"))
    assert [h.role for h in a] == ["access", "core", "gateway", "transit"]
    assert a[2] == b[2] and a[2] != c[2], "one gateway per country, shared by its ISPs"
    assert a[3] == c[3], "one transit for all"
    for hop in [*a, *c]:
        info = facts.lookup(hop.address)
        assert info is not None and info.asn == hop.asn, hop
    assert facts.lookup(a[2].address).cc == "PK" and facts.lookup(c[2].address).cc == "IR"
    assert all(len(h.namespace) < 64 and h.namespace.startswith("cw-") for h in [*a, *c])
    with pytest.raises(ValueError, match="transit or a national gateway"):
        planmod.build(
            scenariomod.parse(tomllib.loads('[[network]]\nasn = "AS65536"\ncc = "PK"\n'), "x"),
            "cw",
        )


def decision_info(entry: dict[str, Any]) -> Any:
    from censorwatch.netinfo import ASInfo

    return ASInfo(int(entry["asn"]), entry.get("as_org_name", ""), entry.get("cc", ""))
