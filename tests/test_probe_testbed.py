"""The probe inside the emulated censored country: one network per censor method.

``censorwatch testbed exec NET -- censorwatch probe ...`` runs with no resolver, CA or control
options (the testbed's environment supplies them); each test reads the raw measurement and
checks that the expected step fails the expected way, and that the rest still works.
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

from censorwatch.times import parse_time
from ooni_tools import assert_ooni_loads_all
from testbed_support import RunningTestbed, running_testbed

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

METHODS = {
    "dns-nxdomain": "AS64601",
    "dns-bogon": "AS64602",
    "dns-inject": "AS64603",
    "dns-timeout": "AS64604",
    "tcp-drop": "AS64605",
    "tcp-rst": "AS64606",
    "tls-rst": "AS64607",
    "tls-drop": "AS64608",
    "tls-mitm": "AS64609",
    "http-blockpage": "AS64610",
    "http-rst": "AS64611",
    "quic-drop": "AS64612",
    "throttle": "AS64613",
}
OPEN, SCHEDULED = "AS64620", "AS64630"
SCHEDULE_ON = 14.0
BUDGETS = [
    "--dns-timeout",
    "2",
    "--connect-timeout",
    "2",
    "--tls-timeout",
    "2",
    "--http-timeout",
    "5",
]
URLS = ["https://x.com/", "http://x.com/", "https://www.example.org/"]


def scenario() -> str:
    parts = ['name = "probe-methods"']
    for asn in [*METHODS.values(), OPEN, SCHEDULED]:
        parts.append(f'[[network]]\nasn = "{asn}"\ncc = "PK"')
    for host in ("x.com", "twitter.com", "video.twimg.com", "www.example.org"):
        parts.append(f'[[target]]\nhost = "{host}"\npaths = ["/", "/robots.txt"]')
    for method, asn in METHODS.items():
        targets = '["video.twimg.com"]' if method == "throttle" else '["x.com", "twitter.com"]'
        rate = '\nrate = "1mbit"' if method == "throttle" else ""
        parts.append(
            f'[[censor]]\nnetwork = "{asn}"\nmethod = "{method}"\ntargets = {targets}' + rate
        )
    parts.append(
        f'[[censor]]\nnetwork = "{SCHEDULED}"\nmethod = "tls-rst"\n'
        f'targets = ["x.com"]\nstart = "{SCHEDULE_ON:g}s"'
    )
    return "\n\n".join(parts) + "\n"


def probe_command(tb: RunningTestbed, asn: str, urls: list[str], *extra: str) -> list[str]:
    args = [arg for url in urls for arg in ("--url", url)]
    return tb.exec_command(asn, sys.executable, "-m", "censorwatch", "probe", *args, *BUDGETS,
                           *extra)  # fmt: skip


def collect(proc: subprocess.Popen[str]) -> dict[str, dict[str, Any]]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return {m["input"]: m for m in map(json.loads, out.splitlines())}


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    path = tmp_path_factory.mktemp("scenario") / "probe-methods.toml"
    path.write_text(scenario())
    with running_testbed(path, "cwprb") as tb:
        yield tb


@pytest.fixture(scope="module")
def runs(testbed: RunningTestbed) -> dict[str, dict[str, dict[str, Any]]]:
    """Every network probed at once, right after the testbed came up."""
    procs = {}
    for asn in [*METHODS.values(), OPEN, SCHEDULED]:
        urls = ["https://video.twimg.com/"] if asn == METHODS["throttle"] else URLS
        extra = ["--throughput"] if asn == METHODS["throttle"] else []
        procs[asn] = subprocess.Popen(
            probe_command(testbed, asn, urls, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {asn: collect(proc) for asn, proc in procs.items()}
    return results


def tk(runs: dict[str, Any], method: str, url: str = "https://x.com/") -> dict[str, Any]:
    asn = METHODS.get(method, method)
    return runs[asn][url]["test_keys"]


def failures_of(keys: dict[str, Any]) -> dict[str, Any]:
    """What went wrong in a measurement, for an assertion's message."""
    steps = ("queries", "tcp_connect", "tls_handshakes", "requests")
    return {
        "verdict": {k: keys.get(k) for k in ("blocking", "accessible", "dns_consistency")},
        "experiment": {k: v for k, v in keys.items() if k.endswith("_failure") and v},
        "steps": {
            step: [e.get("failure") or (e.get("status") or {}).get("failure") for e in keys[step]]
            for step in steps
            if keys.get(step)
        },
    }


def system_a(keys: dict[str, Any]) -> dict[str, Any]:
    """The system lookup (``getaddrinfo``, both families) with its IPv4 answers only."""
    query = next(q for q in keys["queries"] if "classic" in q["tags"])
    assert query["engine"] == "getaddrinfo" and query["query_type"] == "ANY"
    answers = [a for a in query["answers"] or [] if a["answer_type"] == "A"]
    return {**query, "answers": answers}


def main_tls(keys: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in keys["tls_handshakes"] or [] if not any("sni_probe" in t for t in h["tags"])]


def sni_probe(keys: dict[str, Any], label: str) -> list[dict[str, Any]]:
    return [h for h in keys["tls_handshakes"] or [] if f"x_sni_probe={label}" in h["tags"]]


def test_every_probe_got_its_control_in_the_burst(runs: dict[str, Any]):
    """All networks probe at once (more requests than the control measures in parallel)."""
    answered = [m["test_keys"]["control_failure"] for net in runs.values() for m in net.values()]
    assert len(answered) > 32  # the control's default number of parallel measurements
    assert answered == [None] * len(answered)


def test_ooni_loader_loads_every_measurement(runs: dict[str, Any], tmp_path: Path):
    """OONI's own loader (oonidata) reads every measurement: every censor method, the open
    network, the QUIC and throughput runs."""
    measurements = [m for net in runs.values() for m in net.values()]
    path = tmp_path / "testbed.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in measurements))
    report = assert_ooni_loads_all([path], len(measurements))
    assert report["loaded"] == {"WebConnectivity": len(measurements)}
    assert report["engines"]["getaddrinfo/ANY"] >= len(measurements)


def test_open_network_every_step_succeeds(runs: dict[str, Any], testbed: RunningTestbed):
    for url in URLS:
        m = runs[OPEN][url]
        keys = m["test_keys"]
        assert m["probe_asn"] == OPEN and m["annotations"]["x_testbed"] == testbed.id
        assert all(q["failure"] is None for q in keys["queries"] if q["query_type"] != "AAAA")
        assert {q["engine"] for q in keys["queries"]} == {"getaddrinfo", "udp", "doh"}
        assert all(c["status"]["success"] for c in keys["tcp_connect"])
        assert all(h["failure"] is None for h in keys["tls_handshakes"] or [])
        assert all(q["failure"] is None for q in keys["quic_handshakes"] or [])
        assert keys["requests"][0]["response"]["code"] == 200
        assert keys["control_failure"] is None and keys["accessible"] is True
        assert "[scrubbed]" not in json.dumps(keys["control"])


def test_dns_nxdomain(runs: dict[str, Any]):
    keys = tk(runs, "dns-nxdomain")
    assert system_a(keys)["failure"] == "dns_nxdomain_error"
    assert keys["dns_consistency"] == "inconsistent" and keys["blocking"] == "dns"
    # the public resolvers still answer, and those addresses work
    assert any(c["status"]["success"] for c in keys["tcp_connect"])


def test_dns_bogon(runs: dict[str, Any]):
    keys = tk(runs, "dns-bogon")
    assert next(a["ipv4"] for a in system_a(keys)["answers"]).startswith("10.")
    assert keys["dns_consistency"] == "inconsistent" and keys["blocking"] == "dns"


def test_dns_inject_leaves_a_late_real_answer(runs: dict[str, Any], testbed: RunningTestbed):
    keys = tk(runs, "dns-inject")
    real = set(testbed.plan.hosts["x.com"].addresses)
    assert not {a["ipv4"] for a in system_a(keys)["answers"]} & real
    late = [d for d in keys["x_dns_duplicate_responses"] if d["differs"]]
    assert {r for d in late for r in d["addresses"]} <= real and late
    assert {t for d in late for t in d["tags"]} >= {"x_resolver=system", "x_resolver=udp"}
    # the forged address fails TLS with a certificate for another name: QUIC there is abandoned
    forged = {a["ipv4"] for a in system_a(keys)["answers"]}
    assert not [q for q in keys["quic_handshakes"] or [] if q["address"].split(":")[0] in forged]
    assert {h["failure"] for h in main_tls(keys) if h["address"].split(":")[0] in forged} == {
        "ssl_unknown_authority"
    }
    assert keys["blocking"] == "dns"


def test_dns_timeout(runs: dict[str, Any]):
    keys = tk(runs, "dns-timeout")
    udp = [q for q in keys["queries"] if q["engine"] == "udp" and q["query_type"] == "A"]
    assert {q["failure"] for q in udp} == {"generic_timeout_error"}
    assert system_a(keys)["failure"] == "generic_timeout_error"
    doh = [q for q in keys["queries"] if q["engine"] == "doh" and q["query_type"] == "A"]
    assert doh[0]["failure"] is None and doh[0]["answers"]


def test_tcp_drop(runs: dict[str, Any]):
    keys = tk(runs, "tcp-drop")
    assert {c["status"]["failure"] for c in keys["tcp_connect"]} == {"generic_timeout_error"}
    assert keys["blocking"] == "tcp_ip"
    assert tk(runs, "tcp-drop", "https://www.example.org/")["accessible"] is True


def test_tcp_rst(runs: dict[str, Any]):
    keys = tk(runs, "tcp-rst")
    assert {c["status"]["failure"] for c in keys["tcp_connect"]} == {"connection_refused"}
    assert keys["http_experiment_failure"] == "connection_refused"


def test_tls_rst_for_the_name_only(runs: dict[str, Any]):
    keys = tk(runs, "tls-rst")
    assert {c["status"]["failure"] for c in keys["tcp_connect"]} == {None}
    assert {h["failure"] for h in main_tls(keys)} == {"connection_reset"}
    assert {h["failure"] for h in sni_probe(keys, "none")} == {None}
    # without SNI the server picks its default certificate; whether that fits is recorded
    assert all(isinstance(h["x_certificate_valid_for_host"], bool) for h in sni_probe(keys, "none"))
    assert keys["http_experiment_failure"] == "connection_reset"
    assert keys["x_blocking_flags"] & 4


def test_tls_drop(runs: dict[str, Any]):
    keys = tk(runs, "tls-drop")
    assert {h["failure"] for h in main_tls(keys)} == {"generic_timeout_error"}
    assert {h["failure"] for h in sni_probe(keys, "none")} == {None}


def test_tls_mitm_records_the_forged_certificate(runs: dict[str, Any]):
    keys = tk(runs, "tls-mitm")
    handshakes = main_tls(keys)
    assert {h["failure"] for h in handshakes} == {"ssl_unknown_authority"}
    assert all(h["peer_certificates"] for h in handshakes)
    assert keys["control"]["tls_handshake"][handshakes[0]["address"]]["status"] is True


def test_http_blockpage(runs: dict[str, Any]):
    keys = tk(runs, "http-blockpage", "http://x.com/")
    response = keys["requests"][0]["response"]
    assert response["code"] == 200 and "blocked" in response["body"].lower()
    assert keys["blocking"] == "http-diff"
    assert tk(runs, "http-blockpage")["accessible"] is True  # HTTPS is untouched


def test_http_rst(runs: dict[str, Any]):
    keys = tk(runs, "http-rst", "http://x.com/")
    assert keys["http_experiment_failure"] == "connection_reset", failures_of(keys)
    assert tk(runs, "http-rst")["accessible"] is True


def test_quic_drop(runs: dict[str, Any]):
    keys = tk(runs, "quic-drop")
    assert {q["failure"] for q in keys["quic_handshakes"]} == {"generic_timeout_error"}
    assert {h["failure"] for h in main_tls(keys)} == {None}  # TCP 443 untouched
    assert all(v["status"] for v in keys["control"]["quic_handshake"].values())
    assert keys["accessible"] is True
    other = tk(runs, "quic-drop", "https://www.example.org/")
    assert {q["failure"] for q in other["quic_handshakes"]} == {None}


def test_throttle_is_told_from_a_slow_network(runs: dict[str, Any]):
    keys = tk(runs, "throttle", "https://video.twimg.com/")
    summary = keys["x_throughput"]
    assert summary["target"]["bytes"] < summary["reference"]["bytes"]
    assert summary["ratio"] < 0.2
    assert 60_000 * 8 < summary["target"]["bps"] < 250_000 * 8  # 1 mbit/s tbf
    assert keys["accessible"] is True, failures_of(keys)  # slow, not blocked


def test_scheduled_block_changes_measurements_from_its_start(
    runs: dict[str, Any], testbed: RunningTestbed
):
    first = runs[SCHEDULED]["https://x.com/"]
    started = parse_time(first["measurement_start_time"]).timestamp()
    offset = started - testbed.state.info()["started_at"]
    if offset + first["test_runtime"] + 1 < SCHEDULE_ON:  # measured before the switch
        assert first["test_keys"]["accessible"] is True
    wait = SCHEDULE_ON + 1 - testbed.elapsed()
    if wait > 0:
        time.sleep(wait)
    after = collect(
        subprocess.Popen(
            probe_command(testbed, SCHEDULED, ["https://x.com/"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    keys = after["https://x.com/"]["test_keys"]
    assert {h["failure"] for h in main_tls(keys)} == {"connection_reset"}
    assert keys["accessible"] is False


def test_profile_x_through_testbed_exec(testbed: RunningTestbed, tmp_path: Path):
    out = tmp_path / "x.jsonl"
    probe = [sys.executable, "-m", "censorwatch", "probe", "--url", "https://x.com/"]
    proc = subprocess.run(
        testbed.exec_command(OPEN, *probe, "--output", str(out)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (m,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert m["test_keys"]["accessible"] is True and m["probe_cc"] == "PK"
    assert "1 measured" in proc.stderr
