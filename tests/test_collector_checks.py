"""Report IDs, submission checks and probe-IP scrubbing."""

from __future__ import annotations

import json

import pytest

from censorwatch.collector import reports
from censorwatch.collector.validate import Invalid, check_open, check_submission, decode_json
from censorwatch.model import derive_measurement_uid
from censorwatch.scrub import SCRUBBED
from censorwatch.scrub import scrub_submission as scrub
from collector_helpers import OONI, make_measurement, template

KEY = b"k" * 32


def test_report_ids_look_like_oonis_and_cannot_be_forged() -> None:
    rid = reports.mint(KEY, "web_connectivity", "PK", "AS17557")
    assert reports.REPORT_ID_RE.match(rid)
    assert "_webconnectivity_PK_17557_n1_" in rid
    report = reports.verify(KEY, rid)
    assert report == reports.Report(rid, "webconnectivity", "PK", "AS17557")
    assert reports.verify(b"other-key" * 4, rid) is None
    assert reports.verify(KEY, rid.replace("_PK_", "_IR_")) is None
    assert reports.verify(KEY, rid[:-1] + ("x" if rid[-1] != "x" else "y")) is None
    assert reports.mint(KEY, "web_connectivity", "PK", "AS17557") != rid


def test_the_report_key_is_created_once_and_private(tmp_path) -> None:
    key = reports.load_key(tmp_path)
    assert len(key) == 32 and reports.load_key(tmp_path) == key
    assert (tmp_path / "report.key").stat().st_mode & 0o077 == 0


def _submission(m: dict, rid: str) -> dict:
    return {"format": "json", "content": {**m, "report_id": rid}}


def test_real_ooni_measurements_pass_the_checks() -> None:
    for path in sorted((OONI / "examples").glob("*.json")) + sorted((OONI / "odd").glob("*.json")):
        m = json.loads(path.read_text())
        rid = reports.mint(KEY, m["test_name"], m["probe_cc"], m["probe_asn"])
        content = check_submission(_submission(m, rid), reports.verify(KEY, rid))
        assert content.get("input") == m.get("input"), path.name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probe_cc": "IR"}, "probe_cc"),
        ({"probe_asn": "AS1"}, "probe_asn"),
        ({"test_name": "signal"}, "test_name"),
        ({"measurement_start_time": "2099-01-01 00:00:00"}, "plausible"),
        ({"measurement_start_time": "soon"}, "not a time"),
        ({"input": 42}, "input"),
        ({"test_keys": []}, "test_keys"),
        ({"report_id": "20240101T000000Z_x_PK_1_n1_AAAAAAAAAAAAAAAA"}, "report_id"),
    ],
)
def test_inconsistent_submissions_are_refused_with_the_reason(change: dict, message: str) -> None:
    m = make_measurement(1, base=template())
    rid = reports.mint(KEY, m["test_name"], m["probe_cc"], m["probe_asn"])
    content = {**m, "report_id": rid, **change}
    with pytest.raises(Invalid, match=message):
        check_submission({"format": "json", "content": content}, reports.verify(KEY, rid))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff{}", "UTF-8"),
        (b"{", "not valid JSON"),
        (b"[" * 2000 + b"]" * 2000, "nests deeper"),
        (b'{"a":"\\udc00"}', "surrogate"),
    ],
)
def test_bodies_that_are_not_storable_json_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        decode_json(body)


def test_report_open_requests() -> None:
    assert check_open({"test_name": "x", "probe_cc": "PK", "probe_asn": "AS1"}) == {
        "test_name": "x",
        "probe_cc": "PK",
        "probe_asn": "AS1",
    }
    for bad in ({"test_name": "x", "probe_cc": "PK"}, {"format": "yaml"}, []):
        with pytest.raises(Invalid):
            check_open(bad)


def test_scrub_removes_the_submitter_address_everywhere_but_keeps_evidence() -> None:
    m = json.loads((OONI / "odd" / "web_connectivity_b64_hdr.json").read_text())
    probe_ip = m["probe_ip"]
    assert probe_ip == "202.138.55.172"
    m["test_keys"]["client_resolver"] = "202.138.55.172"
    m["test_keys"]["note"] = "seen from 2001:db8::7 and 1202.138.55.1720 and 10.10.34.35"
    m["test_keys"]["loopback"] = "127.0.0.1"
    out = scrub(m, ["2001:0db8:0000:0000:0000:0000:0000:0007"])
    text = json.dumps(out)
    assert "202.138.55.172" not in text.replace("1202.138.55.1720", "")
    assert "1202.138.55.1720" in text  # not an occurrence of the address
    assert "2001:db8::7" not in text and out["test_keys"]["client_resolver"] == SCRUBBED
    assert "10.10.34.35" in text and out["test_keys"]["loopback"] == "127.0.0.1"
    assert out["probe_ip"] == "127.0.0.1"
    assert m["probe_ip"] == probe_ip  # the input is not modified


def test_scrubbing_keeps_the_uid_stable() -> None:
    m = make_measurement(3, base=template())
    once = scrub(m, ["198.51.100.9"])
    assert derive_measurement_uid(scrub(once, ["198.51.100.9"])) == derive_measurement_uid(once)
