"""One bad item never stops `censorwatch analyze`: it is named, and the good input beside it
is still analysed (bytes that are not UTF-8, nesting past the decoder's limit, a small gzip
that inflates to more lines than any measurement file holds)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import msgspec

from censorwatch.analysis.core import analyze_files
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.netinfo import address_plan
from censorwatch.observations import reader

GOOD = sorted((Path(__file__).resolve().parents[2] / "shared/data/ooni/wc05_qa").glob("*.json"))[0]


def _good_line() -> bytes:
    return msgspec.json.encode(msgspec.json.decode(GOOD.read_bytes()))


def _hostile_tree(tmp_path: Path) -> Path:
    good = _good_line()
    (tmp_path / "a-not-utf8.jsonl").write_bytes(b'{"input": "\xff\xfe"}\n' + good + b"\n")
    (tmp_path / "b-deep.jsonl").write_bytes(b"[" * 200_000 + b"]" * 200_000 + b"\n" + good + b"\n")
    (tmp_path / "c-deep-document.json").write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    (tmp_path / "d-good.jsonl").write_bytes(good + b"\n")
    return tmp_path


def test_the_cli_names_each_bad_item_and_analyses_the_rest(tmp_path: Path) -> None:
    tree = _hostile_tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "censorwatch", "analyze", "--json", str(tree)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    verdicts = [msgspec.json.decode(line) for line in proc.stdout.splitlines()]
    # The good line after each bad one, and the good file: three verdicts, one measurement.
    assert len(verdicts) == 3
    assert {v["input"] for v in verdicts} == {msgspec.json.decode(_good_line())["input"]}
    err = proc.stderr.decode()
    assert "a-not-utf8.jsonl:1: invalid JSON: not UTF-8" in err
    assert "b-deep.jsonl:1: invalid JSON: nested too deeply" in err
    assert "c-deep-document.json: invalid JSON: nested too deeply" in err
    assert "Traceback" not in err


def test_a_file_of_too_many_lines_is_cut_and_the_next_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "MAX_ITEMS_PER_FILE", 1000)
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb") as fh:
        fh.write(b"{}\n" * 5000)
    good = tmp_path / "good.jsonl"
    good.write_bytes(_good_line() + b"\n")
    results = list(analyze_files([bomb, good], Fingerprints.empty(), address_plan(None)))
    problems = [(source, why) for source, result, why in results if result is None]
    assert problems == [
        (f"{bomb}:1001", "more than 1,000 lines: the rest of the file is not read (split it)")
    ]
    analysed = [source for source, result, _ in results if result is not None]
    assert len(analysed) == 1000 + 1 and analysed[-1] == f"{good}"


def test_a_measurement_of_millions_of_values_is_refused_unbuilt(tmp_path, monkeypatch):
    from censorwatch.analysis import core

    monkeypatch.setattr(core, "MAX_VALUES", 10_000)  # the line is 60 kB: over it in bytes too
    line = b'{"test_name": "web_connectivity", "x_pad": [' + b",".join([b"{}"] * 20_000) + b"]}"
    path = tmp_path / "padded.jsonl"
    path.write_bytes(line + b"\n" + _good_line() + b"\n")
    results = list(analyze_files([path], Fingerprints.empty(), address_plan(None)))
    assert [(s, why) for s, r, why in results if r is None] == [
        (f"{path}:1", "more than 10,000 JSON values: not read")
    ]
    assert [s for s, r, _ in results if r is not None] == [f"{path}:2"]
