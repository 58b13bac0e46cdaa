"""The persistent log: restarts, torn writes, refusal to rewrite history, proofs at scale."""

from __future__ import annotations

import hashlib
import json
import stat
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.evidence import merkle
from censorwatch.evidence.formats import entry_leaf_hash
from censorwatch.evidence.log import (
    RECORD_SIZE,
    ConflictingEntryError,
    LogBusyError,
    LogCorruptedError,
    TransparencyLog,
)


def fill(log: TransparencyLog, start: int, stop: int) -> None:
    log.append_many((f"uid-{i}", {"n": i, "probe_cc": "PK"}) for i in range(start, stop))


def test_log_survives_restart_with_same_heads_and_proofs(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 100)
        head = log.publish_head()
        root = log.root()
    assert stat.S_IMODE((tmp_path / "log.key").stat().st_mode) == 0o600
    with TransparencyLog(tmp_path) as log:
        assert log.size == 100
        assert log.root() == root
        assert log.latest_head() == head
        assert head.verify(log.public_key)
        proof = log.inclusion_for("uid-42", head)
        assert proof.leaf_index == 42
        assert proof.leaf_hash == entry_leaf_hash("uid-42", {"n": 42, "probe_cc": "PK"})
        assert merkle.verify_inclusion(42, 100, proof.leaf_hash, proof.audit_path, head.root_hash)


def test_append_is_idempotent_and_refuses_conflicting_content(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        assert log.append("a", {"x": 1}) == 0
        assert log.append("b", {"x": 2}) == 1
        assert log.append("a", {"x": 1}) == 0
        # The UID inside the measurement is not part of the digest: stores may add or drop it.
        assert log.append("a", {"x": 1, "measurement_uid": "a"}) == 0
        assert log.size == 2
        with pytest.raises(ConflictingEntryError):
            log.append("a", {"x": 999})
        # In a batch, a conflict does not cost the others their place in the log.
        with pytest.raises(ConflictingEntryError, match="c, a"):
            log.append_many([("c", {"x": 3}), ("c", {"x": 4}), ("a", {"x": 0}), ("d", {"x": 5})])
        assert log.size == 4
        assert log.index_of("d") == 3
        assert log.leaf(2) == entry_leaf_hash("c", {"x": 3})


def test_a_published_size_is_never_signed_twice(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 5)
        first = log.publish_head()
        assert log.publish_head() is first
        fill(log, 5, 6)
        second = log.publish_head()
        assert second.tree_size == 6 and second.timestamp >= first.timestamp
    lines = (tmp_path / "sth.jsonl").read_bytes().splitlines()
    assert [json.loads(x)["tree_size"] for x in lines] == [5, 6]
    with TransparencyLog(tmp_path) as log:
        assert log.publish_head() == second
        assert log.head_for(5) == first


def test_one_writer_per_log(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path), pytest.raises(LogBusyError):
        TransparencyLog(tmp_path)


def test_a_torn_tail_past_the_last_head_is_truncated(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 10)
        head = log.publish_head()
        fill(log, 10, 15)
        root14 = log.root(14)
    leaves = tmp_path / "leaves.bin"
    leaves.write_bytes(leaves.read_bytes()[: 14 * RECORD_SIZE + 30])  # crash mid-record 15
    sth = tmp_path / "sth.jsonl"
    sth.write_bytes(sth.read_bytes() + b'{"log_id":"ab')  # crash mid-head: never published
    with TransparencyLog(tmp_path) as log:
        assert log.size == 14
        assert log.recovered_bytes == 30
        assert log.root() == root14
        assert log.latest_head() == head
        assert log.append("uid-14", {"n": 14, "probe_cc": "PK"}) == 14
    assert leaves.stat().st_size == 15 * RECORD_SIZE
    assert sth.read_bytes().endswith(b"}\n")


def test_zeroed_records_from_a_crash_are_detected(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 4)
        log.publish_head()
    leaves = tmp_path / "leaves.bin"
    leaves.write_bytes(leaves.read_bytes() + bytes(RECORD_SIZE * 2))
    with TransparencyLog(tmp_path) as log:
        assert log.size == 4 and log.recovered_bytes == 2 * RECORD_SIZE


def test_damage_inside_a_published_tree_refuses_to_open(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 10)
        log.publish_head()
    leaves = tmp_path / "leaves.bin"
    data = bytearray(leaves.read_bytes())
    data[5 * RECORD_SIZE + 3] ^= 0x01
    leaves.write_bytes(bytes(data))
    with pytest.raises(LogCorruptedError, match="leaf record 5 is damaged"):
        TransparencyLog(tmp_path)
    leaves.write_bytes(bytes(data[: 8 * RECORD_SIZE]))
    with pytest.raises(LogCorruptedError):
        TransparencyLog(tmp_path)


def test_a_leaf_rewritten_with_a_valid_record_is_caught_against_the_published_head(
    tmp_path: Path,
) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 10)
        log.publish_head()
    # Someone with write access rewrites leaf 3 *and* its record checksum.
    leaves = tmp_path / "leaves.bin"
    data = bytearray(leaves.read_bytes())
    leaf = entry_leaf_hash("uid-3", {"n": -3, "probe_cc": "PK"})
    uid_hash = hashlib.sha256(b"uid-3").digest()
    check = hashlib.sha256(
        b"censorwatch/leaf-record/v1" + struct.pack(">Q", 3) + leaf + uid_hash
    ).digest()[:8]
    data[3 * RECORD_SIZE : 4 * RECORD_SIZE] = leaf + uid_hash + check
    leaves.write_bytes(bytes(data))
    with pytest.raises(LogCorruptedError, match="no longer match published tree head"):
        TransparencyLog(tmp_path)


def test_a_forged_tree_head_in_the_history_refuses_to_open(tmp_path: Path) -> None:
    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 3)
        log.publish_head()
    sth = tmp_path / "sth.jsonl"
    head = json.loads(sth.read_bytes())
    head["tree_size"] = 2
    sth.write_text(json.dumps(head, separators=(",", ":"), sort_keys=True) + "\n")
    with pytest.raises(LogCorruptedError, match="not signed by this log"):
        TransparencyLog(tmp_path)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_cached_subtrees_give_the_same_proofs_as_the_plain_tree(
    tmp_path_factory, n: int, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("log")
    with TransparencyLog(directory) as log:
        fill(log, 0, n)
        leaves = [log.leaf(i) for i in range(n)]
        plain = merkle.list_subtree(leaves)
        size = data.draw(st.integers(1, n))
        index = data.draw(st.integers(0, size - 1))
        first = data.draw(st.integers(0, size))
        assert log.root(size) == merkle.root_from_leaves(leaves[:size])
        assert log.inclusion_proof(index, size) == merkle.inclusion_path(index, size, plain)
        assert log.consistency_proof(first, size) == merkle.consistency_path(first, size, plain)


def test_proofs_stay_cheap_on_a_large_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Cheap means O(log n) stored nodes and a few hashes on the tree's ragged right edge, not
    # O(n) rehashing: count the hashes each proof costs rather than timing it.
    hashes = 0
    node_hash = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal hashes
        hashes += 1
        return node_hash(left, right)

    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 20_000)
        head = log.publish_head()
        most = 0
        for i in range(0, 20_000, 97):
            hashes = 0
            monkeypatch.setattr(merkle, "node_hash", counting)
            proof = log.inclusion_proof(i, head.tree_size)
            monkeypatch.setattr(merkle, "node_hash", node_hash)
            most = max(most, hashes)
            assert merkle.verify_inclusion(i, head.tree_size, log.leaf(i), proof, head.root_hash)
    assert len(proof) <= 15
    assert most <= 2 * 15  # log2(20,000) < 15; recomputing from the leaves would take 19,999


CHILD = """
import sys
from censorwatch.evidence.log import TransparencyLog
log = TransparencyLog(sys.argv[1])
start = log.size
def say(line):  # one write per line, so that a kill tears at most the last one
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
say(f"ready {start}")
i = 0
while True:
    log.append_many((f"k-{start + i}-{j}", {"j": j}) for j in range(7))
    i += 1
    say(f"acked {log.size}")
    if i % 5 == 0:
        say(f"head {log.publish_head().tree_size}")
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
@pytest.mark.slow
def test_a_killed_writer_loses_nothing_it_acknowledged(tmp_path: Path, delay: float) -> None:
    import signal
    import subprocess
    import sys
    import time

    directory = tmp_path / "log"
    acked = heads = 0
    for _ in range(2):  # kill, reopen in a new process, kill again
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        first = proc.stdout.readline().split()  # one batch acknowledged: start the clock
        acked = max(acked, int(first[1]))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        for line in out.split("\n")[:-1]:  # after the last newline: a torn line, never an ack
            kind, size = line.split()
            if kind == "acked":
                acked = max(acked, int(size))
            else:
                heads = max(heads, int(size))
    with TransparencyLog(directory) as log:  # opening re-checks every published head
        assert acked > 0
        assert log.size >= acked
        assert (log.latest_head().tree_size if log.latest_head() else 0) >= heads
        assert all(h.verify(log.public_key) for h in log.heads())


def test_log_info_names_the_log_for_publication(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from censorwatch.cli import app

    with TransparencyLog(tmp_path) as log:
        fill(log, 0, 3)
        head = log.publish_head()
        expected = log.log_id
        busy = CliRunner().invoke(app, ["evidence", "log-info", "--log-dir", str(tmp_path)])
        assert busy.exit_code == 2 and "another process" in busy.output
    out = CliRunner().invoke(app, ["evidence", "log-info", "--log-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["log_id"] == expected and info["size"] == 3
    assert info["latest_tree_head"] == head.to_json()
