"""All 50 OONI web_connectivity 0.5 QA measurements get the verdict their scenario names.

The file name is the ground truth of OONI's censorship emulator. The expected verdict is derived
from the name by the rules below; where censorwatch deliberately disagrees with OONI Probe's own
summary keys (``blocking``/``accessible``), the rule says why (docs/verdicts.md has the list).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.netinfo import AddressPlan

# (name pattern, verdict, method, the layer that decided). First match wins.
RULES: list[tuple[str, str, str | None, str | None]] = [
    # The censor answers with an address serving an untrusted certificate: the DNS lied.
    (r"^badSSLWithUnknownAuthorityWithInconsistentDNS", "blocked", "dns.forged", "dns"),
    # The server's certificate is broken for the control too: down, not blocked.
    (r"^badSSL", "down", None, "tls"),
    # A CDN challenge page (known false-positive signature): the site answered; OONI calls the
    # HTTP case http-diff, we do not.
    (r"^cloudflareCAPTCHA", "ok", None, "http"),
    # The control failed but the probe fetched the page (over a validated TLS handshake to the
    # same address); OONI leaves the HTTP case undecided.
    (r"^controlFailureWithSuccessful", "ok", None, "http"),
    (r"^dnsBlockingAndroidDNSCacheNoData", "blocked", "dns.nxdomain", "dns"),
    (r"^dnsBlockingBOGON", "blocked", "dns.bogon", "dns"),
    (r"^dnsBlockingNXDOMAIN", "blocked", "dns.nxdomain", "dns"),
    (r"^dnsHijackingToLocalhost", "blocked", "dns.bogon", "dns"),
    # The answer differs but the address holds a valid certificate for the name (a transparent
    # proxy): the page arrives intact.
    (r"^dnsHijackingToProxy", "ok", None, "http"),
    # The name does not exist (control: NXDOMAIN) yet the local resolver answers.
    (r"^ghostDNSBlocking", "blocked", "dns.forged", "dns"),
    (r"^httpBlockingConnectionReset", "blocked", "http.reset", "http"),
    # An "Access Denied" page: a known blockpage signature confirms it; without fingerprints
    # the comparison with the control still calls it http.diff (test below).
    (r"^httpDiff", "blocked", "http.blockpage", "http"),
    (r"^idnaWithoutCensorship", "ok", None, "http"),
    (r"^largeFile", "ok", None, "http"),
    # The site's own DNS points at 127.0.0.1 (the control sees it too): down everywhere.
    (r"^localhostWith", "down", None, "dns"),
    # The server's redirect is unusable, so the page never arrives: not ok. Not interference
    # either, and the control reached the page, so not down: too little to say (OONI:
    # http-failure).
    (r"^redirectWithBrokenLocation", "unknown", None, None),
    (r"^redirectWithConsistentDNSAndThenConnectionRefused", "blocked", "tcp.reset", "tcp"),
    (
        r"^redirectWithConsistentDNSAndThen(ConnectionReset|EOF)ForHTTPS",
        "blocked",
        "tls.reset",
        "tls",
    ),
    (
        r"^redirectWithConsistentDNSAndThen(ConnectionReset|EOF)ForHTTP",
        "blocked",
        "http.reset",
        "http",
    ),
    (r"^redirectWithConsistentDNSAndThenNXDOMAIN", "blocked", "dns.nxdomain", "dns"),
    (r"^redirectWithConsistentDNSAndThenTimeoutForHTTPS", "blocked", "tls.timeout", "tls"),
    (r"^redirectWithConsistentDNSAndThenTimeoutForHTTP", "blocked", "http.timeout", "http"),
    # Endless redirects for the control too.
    (r"^redirectWithMoreThanTenRedirects", "down", None, "http"),
    (r"^success", "ok", None, "http"),
    (r"^tcpBlockingConnectTimeout", "blocked", "tcp.timeout", "tcp"),
    # The forged answer points at a host that refuses: the DNS is where the block is.
    (r"^tcpBlockingConnectionRefusedWithInconsistentDNS", "blocked", "dns.forged", "dns"),
    # The response starts, then the body crawls until the timeout (OONI: http-failure).
    (r"^throttling", "blocked", "throttled", "http"),
    # TLS reset on every address, including the control's (inconsistent DNS is validated by
    # the control's handshake to the answered address, so the DNS is not what blocks).
    (r"^tlsBlockingConnectionReset", "blocked", "tls.reset", "tls"),
    (r"^websiteDown(NXDOMAIN|NoAddrs)", "down", None, "dns"),
    (r"^websiteDownTCPConnect", "down", None, "tcp"),
]


def expected_for(name: str) -> tuple[str, str | None, str | None]:
    for pattern, verdict, method, layer in RULES:
        if re.match(pattern, name):
            return verdict, method, layer
    raise AssertionError(f"no rule for scenario {name}")


def _label(verdict: str, method: str | None) -> str:
    return f"blocked:{method}" if verdict == "blocked" else verdict


@pytest.fixture(scope="module")
def qa_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "ooni" / "wc05_qa").glob("*.json"))
    assert len(files) == 50
    return files


@pytest.fixture(scope="module")
def fingerprints(shared_data: Path) -> Fingerprints:
    return Fingerprints.load(shared_data / "fingerprints")


def test_every_scenario_gets_its_verdict(qa_files, fingerprints, capsys):
    confusion: Counter[tuple[str, str]] = Counter()
    wrong = []
    for path in qa_files:
        verdict, method, layer = expected_for(path.stem)
        record = analyze(json.loads(path.read_bytes()), fingerprints=fingerprints).to_record()
        got = _label(record["verdict"], record["method"])
        want = _label(verdict, method)
        confusion[(want, got)] += 1
        problems = []
        if got != want:
            problems.append(f"got {got}")
        if layer and record["layers"][layer] != {"blocked": "blocked", "down": "down"}.get(
            verdict, "ok"
        ):
            problems.append(f"layer {layer}={record['layers'][layer]}")
        if record["verdict"] in ("ok", "blocked", "down"):
            assert 0.5 <= record["confidence"] <= 1.0, path.stem
        assert record["evidence"], path.stem
        assert not any("could not be analysed" in e for e in record["evidence"]), path.stem
        if problems:
            wrong.append(f"{path.stem}: want {want} ({layer}); " + ", ".join(problems))

    labels = sorted({w for w, _ in confusion} | {g for _, g in confusion})
    width = max(len(label) for label in labels)
    lines = ["", "wc05_qa confusion table (rows: expected from the scenario name, cols: got)"]
    lines.append(" " * (width + 2) + " ".join(f"{i:>3}" for i in range(len(labels))))
    for i, want in enumerate(labels):
        row = " ".join(f"{confusion[(want, got)] or '.':>3}" for got in labels)
        lines.append(f"{want:<{width}}  {row}   [{i}]")
    matched = sum(n for (w, g), n in confusion.items() if w == g)
    lines.append(f"{matched}/{len(qa_files)} on the diagonal")
    with capsys.disabled():
        print("\n".join(lines))
    assert not wrong, "\n".join(wrong)


def test_http_diff_without_fingerprints_is_a_strong_diff(qa_files):
    """No fingerprint database: the Access Denied page is still told from the control's."""
    for path in qa_files:
        if not path.stem.startswith("httpDiff"):
            continue
        v = analyze(json.loads(path.read_bytes()), fingerprints=Fingerprints.empty())
        assert (v.verdict, v.method, v.confirmed) == ("blocked", "http.diff", False), path.stem
        assert any("title 'Access Denied'" in e for e in v.evidence), v.evidence


def test_confirmed_only_with_a_fingerprint(qa_files, fingerprints):
    for path in qa_files:
        v = analyze(json.loads(path.read_bytes()), fingerprints=fingerprints)
        assert v.confirmed == (v.fingerprint is not None)
        if v.confirmed:
            assert v.verdict == "blocked"


def test_verdict_record_shape(qa_files, fingerprints):
    m = json.loads(
        (qa_files[0].parent / "tlsBlockingConnectionResetWithConsistentDNS.json").read_bytes()
    )
    record = analyze(m, fingerprints=fingerprints).to_record()
    assert list(record) == [
        "measurement_uid",
        "report_id",
        "input",
        "target",
        "probe_cc",
        "probe_asn",
        "measurement_start_time",
        "verdict",
        "method",
        "confidence",
        "confirmed",
        "fingerprint",
        "evidence",
        "layers",
    ]
    assert list(record["layers"]) == ["dns", "tcp", "tls", "http"]
    assert record["measurement_start_time"] == "2024-02-12T20:33:47Z"
    assert record["probe_asn"] == "AS137"
    assert record["target"] == "www.example.com"
    assert record["evidence"][0] == (
        "tls_handshake 93.184.216.34:443 sni=www.example.com: connection_reset"
    )
    assert "control: tls ok" in record["evidence"]
    # No uid in the file: derived, stable, and the same on a second run (pure function).
    again = analyze(m, fingerprints=fingerprints).to_record()
    assert record == again


def test_idna_target_is_decoded(qa_files):
    path = qa_files[0].parent / "idnaWithoutCensorshipWithFirstLetterUppercase.json"
    v = analyze(json.loads(path.read_bytes()))
    assert v.target == "яндекс.рф"


def test_testbed_ranges_are_public_with_an_address_plan(qa_files):
    """An address plan that declares 10.10.34.0/24 public turns the bogon answer into a forgery."""
    m = json.loads((qa_files[0].parent / "dnsBlockingBOGON.json").read_bytes())
    assert analyze(m).method == "dns.bogon"
    plan = AddressPlan()
    import ipaddress

    plan.public_prefixes = [ipaddress.ip_network("10.10.34.0/24")]
    v = analyze(m, plan=plan.freeze())
    assert (v.verdict, v.method) == ("blocked", "dns.forged")
