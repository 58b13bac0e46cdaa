"""Hostile OONI raw files: every bad line and bad file is named and skipped, the rest is
ingested; a file not read to its end is recorded as done with errors, so reruns move on and
``--retry-failed`` reads it again; the good lines of a bad file are stored exactly once; and a
gzip bomb costs bounded time and memory. Against a directory and an S3-compatible server."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from censorwatch.ingest.decode import decode_measurement
from censorwatch.ingest.lines import Limits, UnreadableFile, iter_lines
from censorwatch.store import open_store
from censorwatch.store.base import Filters
from collector_helpers import OONI
from s3_helpers import S3_ENV, local_s3, moto_command

DAY = "raw/20240216/10/PK/webconnectivity"


def measurements(n: int, start: int = 0) -> list[bytes]:
    """``n`` real OONI measurements as JSONL lines, each with its own time (so its own UID)."""
    qa = [json.loads(p.read_text()) for p in sorted((OONI / "wc05_qa").glob("*.json"))]
    lines = []
    for i in range(start, start + n):
        m = {**qa[i % len(qa)], "probe_cc": "PK", "probe_asn": "AS17557"}
        m["measurement_start_time"] = f"2024-02-16 10:{i // 60:02d}:{i % 60:02d}"
        m.pop("measurement_uid", None)
        lines.append(json.dumps(m).encode())
    return lines


def gz(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def put(root: Path, name: str, data: bytes) -> Path:
    path = root / DAY / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run(tmp: Path, source: str, *args: str, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "censorwatch", "ingest", "ooni", source,
         "--db", str(tmp / "cw.duckdb"), "--archive", str(tmp / "archive"), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip


def stored_times(tmp: Path) -> list[str]:
    """The stored measurements' start times, one per row (duplicates would repeat)."""
    store = open_store(tmp / "cw.duckdb", read_only=True)
    try:
        rows = store.query(Filters(), limit=100_000, offset=0)
    finally:
        store.close()
    return sorted(r["measurement_start_time"].isoformat() for r in rows)


def times_of(lines: list[bytes]) -> list[str]:
    return sorted(json.loads(x)["measurement_start_time"].replace(" ", "T") for x in lines)


def ingest_errors(tmp: Path, source: str, name: str) -> str | None:
    store = open_store(tmp / "cw.duckdb")
    try:
        key = f"{source.rstrip('/')}/{DAY}/{name}"
        assert store.ingested(key)
        return store.ingest_errors(key)
    finally:
        store.close()


# -- bad lines: named, skipped, the file is done --------------------------------------------


def test_bad_lines_are_named_and_the_good_ones_stored(tmp_path: Path) -> None:
    good = measurements(4)
    not_utf8 = good[1].replace(b'"probe_cc"', b'"x_note": "caf\xe9", "probe_cc"')
    deep = b'{"x": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    deep65 = b'{"x": ' + b"[" * 64 + b"]" * 64 + b"}"
    surrogate = good[2].replace(b'"probe_cc"', b'"x_note": "\\udc00", "probe_cc"')
    lines = [good[0], not_utf8, deep, deep65, surrogate, good[3]]
    tree = tmp_path / "bucket"
    put(tree, "a.jsonl.gz", gz(lines))
    put(tree, "b.jsonl.gz", gz(measurements(3, start=10)))
    proc = run(tmp_path, str(tree))
    assert proc.returncode == 0, proc.stderr
    name = f"{tree}/{DAY}/a.jsonl.gz"
    errors = proc.stderr.splitlines()
    at = not_utf8.index(b"\xe9")
    assert f"{name}:2: not UTF-8 (byte {at}: 0xe9)" in errors
    assert f"{name}:3: JSON nests deeper than 64 levels" in errors
    assert f"{name}:4: JSON nests deeper than 64 levels" in errors
    assert any(e.startswith(f"{name}:5: invalid JSON") for e in errors)
    assert "4 unreadable" in proc.stdout and "bad: 0 files" in proc.stdout
    want = times_of([good[0], good[3], *measurements(3, start=10)])
    assert stored_times(tmp_path) == want
    assert ingest_errors(tmp_path, str(tree), "a.jsonl.gz") is None  # read to its end: done


# -- bad files: named, done with errors, reruns move on, --retry-failed reads them again ------


def test_a_truncated_gzip_is_done_with_errors_and_retried(tmp_path: Path) -> None:
    tree = tmp_path / "bucket"
    lines = measurements(30)
    whole = gz(lines)
    put(tree, "a.jsonl.gz", whole[: len(whole) * 2 // 3])  # an upload cut short
    put(tree, "b.jsonl.gz", gz(measurements(2, start=40)))
    proc = run(tmp_path, str(tree))
    assert proc.returncode == 1, proc.stderr
    name = f"{tree}/{DAY}/a.jsonl.gz"
    assert f"{name}: truncated: the gzip stream ends early" in proc.stderr
    assert "recorded as done with errors" in proc.stderr
    assert "bad: 1 files not read to their end" in proc.stdout
    first = stored_times(tmp_path)
    partial = [t for t in first if t in times_of(lines)]
    assert 0 < len(partial) < len(lines)  # the measurements before the cut are in
    assert len(first) == len(partial) + 2  # and the file beside it
    assert "truncated" in ingest_errors(tmp_path, str(tree), "a.jsonl.gz")

    # A rerun moves on (nothing new, nothing failed) and says what is left behind.
    proc = run(tmp_path, str(tree))
    assert proc.returncode == 0, proc.stderr
    assert "ingested 0 measurements from 0 files" in proc.stdout
    assert "2 files already ingested" in proc.stdout
    assert "1 files done with errors by an earlier run (--retry-failed" in proc.stdout
    assert stored_times(tmp_path) == first

    # Retried while still bad: read again, still done with errors, nothing stored twice.
    proc = run(tmp_path, str(tree), "--retry-failed")
    assert proc.returncode == 1, proc.stderr
    assert "ingested" in proc.stdout and "from 1 files" in proc.stdout
    assert "(0 new" in proc.stdout and "1 files retried" in proc.stdout
    assert stored_times(tmp_path) == first
    assert "truncated" in ingest_errors(tmp_path, str(tree), "a.jsonl.gz")

    # The whole file appears (the upload completed): the retry finishes it, and each of its
    # measurements is stored exactly once.
    put(tree, "a.jsonl.gz", whole)
    proc = run(tmp_path, str(tree), "--retry-failed")
    assert proc.returncode == 0, proc.stderr
    assert f"ingested {len(lines)} measurements from 1 files" in proc.stdout
    assert f"({len(lines) - len(partial)} new" in proc.stdout
    rows = stored_times(tmp_path)
    assert rows == sorted(set(times_of(lines)) | set(first))
    assert len(rows) == len(set(rows)) == len(lines) + 2
    assert ingest_errors(tmp_path, str(tree), "a.jsonl.gz") is None
    proc = run(tmp_path, str(tree), "--retry-failed")  # done now: nothing left to retry
    assert proc.returncode == 0 and "ingested 0 measurements from 0 files" in proc.stdout


def test_garbage_named_jsonl_gz_is_named_and_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "bucket"
    put(tree, "a.jsonl.gz", b"".join(line + b"\n" for line in measurements(3)))  # not gzip
    put(tree, "b.jsonl.gz", gz(measurements(2, start=10)) + b"trailing junk")
    put(tree, "c.jsonl.gz", b"")  # an empty object: nothing in it, nothing wrong
    put(tree, "d.jsonl.gz", gz(measurements(2, start=20)))
    (tree / DAY / "e.jsonl.gz").symlink_to(tmp_path / "gone")  # listed, cannot be opened
    proc = run(tmp_path, str(tree))
    assert proc.returncode == 1, proc.stderr
    assert f"{tree}/{DAY}/a.jsonl.gz: not gzip" in proc.stderr
    assert f"{tree}/{DAY}/b.jsonl.gz: bytes after a gzip member are not gzip" in proc.stderr
    assert f"{tree}/{DAY}/e.jsonl.gz: cannot open: " in proc.stderr
    assert "bad: 3 files not read to their end" in proc.stdout
    # b's lines came before its junk; d is untouched by its neighbours.
    assert stored_times(tmp_path) == times_of(measurements(2, start=10) + measurements(2, 20))
    proc = run(tmp_path, str(tree))
    assert proc.returncode == 0 and "5 files already ingested" in proc.stdout
    assert "3 files done with errors by an earlier run" in proc.stdout


# -- bounded: a gzip bomb of tiny lines, and a line of millions of values --------------------


def _bomb_of_empty_objects(total_bytes: int) -> bytes:
    """A gzip of ``total_bytes`` of ``{}`` lines, made of repeated members (a few KB each)."""
    block = b"{}\n" * (1 << 20)
    member = gzip.compress(block, compresslevel=9)
    return member * (total_bytes // len(block))


#: Runs a command and writes its peak RSS to argv[1]. The command is the child of this small
#: process, not of the test's: a child's peak counts the memory of the process it was forked
#: from, until it execs.
PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as fh:
    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


@pytest.mark.slow
def test_a_gzip_bomb_costs_bounded_time_and_memory(tmp_path: Path) -> None:
    tree = tmp_path / "bucket"
    bomb = _bomb_of_empty_objects(1 << 30)  # a billion bytes of "{}" lines
    assert len(bomb) < 2 << 20
    put(tree, "a.jsonl.gz", bomb)
    pad = b'"x_pad": [' + b"{}," * 4_999_999 + b"{}], "  # 15 MB: 5 million dicts, 360 MB
    good = measurements(3, start=10)
    padded = good[0].replace(b'"probe_cc"', pad + b'"probe_cc"')
    put(tree, "b.jsonl.gz", gz([padded, *good[1:]]))
    out, err, peak = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "peak.txt"
    started = time.monotonic()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        child = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(peak),
             sys.executable, "-m", "censorwatch", "ingest", "ooni", str(tree),
             "--db", str(tmp_path / "cw.duckdb"), "--archive", str(tmp_path / "archive")],
            stdout=stdout, stderr=stderr, timeout=300,
        )  # fmt: skip
    elapsed = time.monotonic() - started
    peak_mb = int(peak.read_text()) / 1024  # kilobytes on Linux
    stdout_text, stderr_lines = out.read_text(), err.read_text().splitlines()
    assert child.returncode == 1, stderr_lines[-5:]
    name = f"{tree}/{DAY}"
    assert f"{name}/a.jsonl.gz: more than 1000000 lines; the rest is not read" in "\n".join(
        stderr_lines
    )
    assert f"{name}/a.jsonl.gz: 999900 more bad lines (not named)" in stderr_lines
    assert f"{name}/b.jsonl.gz:1: more than {Limits().max_line_values} JSON values" in (
        stderr_lines
    )
    assert len(stderr_lines) < 110  # named up to a bound, then counted
    assert "1000001 unreadable" in stdout_text and "bad: 1 files" in stdout_text
    assert stored_times(tmp_path) == times_of(good[1:])
    assert elapsed < 60, elapsed
    assert peak_mb < 300, peak_mb  # decoding the pad alone would take more than this


# -- the reader's limits, unit by unit --------------------------------------------------------


def test_lines_over_the_limit_are_numbered_and_skipped() -> None:
    limits = Limits(max_line_bytes=10)
    data = b"short\n" + b"x" * 5_000_000 + b"\nalso short\n\n" + b"y" * 11
    got = list(iter_lines(io.BytesIO(gzip.compress(data)), limits))
    assert got == [(1, b"short"), (2, None), (3, b"also short"), (4, b""), (5, None)]


def test_members_are_read_in_turn_and_bytes_are_capped_while_inflating() -> None:
    two = gzip.compress(b"a\nb") + b"\0\0" + gzip.compress(b"c\n")
    assert list(iter_lines(io.BytesIO(two), Limits())) == [(1, b"a"), (2, b"bc")]
    bomb = _bomb_of_empty_objects(64 << 20)
    seen = 0
    limits = Limits(max_file_bytes=8 << 20, max_file_lines=1 << 30)
    with pytest.raises(UnreadableFile, match="inflates to more than 8388608 bytes"):
        for _ in iter_lines(io.BytesIO(bomb), limits):
            seen += 1
    assert seen <= (8 << 20) // 3


def test_corrupt_gzip_is_named() -> None:
    data = bytearray(gzip.compress(b"".join(measurements(3))))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(UnreadableFile, match=r"corrupt gzip|CRC|truncated"):
        list(iter_lines(io.BytesIO(bytes(data)), Limits()))


def test_a_line_with_too_many_values_is_refused_before_it_is_built() -> None:
    limits = Limits(max_line_values=1000)
    many = b'{"a": [' + b",".join([b"1"] * 2000) + b"]}"
    assert decode_measurement(many, limits) == "more than 1000 JSON values"
    commas_in_text = measurements(1)[0].replace(
        b'"probe_cc"', b'"x": "' + b"," * 5000 + b'", "probe_cc"'
    )
    assert isinstance(decode_measurement(commas_in_text, limits), dict)  # strings don't count
    # 3,000 open arrays are over the value budget (refused unbuilt) as well as broken JSON.
    assert decode_measurement(b"[" * 3000, limits) == "more than 1000 JSON values"
    assert decode_measurement(b"[" * 300, limits).startswith(("invalid JSON", "JSON nests"))
    assert decode_measurement(b'{"test_name": "x"}', limits) == (
        "not a measurement: no probe_cc string"
    )


# -- the same over S3 --------------------------------------------------------------------------


@pytest.mark.skipif(moto_command() is None, reason="moto (S3-compatible server) is not installed")
@pytest.mark.slow
def test_s3_bad_files_are_named_recorded_and_retried(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    env = S3_ENV
    with local_s3("ooni-data") as (s3, endpoint):
        lines = measurements(20)
        whole = gz(lines)
        bad_line = lines[0].replace(b'"probe_cc"', b'"x": "\xff", "probe_cc"')
        objects = {
            "a.jsonl.gz": whole[: len(whole) // 2],
            "b.jsonl.gz": b"<html>not found</html>",
            "c.jsonl.gz": gz([bad_line, *measurements(2, start=30)]),
        }
        for name, data in objects.items():
            s3.put_object(Bucket="ooni-data", Key=f"mirror/{DAY}/{name}", Body=data)
        source = "s3://ooni-data/mirror"
        proc = run(tmp_path, source, "--endpoint-url", endpoint, env=env)
        assert proc.returncode == 1, proc.stderr
        assert f"{source}/{DAY}/a.jsonl.gz: truncated" in proc.stderr
        assert f"{source}/{DAY}/b.jsonl.gz: not gzip" in proc.stderr
        assert f"{source}/{DAY}/c.jsonl.gz:1: not UTF-8" in proc.stderr
        assert "bad: 2 files not read to their end (done with errors), 1 lines" in proc.stdout
        first = stored_times(tmp_path)
        assert set(times_of(measurements(2, start=30))) <= set(first)

        proc = run(tmp_path, source, "--endpoint-url", endpoint, env=env)
        assert proc.returncode == 0 and "3 files already ingested" in proc.stdout
        assert stored_times(tmp_path) == first

        s3.put_object(Bucket="ooni-data", Key=f"mirror/{DAY}/a.jsonl.gz", Body=whole)
        proc = run(tmp_path, source, "--endpoint-url", endpoint, "--retry-failed", env=env)
        assert proc.returncode == 1, proc.stderr  # b is still not gzip
        assert "from 2 files" in proc.stdout and "2 files retried" in proc.stdout
        rows = stored_times(tmp_path)
        assert len(rows) == len(set(rows)) == len(lines) + 2
        assert ingest_errors(tmp_path, source, "a.jsonl.gz") is None
        assert "not gzip" in ingest_errors(tmp_path, source, "b.jsonl.gz")
