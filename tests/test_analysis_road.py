"""The one analysis road: `censorwatch analyze` reads bytes, decodes them typed, and gives the
verdict `analyze(dict)` gives; the UID it derives is the stored one; confidences are named."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from censorwatch.analysis import core
from censorwatch.analysis.core import analyze, analyze_raw, derived_uid
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.cli import app
from censorwatch.model import derive_measurement_uid
from censorwatch.netinfo import address_plan
from censorwatch.observations.reader import iter_measurements

runner = CliRunner()
ANALYSIS = Path(core.__file__).parent


@pytest.fixture(scope="module")
def fps(shared_data: Path) -> Fingerprints:
    return Fingerprints.load(shared_data / "fingerprints")


def _measurements(shared_data: Path) -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted((shared_data / "ooni").rglob("*.json"))]


def test_derived_uid_is_the_stored_uid(shared_data: Path):
    docs = _measurements(shared_data)
    odd = [
        {**docs[0], "measurement_start_time": "not a time"},
        {**docs[0], "measurement_start_time": 17},
        {**docs[0], "x_signature": "sig"},
        {**docs[0], "measurement_uid": ""},
        {**docs[0], "probe_cc": None, "test_name": 5},
        {},
    ]
    for m in docs + odd:
        assert derived_uid(m) == derive_measurement_uid(m)


def test_cli_bytes_road_matches_the_dict_road(shared_data: Path, fps: Fingerprints, tmp_path):
    docs = _measurements(shared_data)
    stored = [{**docs[1], "measurement_uid": "20240217T000000.000001_PK_webconnectivity_x"}]
    lines = [msgspec.json.encode(m) for m in docs + stored]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b"\n".join([*lines, b"[1, 2]", b"{broken"]) + b"\n")
    fp_dir = str(shared_data / "fingerprints")
    result = runner.invoke(app, ["analyze", "--json", "--fingerprints", fp_dir, str(corpus)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == [analyze(m, fingerprints=fps).to_record() for m in docs + stored]
    assert f"{corpus}:{len(lines) + 1}: not a JSON object (list)" in result.stderr
    assert f"{corpus}:{len(lines) + 2}: invalid JSON" in result.stderr
    assert "2 item(s) could not be read" in result.stderr


def test_raw_road_reports_the_testbed(shared_data: Path, fps: Fingerprints):
    m = _measurements(shared_data)[0]
    m = {**m, "annotations": {**m.get("annotations", {}), "x_testbed": "tb1"}}
    plan = address_plan(None)
    result = analyze_raw(msgspec.json.encode(m), fps, plan)
    assert result.testbed == "tb1"
    assert result.verdict == analyze(m, fingerprints=fps, plan=plan)
    # An odd annotations value takes the dict road, with the same answer.
    odd = {**m, "annotations": ["x_testbed"]}
    assert analyze_raw(msgspec.json.encode(odd), fps, plan).testbed is None


def test_raw_reader_items_match_decoded_items(tmp_path: Path, shared_data: Path):
    one = next((shared_data / "ooni" / "wc05_qa").glob("*.json"))
    listing = tmp_path / "list.json"
    listing.write_bytes(b'[{"input": "http://a.example/"}, 3]')
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_bytes(b'{"input": "x"}\n\n[1]\n{nope\n')
    paths = [one, listing, jsonl]
    decoded = list(iter_measurements(paths))
    raw = list(iter_measurements(paths, decode=False))
    assert raw[0].raw is not None and msgspec.json.decode(raw[0].raw) == decoded[0].measurement
    assert [i.source for i in raw] == [i.source for i in decoded]
    assert [i.error for i in raw[:3]] == [i.error for i in decoded[:3]]
    assert all(i.measurement is None for i in raw)
    # JSONL lines are left for the analysis' own decoder to judge.
    assert [i.raw for i in raw[3:]] == [b'{"input": "x"}', b"[1]", b"{nope"]


def test_confidences_are_named_constants():
    """No rule writes a confidence as a bare number: each is a constant in ``confidence``."""
    numbers = []
    for path in sorted(ANALYSIS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("blocked", "done")
                and len(node.args) >= 2
            ):
                for sub in ast.walk(node.args[1]):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, float):
                        numbers.append(f"{path.name}:{node.lineno}")
    assert numbers == []


def _reference_lines(data: bytes, block: int, longest: int) -> list[bytes | None]:
    """What the JSONL reader yields, as ``splitlines`` of each block-bounded chunk would."""
    out: list[bytes | None] = []
    carry, skipping, pos = data[:block], False, block
    while True:
        cut = carry.rfind(b"\n") + 1
        if cut:
            lines = carry[:cut].splitlines()
            if skipping:
                del lines[0]
                skipping = False
            out.extend(lines)
            carry = carry[cut:]
        if len(carry) > longest:
            if not skipping:
                out.append(None)
            skipping, carry = True, b""
        chunk = data[pos : pos + block]
        pos += block
        if not chunk:
            break
        carry += chunk
    if carry:
        lines = carry.splitlines()
        if skipping:
            del lines[0]
        out.extend(lines)
    return out


def test_streamed_lines_are_numbered_as_splitlines(monkeypatch):
    """The reader hands out a block's lines one at a time; numbering and the too-long-line
    rule stay those of ``splitlines`` (``\\r`` and ``\\r\\n`` endings included)."""
    import io
    import random

    from censorwatch.observations import reader

    rng = random.Random(7)
    pieces = [b"{}", b"{x}", b"", b"a" * 30, b"bb"]
    ends = [b"\n", b"\n", b"\r\n", b"\r", b"\n\n"]
    for _ in range(500):
        data = b"".join(rng.choice(pieces) + rng.choice(ends) for _ in range(rng.randint(0, 25)))
        block, longest = rng.randint(1, 12), rng.randint(4, 40)
        monkeypatch.setattr(reader, "BLOCK_BYTES", block)
        monkeypatch.setattr(reader, "MAX_LINE_BYTES", longest)
        got = list(reader._lines(data[:block], io.BytesIO(data[block:])))
        assert got == _reference_lines(data, block, longest), (data, block, longest)
