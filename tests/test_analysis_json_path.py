"""`analyze_json(bytes)` (the bulk path) gives exactly the verdict of `analyze(dict)`."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from censorwatch.analysis.core import analyze, analyze_json
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.model import derive_measurement_uid


@pytest.fixture(scope="module")
def fps(shared_data: Path) -> Fingerprints:
    return Fingerprints.load(shared_data / "fingerprints")


def _all(shared_data: Path) -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted((shared_data / "ooni").rglob("*.json"))]


def test_same_verdicts_with_and_without_uid(shared_data: Path, fps: Fingerprints):
    measurements = _all(shared_data)
    assert len(measurements) == 69
    for m in measurements:
        plain = msgspec.json.encode(m)
        assert analyze_json(plain, fingerprints=fps) == analyze(m, fingerprints=fps)
        with_uid = dict(m, measurement_uid=derive_measurement_uid(m))
        assert analyze_json(msgspec.json.encode(with_uid), fingerprints=fps) == analyze(
            with_uid, fingerprints=fps
        )


def test_odd_types_take_the_lenient_road(shared_data: Path):
    m = json.loads((shared_data / "ooni" / "wc05_qa" / "successWithHTTPS.json").read_bytes())
    m["measurement_uid"] = "20240101T000000Z_x"
    m["test_keys"]["tcp_connect"][0]["port"] = "443"  # a string where a number belongs
    v = analyze_json(msgspec.json.encode(m))
    assert v == analyze(m)
    assert v.measurement_uid == "20240101T000000Z_x"
    assert any("unexpected type" in e for e in v.evidence)


def test_not_json_raises_decode_error():
    with pytest.raises(msgspec.DecodeError):
        analyze_json(b"{not json")
