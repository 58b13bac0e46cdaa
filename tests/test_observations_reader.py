"""The one JSON reader: JSONL read in blocks numbers lines as a whole read does, standard input
(plain or gzip), lines too long to hold, and the callers that read through it."""

from __future__ import annotations

import gzip
import io
import json
import random
import sys
from pathlib import Path

import pytest

from censorwatch.app.commands.events import read_verdicts
from censorwatch.app.commands.evidence import iter_measurement_files
from censorwatch.observations import reader
from censorwatch.observations.reader import iter_json_objects


def _summary(path: Path) -> list[tuple[str, bool, str | None, str | None]]:
    return [
        (i.source, i.ok, (i.error or "").split(":")[0] or None, json.dumps(i.record))
        for i in iter_json_objects(path)
    ]


def _mixed_jsonl(seed: int) -> str:
    rng = random.Random(seed)
    lines = [json.dumps({"n": 0})]
    for n in range(1, 400):
        roll = rng.random()
        if roll < 0.1:
            lines.append("")
        elif roll < 0.15:
            lines.append("{broken")
        elif roll < 0.2:
            lines.append("[1, 2]")
        else:
            lines.append(json.dumps({"n": n, "pad": "é" * rng.randint(0, 60)}))
    return "".join(line + rng.choice(["\n", "\r\n"]) for line in lines)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_jsonl_read_in_small_blocks_reads_as_a_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(_mixed_jsonl(seed), encoding="utf-8")
    whole = _summary(path)
    assert any(not ok for _, ok, _, _ in whole) and sum(ok for _, ok, _, _ in whole) > 300
    for block in (17, 64, 1000):
        monkeypatch.setattr(reader, "BLOCK_BYTES", block)
        assert _summary(path) == whole, block


def test_a_too_long_line_is_named_and_reading_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "BLOCK_BYTES", 32)
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 100)
    path = tmp_path / "long.jsonl"
    huge = json.dumps({"body": "x" * 1000})
    path.write_text("\n".join([json.dumps({"n": 1}), huge, json.dumps({"n": 3}), huge, "{}"]))
    items = list(iter_json_objects(path))
    assert [(i.source, i.ok) for i in items] == [
        (f"{path}:1", True),
        (f"{path}:2", False),
        (f"{path}:3", True),
        (f"{path}:4", False),
        (f"{path}:5", True),
    ]
    assert "longer than 100 bytes" in (items[1].error or "")
    assert items[2].record == {"n": 3}


def test_a_large_json_document_is_still_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "BLOCK_BYTES", 64)
    path = tmp_path / "doc.json"
    doc = [{"n": n, "text": "line\nbreak"} for n in range(50)]
    path.write_text(json.dumps(doc, indent=2))
    items = list(iter_json_objects(path))
    assert [i.record for i in items] == doc
    assert items[7].source == f"{path}[7]"
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"big": "y" * 500}))  # one line longer than a block
    assert [(i.source, i.ok) for i in iter_json_objects(one)] == [(str(one), True)]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_standard_input(monkeypatch: pytest.MonkeyPatch, compress: bool) -> None:
    data = b'{"a": 1}\nnot json\n{"a": 2}\n'
    _stdin(monkeypatch, gzip.compress(data) if compress else data)
    items = list(iter_json_objects(["-"]))
    assert [(i.source, i.ok) for i in items] == [("-:1", True), ("-:2", False), ("-:3", True)]


def test_a_gzip_file_cut_short_keeps_what_came_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "BLOCK_BYTES", 256)  # a file of many blocks, read as a stream
    lines = b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(2000))
    packed = gzip.compress(lines)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    items = list(iter_json_objects(path))
    assert items[-1].source == str(path) and "cannot read" in (items[-1].error or "")
    read = [i.record["n"] for i in items if i.ok and i.record]
    assert read == list(range(len(read))) and len(read) > 100


def test_a_directory_without_files_names_what_was_looked_for(tmp_path: Path) -> None:
    [item] = iter_json_objects(tmp_path, what="verdict")
    assert item.error == "no verdict files (.json, .jsonl, .gz) found"


def test_events_and_evidence_read_through_the_one_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"measurement_uid": "u1", "verdict": "ok"}
    path = tmp_path / "v.jsonl.gz"
    path.write_bytes(gzip.compress(f"{json.dumps(good)}\n{{oops\n[]\n".encode()))
    errors: list[str] = []
    assert list(read_verdicts([path], errors)) == [good]
    assert [e.split(": ")[0] for e in errors] == [f"{path}:2", f"{path}:3"]
    # A directory of JSON lists, files and a broken file: the export skips and names the bad.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text(json.dumps([good, good]))
    (tmp_path / "d" / "b.json").write_text("{")
    assert list(iter_measurement_files([tmp_path / "d"])) == [good, good]
    assert f"skipped {tmp_path / 'd' / 'b.json'}: invalid JSON" in capsys.readouterr().err
