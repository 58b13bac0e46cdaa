"""``censorwatch probe --locate`` in the testbed: the censor's hop, named every time.

Every path is five hops (access, core, gateway, transit, then the internet's hosts). One
network per placement carries the same four censors — DNS injection, TLS reset, TLS drop and
an HTTP block page, each on its own host — on hop 2 (its core), 3 (the national gateway) or 4
(the transit); a fourth network has no censor. One testbed serves them all: a censor on a
shared router matches only its own network's traffic. Each probe runs twice, so "every time"
is two independent localizations per method and hop.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from censorwatch.analysis import analyze
from censorwatch.netinfo import AddressPlan
from ooni_tools import assert_ooni_loads_all
from testbed_support import RunningTestbed, running_testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

#: host -> (censor method, the URL measured, the trigger that must place it)
HOSTS = {
    "dnsblock.example": ("dns-inject", "https://dnsblock.example/", "dns"),
    "tlsrst.example": ("tls-rst", "https://tlsrst.example/", "tls"),
    "tlsdrop.example": ("tls-drop", "https://tlsdrop.example/", "tls"),
    "httpblock.example": ("http-blockpage", "http://httpblock.example/", "http"),
}
#: network -> (hop number, hop name, placement)
PLACED = {
    "AS64821": (2, "core", "own_isp"),
    "AS64822": (3, "gateway", "national_gateway"),
    "AS64823": (4, "transit", "beyond_border"),
}
OPEN = "AS64824"
ROUNDS = 2
BUDGETS = ["--dns-timeout", "2", "--connect-timeout", "2", "--tls-timeout", "2"]
#: Only the localization is under test here (the ways around have their own tests).
NO_WORKAROUNDS = ["--no-workarounds"]


def scenario() -> str:
    parts = ['name = "locate"']
    for asn in [*PLACED, OPEN]:
        parts.append(f'[[network]]\nasn = "{asn}"\ncc = "PK"')
    for host in HOSTS:
        parts.append(f'[[target]]\nhost = "{host}"')
    for asn, (_number, hop, _placement) in PLACED.items():
        for host, (method, _url, _trigger) in HOSTS.items():
            parts.append(
                f'[[censor]]\nnetwork = "{asn}"\nmethod = "{method}"\n'
                f'targets = ["{host}"]\nhop = "{hop}"'
            )
    return "\n\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    path = tmp_path_factory.mktemp("scenario") / "locate.toml"
    path.write_text(scenario())
    with running_testbed(path, "cwloc") as tb:
        yield tb


@pytest.fixture(scope="module")
def measured(
    testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    """(network, round) -> URL -> measurement; every network probed at once, each round."""
    out_dir = tmp_path_factory.mktemp("measurements")
    urls = [arg for _m, url, _t in HOSTS.values() for arg in ("--url", url)]
    results: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for round_ in range(ROUNDS):
        procs = {}
        for asn in [*PLACED, OPEN]:
            output = out_dir / f"{asn}-{round_}.jsonl"
            command = testbed.exec_command(
                asn, sys.executable, "-m", "censorwatch", "probe", *urls, *BUDGETS,
                *NO_WORKAROUNDS, "--locate", "-c", "4", "-o", str(output),
            )  # fmt: skip
            procs[asn] = (output, subprocess.Popen(command, stderr=subprocess.PIPE, text=True))
        for asn, (output, proc) in procs.items():
            _, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, err
            lines = output.read_text().splitlines()
            results[(asn, round_)] = {m["input"]: m for m in map(json.loads, lines)}
    return results


def runs_of(measurement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["trigger"]: r for r in measurement["test_keys"].get("x_locate") or []}


@pytest.mark.parametrize("round_", range(ROUNDS))
@pytest.mark.parametrize("asn", list(PLACED))
@pytest.mark.parametrize("host", list(HOSTS))
def test_locate_names_the_censors_hop(
    measured: dict, testbed: RunningTestbed, asn: str, host: str, round_: int
) -> None:
    method, url, trigger = HOSTS[host]
    number, hop_name, placement = PLACED[asn]
    hop = testbed.plan.hop(asn, hop_name)
    measurement = measured[(asn, round_)][url]
    runs = runs_of(measurement)
    assert set(runs) == {trigger}, f"a blocked URL is localized by its layer's trigger: {runs}"
    run = runs[trigger]
    assert run["not_run"] is None
    result = run["result"]
    assert result["hop"] == number, json.dumps(run["hops"], indent=1)
    assert result["address"] == hop.address
    assert result["asn"] == f"AS{hop.asn}"
    assert result["placement"] == placement
    # Confirmed by the next TTL — except an injector right before the end host: there the
    # next TTL reaches it, and the forged answer and the real one are both answers.
    injects = method in ("dns-inject", "http-blockpage")
    assert result["confirmed"] is (number < 4 or not injects)
    # Below the censor's hop, the trigger and the control fared alike.
    for below in run["hops"][: number - 1]:
        assert below["trigger"] == below["control"] == ["time_exceeded"] * 2
    # The verdict record carries the same answer, derived again from the per-hop record.
    plan = AddressPlan.load(testbed.state.address_plan_file)
    verdict = analyze(measurement, plan=plan).to_record()
    assert verdict["verdict"] == "blocked", (method, verdict["method"])
    assert verdict["locate"]["hop"] == number
    assert verdict["locate"]["placement"] == placement


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_locate_says_none_without_a_censor(measured: dict, round_: int) -> None:
    for _method, url, _trigger in HOSTS.values():
        runs = runs_of(measured[(OPEN, round_)][url])
        expected = {"dns", "http" if url.startswith("http:") else "tls"}
        assert set(runs) == expected, runs
        for run in runs.values():
            assert run["result"]["placement"] == "none", run
            assert run["result"]["destination_hop"] == 5, "the control reached the end host"
            assert "hop" not in run["result"]


def test_every_localization_stays_in_its_bounds(measured: dict) -> None:
    for by_url in measured.values():
        for measurement in by_url.values():
            for run in runs_of(measurement).values():
                assert len(run["hops"]) <= run["max_hops"]
                assert run["bytes"] <= 256 * 1024
                assert run["runtime"] < 30
                # at most k triggers and k controls per TTL, plus one path probe for TCP
                assert run["packets"] <= len(run["hops"]) * (2 * run["probes_per_hop"] + 1)


def test_ooni_loader_loads_every_measurement(measured: dict, tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    lines = [json.dumps(m) for by_url in measured.values() for m in by_url.values()]
    path.write_text("\n".join(lines) + "\n")
    assert_ooni_loads_all([path], len(lines))
