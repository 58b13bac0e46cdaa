"""The testbed for real: namespaces, a censor per network, and every censorship method.

Each method gets its own network (AS64501 …), censoring from the start, so every test looks at
one method alone; AS64520 never censors; AS64530 switches on and off on a schedule; AS64540 is
changed live by the tests. Plain clients (dnspython, sockets, ssl) run inside the probe
namespaces, so these tests check the censor itself, independent of the probe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from censorwatch.testbed import manager
from censorwatch.testbed import plan as planmod
from censorwatch.testbed.state import TestbedState
from testbed_support import (
    LIVE,
    METHOD_NETWORKS,
    OPEN,
    SCHEDULE_OFF,
    SCHEDULE_ON,
    SCHEDULED,
    RunningTestbed,
    methods_scenario,
    running_testbed,
)

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> RunningTestbed:
    path = tmp_path_factory.mktemp("scenario") / "every-method.toml"
    path.write_text(methods_scenario())
    with running_testbed(path, "cwtest") as tb:
        yield tb


def x(tb: RunningTestbed) -> str:
    return tb.address("x.com")


def test_schedule_switches_on_and_off_on_time(testbed: RunningTestbed) -> None:
    def wait_until(offset: float) -> None:
        delay = offset - testbed.elapsed()
        if delay > 0:
            time.sleep(delay)

    # First in this module, so the testbed is younger than SCHEDULE_ON when it starts.
    ip = x(testbed)
    assert testbed.elapsed() < SCHEDULE_ON - 1, "the scheduled window was missed"
    assert testbed.client(SCHEDULED, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"] is None
    wait_until(SCHEDULE_ON + 0.5)
    assert (
        testbed.client(SCHEDULED, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"]
        == "connection_reset"
    )
    wait_until(SCHEDULE_OFF + 0.5)
    assert testbed.client(SCHEDULED, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"] is None


def test_packet_loss_drops_a_share_of_packets(testbed: RunningTestbed) -> None:
    ip = testbed.address("www.example.org")
    manager.set_method(testbed.id, LIVE, "packet-loss", ["www.example.org"], True, loss="60%")
    try:
        lossy = testbed.client(LIVE, "tcp", ip=ip, port=80, timeout=0.3, count=30)
    finally:
        manager.set_method(testbed.id, LIVE, "packet-loss", ["www.example.org"], False)
    clean = testbed.client(LIVE, "tcp", ip=ip, port=80, timeout=0.3, count=30)
    # P(SYN and SYN-ACK both pass) = 0.16: 30 tries all passing is essentially impossible.
    assert 0 < lossy["connected"] < 25, lossy
    assert clean["connected"] == 30


def test_open_network_reaches_everything(testbed: RunningTestbed) -> None:
    tb = testbed
    isp = tb.client(OPEN, "dns", server=tb.resolver(OPEN), name="x.com")
    public = tb.client(OPEN, "dns", server=planmod.PUBLIC_RESOLVER, name="x.com")
    assert isp["rcode"] == "NOERROR" and isp["answers"] == sorted(tb.plan.hosts["x.com"].addresses)
    assert public["answers"] == isp["answers"]
    assert tb.client(OPEN, "tcp", ip=x(tb), port=443)["failure"] is None
    assert tb.client(OPEN, "tls", ip=x(tb), sni="x.com", ca=tb.ca)["failure"] is None
    page = tb.client(OPEN, "http", ip=x(tb), host="x.com", tls=True, ca=tb.ca)
    assert page["status"] == 200 and "<title>x.com" in page["head"]
    unknown = tb.client(OPEN, "dns", server=tb.resolver(OPEN), name="nonexistent.example")
    assert unknown["rcode"] == "NXDOMAIN"


def test_dns_nxdomain(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["dns-nxdomain"]
    assert (
        testbed.client(asn, "dns", server=testbed.resolver(asn), name="x.com")["rcode"]
        == "NXDOMAIN"
    )
    # Unlisted names and other resolvers are untouched.
    assert (
        testbed.client(asn, "dns", server=testbed.resolver(asn), name="www.example.org")["rcode"]
        == "NOERROR"
    )
    assert testbed.client(asn, "dns", server=planmod.PUBLIC_RESOLVER, name="x.com")["answers"]


def test_dns_bogon(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["dns-bogon"]
    answer = testbed.client(asn, "dns", server=testbed.resolver(asn), name="twitter.com")
    assert answer["answers"] == [planmod.BOGON_ANSWER]


def test_dns_inject_races_a_forged_answer_for_every_resolver(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["dns-inject"]
    wan = testbed.plan.network(asn).censor_wan_ip
    for server in (testbed.resolver(asn), planmod.PUBLIC_RESOLVER):
        answer = testbed.client(asn, "dns", server=server, name="x.com")
        assert answer["answers"] == [wan], f"first answer from {server} should be forged"
    # The forged address belongs to the ISP, and its server has no valid certificate for x.com.
    assert testbed.client(asn, "tls", ip=wan, sni="x.com", ca=testbed.ca)["failure"] in (
        "ssl_unknown_authority",
        "ssl_invalid_hostname",
    )


def test_dns_timeout_for_every_udp_resolver(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["dns-timeout"]
    for server in (testbed.resolver(asn), planmod.PUBLIC_RESOLVER):
        r = testbed.client(asn, "dns", server=server, name="x.com", timeout=1.5)
        assert r["failure"] == "generic_timeout_error"
    assert testbed.client(asn, "dns", server=planmod.PUBLIC_RESOLVER, name="www.example.org")[
        "answers"
    ]


def test_tcp_drop_blackholes_the_addresses(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["tcp-drop"]
    r = testbed.client(asn, "tcp", ip=x(testbed), port=443, timeout=1.5)
    assert r["failure"] == "generic_timeout_error" and r["seconds"] >= 1.4
    assert (
        testbed.client(asn, "tcp", ip=testbed.address("www.example.org"), port=443)["failure"]
        is None
    )


def test_tcp_rst(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["tcp-rst"]
    r = testbed.client(asn, "tcp", ip=x(testbed), port=80)
    assert r["failure"] == "connection_refused"  # a RST answering the SYN


def test_tls_rst_only_for_the_blocked_sni(testbed: RunningTestbed) -> None:
    asn, ip = METHOD_NETWORKS["tls-rst"], x(testbed)
    assert testbed.client(asn, "tcp", ip=ip, port=443)["failure"] is None
    blocked = testbed.client(asn, "tls", ip=ip, sni="x.com", ca=testbed.ca)
    assert blocked["failure"] == "connection_reset"
    assert testbed.client(asn, "tls", ip=ip, sni=None, ca=testbed.ca)["failure"] is None
    decoy = testbed.client(asn, "tls", ip=ip, sni="www.example.org", ca=testbed.ca)
    assert decoy["failure"] in (None, "ssl_invalid_hostname")


def test_tls_drop(testbed: RunningTestbed) -> None:
    asn, ip = METHOD_NETWORKS["tls-drop"], x(testbed)
    r = testbed.client(asn, "tls", ip=ip, sni="twitter.com", ca=testbed.ca, timeout=1.5)
    assert r["failure"] == "generic_timeout_error"
    assert testbed.client(asn, "tls", ip=ip, sni=None, ca=testbed.ca)["failure"] is None


def test_tls_mitm_presents_a_certificate_not_valid_for_the_name(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["tls-mitm"]
    r = testbed.client(asn, "tls", ip=x(testbed), sni="x.com", ca=testbed.ca)
    assert r["failure"] == "ssl_unknown_authority"
    assert (
        testbed.client(
            asn, "tls", ip=testbed.address("www.example.org"), sni="www.example.org", ca=testbed.ca
        )["failure"]
        is None
    )


def test_http_blockpage_is_injected(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["http-blockpage"]
    page = testbed.client(asn, "http", ip=x(testbed), host="x.com")
    assert page["status"] == 200
    assert "blocked" in page["head"].lower() and "<title>x.com" not in page["head"]
    other = testbed.client(
        asn, "http", ip=testbed.address("www.example.org"), host="www.example.org"
    )
    assert "<title>www.example.org" in other["head"]


def test_http_rst(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["http-rst"]
    assert testbed.client(asn, "http", ip=x(testbed), host="x.com")["failure"] == "connection_reset"
    assert (
        testbed.client(asn, "http", ip=x(testbed), host="x.com", tls=True, ca=testbed.ca)["status"]
        == 200
    ), "HTTPS to the same address still works"


def test_quic_drop_drops_udp_443_only(testbed: RunningTestbed) -> None:
    asn, ip = METHOD_NETWORKS["quic-drop"], x(testbed)
    assert testbed.client(OPEN, "quic", ip=ip, sni="x.com", ca=testbed.ca)["alpn"] == "h3"
    dropped = testbed.client(asn, "quic", ip=ip, sni="x.com", ca=testbed.ca, timeout=1.5)
    assert dropped["failure"] == "generic_timeout_error"
    assert testbed.client(asn, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"] is None


def test_throttle_slows_only_the_target(testbed: RunningTestbed) -> None:
    asn = METHOD_NETWORKS["throttle"]
    slow = testbed.client(
        asn,
        "http",
        ip=testbed.address("video.twimg.com"),
        host="video.twimg.com",
        path=planmod.THROUGHPUT_PATH,
        timeout=2,
        limit=planmod.THROUGHPUT_SIZE + 4096,
    )
    fast = testbed.client(
        asn,
        "http",
        ip=testbed.address("www.example.org"),
        host="www.example.org",
        path=planmod.THROUGHPUT_PATH,
        timeout=2,
        limit=planmod.THROUGHPUT_SIZE + 4096,
    )
    slow_rate = slow["bytes"] / 2.0
    assert 60_000 < slow_rate < 200_000, f"1 mbit/s is ~125 kB/s, measured {slow_rate:.0f} B/s"
    assert fast["bytes"] >= planmod.THROUGHPUT_SIZE, "the reference downloads in full"


def test_down_site_refuses_from_everywhere(testbed: RunningTestbed) -> None:
    ip = testbed.address("down.example")
    assert testbed.client(OPEN, "tcp", ip=ip, port=443)["failure"] == "connection_refused"


def test_live_switch_on_and_off(testbed: RunningTestbed) -> None:
    ip = x(testbed)
    assert testbed.client(LIVE, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"] is None
    manager.set_method(testbed.id, LIVE, "tls-rst", ["x.com"], True)
    assert (
        testbed.client(LIVE, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"]
        == "connection_reset"
    )
    manager.set_method(testbed.id, LIVE, "tcp-drop", ["x.com"], True)
    manager.set_method(testbed.id, LIVE, "tls-rst", ["x.com"], False)
    assert (
        testbed.client(LIVE, "tcp", ip=ip, port=443, timeout=1)["failure"]
        == "generic_timeout_error"
    )
    manager.set_method(testbed.id, LIVE, "tcp-drop", ["x.com"], False)
    assert testbed.client(LIVE, "tls", ip=ip, sni="x.com", ca=testbed.ca)["failure"] is None
    with pytest.raises(manager.TestbedError, match="not declared"):
        manager.set_method(testbed.id, LIVE, "tls-rst", ["nowhere.example"], True)


def test_up_twice_is_refused(testbed: RunningTestbed) -> None:
    with pytest.raises(manager.TestbedError, match="already up"):
        manager.up("pk-2024-x", testbed.id)


def _leftovers(tb_id: str) -> list[str]:
    found = [n for n in manager.existing_namespaces(tb_id)]
    found += (
        [str(p) for p in Path("/etc/netns").glob(f"{tb_id}-*")]
        if Path("/etc/netns").is_dir()
        else []
    )
    state = TestbedState.for_id(tb_id)
    if state.folder.exists():
        found.append(str(state.folder))
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [line for line in ps.splitlines() if str(state.folder) in line]
    return found


def test_down_leaves_nothing_even_after_a_crash(tmp_path: Path) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(
        'name = "small"\n[[network]]\nasn = "AS64600"\ncc = "PK"\n'
        '[[target]]\nhost = "x.com"\n[[censor]]\nnetwork = "AS64600"\nmethod = "tls-rst"\n'
        'targets = ["x.com"]\nstart = "1h"\n'
    )
    state = manager.up(str(scenario), "cwcrash")
    pids = state.info()["pids"]
    assert _leftovers("cwcrash"), "the testbed exists while up"
    # A crash: every process killed hard, state left behind.
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    removed = manager.down("cwcrash")
    assert any("namespace" in r for r in removed)
    assert _leftovers("cwcrash") == []
    assert manager.down("cwcrash") == [], "a second down finds nothing"
