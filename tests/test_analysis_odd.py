"""Odd real shapes (OONI's own backend test data) and other tests: verdicts, never crashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from censorwatch.analysis import analyze
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.observations.reader import iter_measurements


@pytest.fixture(scope="module")
def fps(shared_data: Path) -> Fingerprints:
    return Fingerprints.load(shared_data / "fingerprints")


def _load(shared_data: Path, name: str) -> dict:
    return json.loads((shared_data / "ooni" / name).read_bytes())


def test_every_odd_and_example_measurement_gets_a_verdict(shared_data: Path, fps):
    for item in iter_measurements(
        [shared_data / "ooni" / "odd", shared_data / "ooni" / "examples"]
    ):
        v = analyze(item.measurement, fingerprints=fps)
        assert v.verdict in ("ok", "blocked", "down", "unknown"), item.source
        assert v.evidence, item.source
        assert not any("could not be analysed" in e for e in v.evidence), (item.source, v.evidence)
        record = v.to_record()
        assert record["measurement_uid"]
        assert record["probe_asn"].startswith("AS")


def test_tests_without_rules_are_unknown_with_a_reason(shared_data: Path):
    # signal, tor, dnscheck... have their rules (tests/test_analysis_nettests.py); others not.
    for name in ("odd/signal_022.json", "odd/tor.json", "examples/ts-028-dnscheck.example.json"):
        m = _load(shared_data, name)
        assert analyze(m).verdict != "unknown"
        m["test_name"] = "http_header_field_manipulation"
        v = analyze(m)
        assert v.verdict == "unknown"
        assert "is not analysed" in v.evidence[0]


def test_null_test_keys(shared_data: Path):
    v = analyze(_load(shared_data, "odd/test_keys_none.json"))
    assert (v.verdict, v.evidence) == ("unknown", ["the measurement has no test_keys"])
    assert v.target == "mail.google.com"


def test_base64_location_header_to_a_blockpage_is_confirmed(shared_data: Path, fps):
    v = analyze(_load(shared_data, "odd/web_connectivity_b64_hdr.json"), fingerprints=fps)
    assert (v.verdict, v.method, v.confirmed) == ("blocked", "http.blockpage", True)
    assert v.fingerprint and "checkpoint" in v.fingerprint


def test_site_that_no_longer_exists_is_down(shared_data: Path):
    # Control: no address (only a CNAME name) and a DNS lookup error fetching the page.
    v = analyze(_load(shared_data, "odd/requests_none.json"))
    assert (v.verdict, v.layers.dns) == ("down", "down")


def test_no_control_and_a_timeout_is_unknown(shared_data: Path):
    v = analyze(_load(shared_data, "odd/web_connectivity_null.json"))
    assert v.verdict == "unknown"
    assert any("generic_timeout_error" in e for e in v.evidence)


def test_example_web_connectivity_is_ok(shared_data: Path):
    v = analyze(_load(shared_data, "examples/ts-017-web-connectivity.example.json"))
    assert (v.verdict, v.layers.tls, v.layers.http) == ("ok", "ok", "ok")


def test_input_is_never_modified(shared_data: Path):
    m = _load(shared_data, "odd/web_connectivity_b64_incorrect.json")
    before = json.dumps(m, sort_keys=True)
    m["test_keys"]["queries"][0]["answers"][1]["asn"] = "not a number"
    snapshot = json.dumps(m, sort_keys=True)
    v = analyze(m)
    assert json.dumps(m, sort_keys=True) == snapshot != before
    assert any("unexpected type" in e for e in v.evidence)
