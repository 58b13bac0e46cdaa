"""What still gets through, in the emulated censored country: one network per censor method.

Each network is probed once (``testbed exec``, as a user runs it). When the probe finds the
URL blocked it tries the ways around it; the analysis' summary must then say exactly what
that censor leaves open — e.g. an SNI reset leaves TLS without SNI and HTTP/3 open and other
resolvers change nothing; DNS injection leaves DoH, DoT and the real addresses open; a dropped
address leaves only the platform's other hosts (a front).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.workarounds import FAILS, NOT_TRIED, WORKS, family
from censorwatch.netinfo import AddressPlan
from censorwatch.testbed.plan import PUBLIC_RESOLVERS
from ooni_tools import assert_ooni_loads_all
from testbed_support import RunningTestbed, running_testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(300)]

BLOCKED = ["x.com", "twitter.com"]
FRONTS = ("abs.twimg.com", "pbs.twimg.com")  # X's CDN hosts in its profile (AS54113)

# network -> (censor methods, URL probed, the verdict's method)
NETWORKS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "AS64701": (("tls-rst",), "https://x.com/", "tls.reset"),
    "AS64702": (("dns-inject",), "https://x.com/", "dns.forged"),
    "AS64703": (("tcp-drop",), "https://x.com/", "tcp.timeout"),
    "AS64704": (("quic-drop", "tls-rst"), "https://x.com/", "tls.reset"),
    "AS64705": (("dns-nxdomain",), "https://x.com/", "dns.nxdomain"),
    "AS64706": (("dns-timeout",), "https://x.com/", "dns.failure"),
    "AS64707": (("tcp-rst",), "https://x.com/", "tcp.reset"),
    "AS64708": (("tls-drop",), "https://x.com/", "tls.timeout"),
    "AS64709": (("tls-mitm",), "https://x.com/", "tls.mitm"),
    "AS64710": (("http-blockpage",), "http://x.com/", "http.blockpage"),
    "AS64711": (("quic-drop",), "https://x.com/", "quic.blocked"),
}
OPEN = "AS64720"

W, F, N = WORKS, FAILS, NOT_TRIED
# What each censor leaves open, per technique family (every technique of a family alike).
#            real_addr doh dot udp tls_tcp no_sni decoy split_tcp split_rec ech http3 http front
COLUMNS = ["real_addresses", "doh", "dot", "udp", "tls_over_tcp", "no_sni", "decoy_sni",
           "split_sni_tcp", "split_sni_record", "ech", "http3", "plain_http", "front"]  # fmt: skip
EXPECTED = {
    "AS64701": [N, F, F, F, F, W, W, W, W, N, W, W, W],  # SNI reset: hide the name, or go QUIC
    "AS64702": [W, W, W, F, W, W, W, W, W, N, W, W, W],  # injection races every UDP resolver
    "AS64703": [N, F, F, F, F, F, F, F, F, N, F, F, W],  # the addresses are gone: a front only
    "AS64704": [N, F, F, F, F, W, W, W, W, N, F, W, W],  # no transport switch; the name still
    "AS64705": [W, W, W, W, W, W, W, W, W, N, W, W, W],  # only the ISP's resolver lies
    "AS64706": [W, W, W, F, W, W, W, W, W, N, W, W, W],  # every UDP query dropped; DoH, DoT are TCP
    "AS64707": [N, F, F, F, F, F, F, F, F, N, W, F, W],  # TCP refused; UDP (QUIC) passes
    "AS64708": [N, F, F, F, F, W, W, W, W, N, W, W, W],  # hello dropped: as the reset
    "AS64709": [N, F, F, F, F, F, F, F, F, N, W, W, W],  # port 443 hijacked; UDP and 80 pass
    "AS64710": [N, W, W, W, W, W, W, W, W, N, W, F, W],  # only cleartext HTTP is filtered
    "AS64711": [N, W, W, W, W, W, W, W, W, N, F, W, W],  # only QUIC is dropped
}
BUDGETS = ["--dns-timeout", "2", "--connect-timeout", "2", "--tls-timeout", "2",
           "--http-timeout", "5"]  # fmt: skip


def scenario() -> str:
    parts = ['name = "workarounds"']
    for asn in [*NETWORKS, OPEN]:
        parts.append(f'[[network]]\nasn = "{asn}"\ncc = "PK"')
    for host in (*BLOCKED, *FRONTS):
        parts.append(f'[[target]]\nhost = "{host}"\npaths = ["/", "/robots.txt"]')
    targets = json.dumps(BLOCKED)
    for asn, (methods, _url, _method) in NETWORKS.items():
        for method in methods:
            parts.append(f'[[censor]]\nnetwork = "{asn}"\nmethod = "{method}"\ntargets = {targets}')
    return "\n\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    path = tmp_path_factory.mktemp("scenario") / "workarounds.toml"
    path.write_text(scenario())
    with running_testbed(path, "cwwka") as tb:
        yield tb


@pytest.fixture(scope="module")
def measured(testbed: RunningTestbed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every network probed at once; the raw measurements, their file and the address plan."""
    out = tmp_path_factory.mktemp("runs")
    procs = {}
    for asn in [*NETWORKS, OPEN]:
        url = NETWORKS[asn][1] if asn in NETWORKS else "https://x.com/"
        command = testbed.exec_command(
            asn, sys.executable, "-m", "censorwatch", "probe", "--url", url, *BUDGETS
        )
        procs[asn] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    measurements = {}
    for asn, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=200)
        assert proc.returncode == 0, stderr
        (out / f"{asn}.jsonl").write_text(stdout)
        (measurements[asn],) = map(json.loads, stdout.splitlines())
    plan = AddressPlan.load(testbed.state.address_plan_file)
    return {"m": measurements, "dir": out, "plan": plan, "tb": testbed}


def summary_of(measured: dict[str, Any], asn: str) -> dict[str, dict[str, str]]:
    record = analyze(measured["m"][asn], plan=measured["plan"]).to_record()
    return record.get("workarounds") or {}


def by_family(summary: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for technique, result in summary.items():
        out.setdefault(family(technique), set()).add(result["status"])
    # a platform host on the blocked host's own addresses is no front: not tried
    if len(out.get("front", ())) > 1:
        out["front"].discard(NOT_TRIED)
    return out


@pytest.mark.parametrize("asn", list(NETWORKS))
def test_the_summary_says_what_the_censor_leaves_open(measured: dict[str, Any], asn: str):
    summary = summary_of(measured, asn)
    families = by_family(summary)
    got = {column: families.get(column) for column in COLUMNS}
    want = {column: {status} for column, status in zip(COLUMNS, EXPECTED[asn], strict=True)}
    reasons = {t: f"{r['status']}: {r['reason']}" for t, r in summary.items()}
    assert got == want, json.dumps(reasons, indent=1)
    assert summary["other_port"]["status"] == NOT_TRIED
    assert "Encrypted ClientHello" in summary["ech"]["reason"]


@pytest.mark.parametrize("asn", list(NETWORKS))
def test_the_summary_never_changes_the_verdict(measured: dict[str, Any], asn: str):
    m = measured["m"][asn]
    tried = analyze(m, plan=measured["plan"]).to_record()
    bare = copy.deepcopy(m)
    for key in ("x_workarounds", "x_workarounds_for", "x_workarounds_runtime"):
        bare["test_keys"].pop(key)
    untried = analyze(bare, plan=measured["plan"]).to_record()
    assert tried["method"] == NETWORKS[asn][2] == m["test_keys"]["x_workarounds_for"]
    tried.pop("workarounds")
    for record in (tried, untried):
        record.pop("measurement_uid")
    assert tried == untried


def test_more_than_one_operator_is_asked(measured: dict[str, Any]):
    techniques = summary_of(measured, "AS64702")
    doh = [t for t in techniques if t.startswith("doh:")]
    dot = [t for t in techniques if t.startswith("dot:")]
    udp = [t for t in techniques if t.startswith("udp:")]
    assert len(doh) >= 2 and len(dot) >= 2 and len(udp) >= 2, list(techniques)


def dot_steps(measured: dict[str, Any], asn: str) -> dict[str, dict[str, Any]]:
    steps = measured["m"][asn]["test_keys"]["x_workarounds"]
    return {s["technique"]: s for s in steps if s["technique"].startswith("dot:")}


def test_dns_over_tls_gets_around_injection_and_not_an_sni_reset(measured: dict[str, Any]):
    # every operator of the defaults, each at its own address on port 853, its certificate
    # checked for its name: the testbed serves them as the real internet does
    served = {
        f"dot:{name}": f"{address}:853" for address, (name, _a, _o) in PUBLIC_RESOLVERS.items()
    }
    tb = measured["tb"]
    real = tb.plan.addresses_of(["x.com"])
    injected = dot_steps(measured, "AS64702")
    assert {t: s["resolver"] for t, s in injected.items()} == served
    for s in injected.values():
        # the censor forges plain DNS only: DoT answers the real addresses, and the page comes
        assert s["resolver_failure"] is None and s["addresses"][0] in real, s
        assert s["status_code"] == 200 and s["certificate_valid"] is True, s
    summary = summary_of(measured, "AS64702")
    assert {summary[t]["status"] for t in injected} == {WORKS}
    # an SNI reset is no DNS block: DoT resolves the same real addresses, the page is reset
    reset = dot_steps(measured, "AS64701")
    assert set(reset) == set(served)
    for s in reset.values():
        assert s["resolver_failure"] is None and s["addresses"][0] in real, s
        assert s["failure"] == "connection_reset" and s["status_code"] is None, s
    summary = summary_of(measured, "AS64701")
    assert {summary[t]["status"] for t in reset} == {FAILS}


def test_an_open_network_gets_no_attempts(measured: dict[str, Any]):
    m = measured["m"][OPEN]
    assert m["test_keys"]["accessible"] is True
    assert "x_workarounds" not in m["test_keys"]
    assert "workarounds" not in analyze(m, plan=measured["plan"]).to_record()


def test_every_attempt_is_bounded(measured: dict[str, Any]):
    for asn in NETWORKS:
        tk = measured["m"][asn]["test_keys"]
        assert tk["x_workarounds_runtime"] <= 30.0 + 1.0
        for step in tk["x_workarounds"]:
            if step["not_tried"] is None and "t" in step:
                assert step["t"] - step["t0"] <= 5.0 + 0.5, step
            assert step.get("bytes_received", 0) <= 256 * 1024, step


def test_the_probes_address_is_in_no_attempt(measured: dict[str, Any]):
    tb = measured["tb"]
    for asn in NETWORKS:
        text = json.dumps(measured["m"][asn]["test_keys"]["x_workarounds"])
        assert tb.plan.network(asn).probe_ip not in text


def test_ooni_loader_loads_every_measurement(measured: dict[str, Any]):
    files = sorted(Path(measured["dir"]).glob("*.jsonl"))
    assert_ooni_loads_all(files, expected=len(NETWORKS) + 1)
