"""The archive and the pipeline on it: durable blocks, torn tails, replay, rebuild."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from censorwatch.collector.archive import Archive
from censorwatch.collector.pipeline import Pipeline
from censorwatch.store import open_store
from censorwatch.store.base import Filters
from collector_helpers import make_measurement, template


def lines(n: int, tag: str = "r") -> list[bytes]:
    return [msgspec.json.encode({"i": i, "tag": tag}) for i in range(n)]


def test_blocks_come_back_in_order_and_segments_are_plain_gzip(tmp_path: Path) -> None:
    archive = Archive(tmp_path, segment_bytes=100)
    locations = [archive.append(lines(5, f"b{k}"))[0] for k in range(6)]
    archive.close()
    assert len({loc.segment for loc in locations}) > 1  # rotated
    blocks = list(Archive(tmp_path).blocks())
    assert [b.location for b in blocks] == locations
    assert [msgspec.json.decode(b.lines[0])["tag"] for b in blocks] == [f"b{k}" for k in range(6)]
    assert archive.read_block(locations[3]) == lines(5, "b3")
    everything = b"".join(
        gzip.decompress(p.read_bytes()) for p in sorted(tmp_path.glob("seg-*.jsonl.gz"))
    )
    assert everything.count(b"\n") == 30


@pytest.mark.parametrize("damage", ["truncate", "flip_crc", "garbage"])
def test_torn_last_block_is_dropped_on_recovery(tmp_path: Path, damage: str) -> None:
    archive = Archive(tmp_path)
    archive.append(lines(3, "kept"))
    _, end = archive.append(lines(3, "torn"))
    archive.close()
    seg = tmp_path / end.segment
    data = seg.read_bytes()
    if damage == "truncate":
        seg.write_bytes(data[:-7])
    elif damage == "flip_crc":
        seg.write_bytes(data[:-6] + bytes([data[-6] ^ 0xFF]) + data[-5:])
    else:
        seg.write_bytes(data + b"\x1f\x8b\x08\x00garbage")
    recovered = Archive(tmp_path)
    dropped = recovered.recover()
    assert dropped > 0
    tags = [msgspec.json.decode(line)["tag"] for b in recovered.blocks() for line in b.lines]
    if damage == "garbage":
        assert tags == ["kept"] * 3 + ["torn"] * 3
    else:
        assert tags == ["kept"] * 3
    recovered.append(lines(2, "after"))
    tags = [
        msgspec.json.decode(line)["tag"] for b in Archive(tmp_path).blocks() for line in b.lines
    ]
    assert tags[-2:] == ["after", "after"]


def _pipeline(tmp_path: Path, db: str = "cw.duckdb") -> Pipeline:
    return Pipeline(Archive(tmp_path / "archive"), open_store(tmp_path / db))


def _measurements(n: int) -> list[dict]:
    base = template()
    return [{**make_measurement(i, base=base), "report_id": "r1"} for i in range(n)]


def test_hooks_run_after_the_archive_is_durable_and_before_the_row_exists(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    seen: list[tuple[str, bool, bool]] = []

    def hook(uid: str, raw: bytes, measurement: dict) -> None:
        in_archive = any(uid.encode() in line for b in p.archive.blocks() for line in b.lines)
        seen.append((uid, in_archive, bool(p.store.existing([uid]))))
        assert msgspec.json.decode(raw) == measurement

    p.on_accepted.append(hook)
    items = [p.prepare(m) for m in _measurements(3)]
    outcomes = p.commit([*items, items[0]])
    assert [o.stored for o in outcomes] == [True, True, True, False]
    assert [s[0] for s in seen] == [i.measurement_uid for i in items]
    assert all(in_archive and not in_db for _, in_archive, in_db in seen)
    # Submitting again stores nothing and calls no hook.
    assert [o.stored for o in p.commit(items)] == [False, False, False]
    assert len(seen) == 3 and p.store.count() == 3


def test_a_crash_between_fsync_and_insert_is_replayed(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    stored = p.commit([p.prepare(m) for m in _measurements(4)[:2]])
    lost = [p.prepare(m) for m in _measurements(4)[2:]]
    p.archive.append([item.envelope() for item in lost])  # durable, but never inserted
    p.store.close()
    p2 = _pipeline(tmp_path)
    assert p2.store.count() == 2
    assert p2.catch_up() == 2
    assert p2.catch_up() == 0
    uids = {o.measurement_uid for o in stored} | {i.measurement_uid for i in lost}
    assert {r["measurement_uid"] for r in p2.store.query(Filters(), limit=10, offset=0)} == uids
    raw = p2.raw(lost[1].measurement_uid)
    assert raw is not None and raw["input"] == lost[1].measurement["input"]


@pytest.mark.slow
def test_store_rebuild_recreates_the_same_rows(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    p.commit([p.prepare(m) for m in _measurements(20)])
    before = p.store.query(Filters(), limit=100, offset=0)
    p.store.close()
    db = tmp_path / "rebuilt.duckdb"
    out = subprocess.run(
        [sys.executable, "-m", "censorwatch", "store", "rebuild", "--db", str(db),
         "--archive", str(tmp_path / "archive")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "20 measurements" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "censorwatch", "store", "optimize", "--db", str(db)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and "20 measurements" in out.stdout, out.stderr
    store = open_store(db, read_only=True)
    try:
        after = store.query(Filters(), limit=100, offset=0)
    finally:
        store.close()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "received_at"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)


def test_batch_hooks_see_each_commit_once(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    calls: list[list[str]] = []
    p.on_accepted_batch.append(lambda batch: calls.append([uid for uid, _, _ in batch]))
    items = [p.prepare(m) for m in _measurements(5)]
    p.commit(items[:3])
    p.commit(items)  # three already stored: only two are new
    assert calls == [[i.measurement_uid for i in items[:3]], [i.measurement_uid for i in items[3:]]]
