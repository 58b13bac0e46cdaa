"""Reading measurements: JSON, JSONL, gzip, trees; broken files and lines are named, not fatal."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from censorwatch.observations.reader import iter_measurements


def _m(i: int) -> dict:
    return {"test_name": "web_connectivity", "input": f"http://site{i}.example/", "test_keys": {}}


def test_json_jsonl_gzip_and_directories(tmp_path: Path):
    (tmp_path / "a.json").write_text(json.dumps(_m(1), indent=2))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(_m(i)) for i in range(2, 5)) + "\n")
    sub = tmp_path / "2024" / "02"
    sub.mkdir(parents=True)
    with gzip.open(sub / "c.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(_m(5)) + "\n" + json.dumps(_m(6)) + "\n")
    (tmp_path / "notes.txt").write_text("ignored")
    items = list(iter_measurements([tmp_path]))
    assert all(i.ok for i in items)
    assert sorted(i.measurement["input"] for i in items) == [
        f"http://site{i}.example/" for i in range(1, 7)
    ]
    sources = {i.source for i in items}
    assert f"{tmp_path / 'b.jsonl'}:3" in sources
    assert f"{sub / 'c.jsonl.gz'}:2" in sources
    assert str(tmp_path / "a.json") in sources


def test_broken_line_is_named_and_reading_goes_on(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(_m(1)) + "\n{not json\n[1, 2]\n" + json.dumps(_m(2)) + "\n")
    items = list(iter_measurements([path]))
    assert [i.ok for i in items] == [True, False, False, True]
    assert items[1].source == f"{path}:2" and "invalid JSON" in items[1].error
    assert items[2].source == f"{path}:3" and "not a JSON object" in items[2].error


def test_broken_files_are_named(tmp_path: Path):
    (tmp_path / "a.json").write_text('{\n  "input": "http://x/",\n  "test_keys": {\n')
    (tmp_path / "b.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (tmp_path / "c.json").write_text("")
    (tmp_path / "d.json").write_text(json.dumps(_m(4)))
    items = {Path(i.source).name: i for i in iter_measurements([tmp_path])}
    assert "invalid JSON" in items["a.json"].error
    assert "cannot read" in items["b.json.gz"].error
    assert items["c.json"].error == "empty file"
    assert items["d.json"].ok
    missing = list(iter_measurements([tmp_path / "nope.json"]))
    assert missing[0].error == "no such file or directory"


def test_json_array_documents(tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([_m(1), 5, _m(2)]))
    items = list(iter_measurements([path]))
    assert [i.ok for i in items] == [True, False, True]
    assert items[1].source == f"{path}[1]"


def test_real_ooni_files_all_load(shared_data: Path):
    items = list(iter_measurements([shared_data / "ooni"]))
    assert len(items) == 69
    assert all(i.ok for i in items), [i.error for i in items if not i.ok]
