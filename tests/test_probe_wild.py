"""A probe told nothing but the CA, in the testbed: its built-in defaults, STUN and check-in.

``testbed exec --defaults`` passes no ``CENSORWATCH_*`` variable except the CA; the names and
addresses the defaults use (8.8.8.8, dns.google, the OONI test-helper names, api.ooni.io, the
STUN servers, speed.cloudflare.com) are served by the testbed's internet namespace. The same
networks are measured by a fully-configured probe, and both must analyse to the same verdicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from censorwatch.analysis import analyze
from censorwatch.netinfo import AddressPlan, parse_address
from censorwatch.scrub import spellings
from censorwatch.testbed import plan as planmod
from testbed_support import RunningTestbed, running_testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(300)]

HOSTS = ["x.com", "twitter.com", "api.x.com", "abs.twimg.com", "pbs.twimg.com", "video.twimg.com"]
SCENARIO = (
    'name = "wild"\n'
    # Behind NAT, as a volunteer's probe is: what STUN tells it is not its own address.
    '[[network]]\nasn = "AS17557"\ncc = "PK"\nname = "PTCL"\nnat = true\n'
    '[[network]]\nasn = "AS9541"\ncc = "PK"\nname = "Cybernet"\nnat = true\n'
    '[[network]]\nasn = "AS23674"\ncc = "PK"\nname = "Nayatel"\nnat = true\n'
    + "".join(f'[[target]]\nhost = "{h}"\n' for h in [*HOSTS, "t.co"])
    + '[[censor]]\nnetwork = "AS17557"\nmethod = "tls-rst"\n'
    + f"targets = {json.dumps(HOSTS)}\n"
    + '[[censor]]\nnetwork = "AS9541"\nmethod = "dns-inject"\n'
    + f"targets = {json.dumps(HOSTS)}\n"
)
NETWORKS = {"AS17557": "PTCL", "AS9541": "Cybernet", "AS23674": "Nayatel"}
FAST = ["--dns-timeout", "2", "--connect-timeout", "2", "--tls-timeout", "2"]


def _defaults_command(tb: RunningTestbed, asn: str, *probe_args: str) -> list[str]:
    return [
        sys.executable, "-m", "censorwatch", "testbed", "exec", asn, "--id", tb.id, "--defaults",
        "--", "censorwatch", "probe", "--yes", "--ca", str(tb.state.ca_file), *probe_args,
    ]  # fmt: skip


def _run(cmd: list[str], cwd: Path) -> tuple[str, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def _read(path: Path) -> dict[str, dict[str, Any]]:
    return {m["input"]: m for m in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("wild")
    scenario = folder / "wild.toml"
    scenario.write_text(SCENARIO)
    with running_testbed(scenario, "cwwild") as tb:
        ready = time.monotonic() + 30  # the check-in collector starts beside the testbed
        while "collector and API on" not in (tb.state.logs / "checkin.log").read_text():
            assert time.monotonic() < ready, (tb.state.logs / "checkin.log").read_text()
            time.sleep(0.2)
        runs: dict[str, Any] = {"tb": tb, "captured": [], "defaults": {}, "full": {}}
        started = time.monotonic()
        for asn in NETWORKS:
            out = folder / f"defaults-{asn}.jsonl"
            cmd = _defaults_command(tb, asn, "--profile", "x", *FAST, "--output", str(out))
            runs["captured"] += _run(cmd, folder)
            runs["defaults"][asn] = _read(out)
            runs["captured"].append(out.read_text())
        runs["seconds"] = time.monotonic() - started
        for asn in NETWORKS:
            out = folder / f"full-{asn}.jsonl"
            cmd = tb.exec_command(asn, "censorwatch", "probe", "--profile", "x", *FAST)
            _run([*cmd, "--output", str(out)], folder)
            runs["full"][asn] = _read(out)
        # No targets at all: the list comes from check-in.
        out = folder / "checkin-AS23674.jsonl"
        runs["captured"] += _run(
            _defaults_command(tb, "AS23674", *FAST, "-c", "8", "--output", str(out)), folder
        )
        runs["checkin"] = _read(out)
        runs["captured"].append(out.read_text())
        logs = sorted(tb.state.logs.glob("*.log"))
        archive = [p for p in (tb.state.folder / "checkin").rglob("*") if p.is_file()]
        runs["service_bytes"] = [p.read_bytes() for p in [*logs, *archive]]
        runs["plan"] = AddressPlan.load(tb.state.address_plan_file)
        yield runs


STUN_ASK = (
    "import asyncio, sys\n"
    "from censorwatch.probe.geolocate import public_address\n"
    "print(asyncio.run(public_address(sys.argv[1:]))[0])\n"
)


def test_behind_nat_stun_tells_the_public_address_not_the_probes_own(wild: dict[str, Any]):
    tb: RunningTestbed = wild["tb"]
    servers = [f"{address}:{port}" for address, port in planmod.STUN_SERVERS.values()]
    for asn in NETWORKS:
        net = tb.plan.network(asn)
        cmd = tb.exec_command(asn, sys.executable, "-c", STUN_ASK, *servers)
        out, _ = _run(cmd, Path.cwd())
        assert out.strip() == net.public_ip != net.probe_ip, (asn, out)
        found = wild["plan"].lookup(net.public_ip)
        assert found is not None and f"AS{found.asn}" == asn, found


def test_it_finds_its_network_by_stun_and_the_mmdb(wild: dict[str, Any]):
    for asn, name in NETWORKS.items():
        for m in wild["defaults"][asn].values():
            assert (m["probe_asn"], m["probe_cc"], m["probe_network_name"]) == (asn, "PK", name)
            geo = m["annotations"]["x_geolocation"]
            assert geo["method"] == "stun" and geo["failure"] is None
            assert geo["stun_answers"] == len(planmod.STUN_SERVERS)
            assert geo["database"].endswith(".mmdb")
            assert m["resolver_asn"] == asn
            assert "x_testbed" not in m["annotations"]  # not testbed mode: the real defaults


def test_it_uses_the_defaults_resolvers_and_the_check_in_control(wild: dict[str, Any]):
    for m in wild["defaults"]["AS23674"].values():
        resolvers = m["test_keys"]["x_resolvers"]
        assert resolvers["udp"] == "8.8.8.8:53"
        assert resolvers["doh"] == "https://dns.google/dns-query"
        assert m["annotations"]["x_checkin"] == {"service": "https://api.ooni.io/", "failure": None}
        # The testbed's check-in hands out its own control, ahead of the built-in ones.
        backend = m["test_helpers"]["backend"]["address"]
        assert backend == f"https://{planmod.TESTBED_CONTROL_NAME}/"
        assert m["test_keys"]["control_failure"] is None


def test_with_no_targets_the_list_comes_from_check_in(wild: dict[str, Any]):
    urls = set(wild["checkin"])
    assert set(wild["defaults"]["AS23674"]) <= urls  # every profile's endpoints, X's included
    assert any("telegram" in u for u in urls)
    assert all(m["probe_asn"] == "AS23674" for m in wild["checkin"].values())


def test_verdicts_match_a_fully_configured_probe(wild: dict[str, Any]):
    plan = wild["plan"]
    compared = 0
    for asn in NETWORKS:
        full, defaults = wild["full"][asn], wild["defaults"][asn]
        assert set(full) == set(defaults)
        for url in full:
            a, b = analyze(defaults[url], plan=plan), analyze(full[url], plan=plan)
            assert (a.verdict, a.method) == (b.verdict, b.method), (asn, url)
            compared += 1
    methods = {analyze(m, plan=plan).method for m in wild["defaults"]["AS17557"].values()}
    assert "tls.reset" in methods
    assert compared == 3 * 7


def test_no_probe_address_in_anything_written_or_sent(wild: dict[str, Any]):
    tb: RunningTestbed = wild["tb"]
    addresses = [a for net in tb.plan.networks for a in (net.probe_ip, net.public_ip)]
    assert len(set(addresses)) == 2 * len(NETWORKS)  # each behind its NAT
    forms = {s for a in addresses if (p := parse_address(a)) for s in spellings(p)}
    text = "\n".join(wild["captured"])
    blobs = [text.encode(), *wild["service_bytes"]]
    for form in forms:
        assert all(form.encode() not in blob for blob in blobs), form
    assert wild["seconds"] < 120
