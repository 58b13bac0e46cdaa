"""The transparency log is part of the commit: nothing is acknowledged before it is logged, and
a writer killed between the archive write and the log append is repaired on restart.

The writer is ``app.services.open_services`` (what ``serve``, ``ingest`` and ``store rebuild``
build) in a child process, stopped at one step of its last commit and killed with SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from censorwatch.app.services import open_services
from censorwatch.collector.archive import Archive
from censorwatch.collector.pipeline import LOG_POSITION_FILE
from censorwatch.collector.service import Collector, Unavailable
from censorwatch.evidence import merkle
from censorwatch.evidence.formats import TreeHead, entry_leaf_hash
from censorwatch.evidence.log import RECORD_SIZE
from collector_helpers import make_measurement, template

# The writer: commits each batch, prints each acknowledged UID (one write per line, so a kill
# tears at most the last line), publishes a tree head after the first batch, and stops inside
# the last commit at the step named by argv[4] until it is killed.
CHILD = """
import json, os, sys, time
from pathlib import Path
from censorwatch.app.services import open_services

db, archive, batches_file, fault = sys.argv[1:5]
batches = json.loads(Path(batches_file).read_text())
services = open_services(db, Path(archive))
pipeline, log, store = services.pipeline, services.log, services.store

def say(line):
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

def hang(where):
    say(f"at {where}")
    while True:
        time.sleep(60)

class TornWrite:
    # The leaves file, cut inside a record: half the bytes reach the disk, then the kill.
    def __init__(self, f):
        self.f = f
    def write(self, data):
        self.f.write(data[: len(data) // 2 + 5])
        self.f.flush()
        os.fsync(self.f.fileno())
        hang("torn-log")
    def __getattr__(self, name):
        return getattr(self.f, name)

say("ready")
for n, batch in enumerate(batches):
    if n == len(batches) - 1:
        if fault == "before-log":
            log.append_many = lambda items: hang("before-log")
        elif fault == "torn-log":
            log._leaves_file = TornWrite(log._leaves_file)
        elif fault == "before-store":
            store.add = lambda rows, checkpoint=None: hang("before-store")
    for outcome in pipeline.commit([pipeline.prepare(m) for m in batch]):
        say(f"acked {outcome.measurement_uid}")
    if n == 0:
        say("head " + json.dumps(log.publish_head().to_json()))
say("done")
"""


def batches(count: int, size: int) -> list[list[dict[str, Any]]]:
    base = template()
    out = []
    for b in range(count):
        out.append(
            [{**make_measurement(b * size + i, base=base), "report_id": "r1"} for i in range(size)]
        )
    return out


def run_until_killed(tmp: Path, data: list[list[dict[str, Any]]], fault: str) -> tuple:
    """Run the writer until it reaches ``fault``, SIGKILL it; returns (acked UIDs, head)."""
    (tmp / "batches.json").write_text(json.dumps(data))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp / "cw.duckdb"), str(tmp / "archive"),
         str(tmp / "batches.json"), fault],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    acked: list[str] = []
    head = None
    try:
        for line in proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "acked":
                acked.append(rest)
            elif kind == "head":
                head = TreeHead.from_json(json.loads(rest))
            elif kind == "at":
                assert rest == fault
                break
            elif kind == "done":
                pytest.fail("the writer never reached the fault")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return acked, head


def archived(archive: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        (env["measurement_uid"], env["measurement"])
        for block in Archive(archive).blocks()
        for env in map(msgspec.json.decode, block.lines)
    ]


def logged_uid_hashes(log_dir: Path) -> list[bytes]:
    data = (log_dir / "leaves.bin").read_bytes()
    return [data[i + 32 : i + 64] for i in range(0, len(data) - RECORD_SIZE + 1, RECORD_SIZE)]


@pytest.mark.parametrize("fault", ["before-log", "torn-log", "before-store"])
def test_a_writer_killed_inside_a_commit_is_repaired_exactly_once(
    tmp_path: Path, fault: str
) -> None:
    import hashlib

    data = batches(3, 6)
    acked, old_head = run_until_killed(tmp_path, data, fault)
    killed = data[-1]
    assert len(acked) == 12  # the first two batches; nothing of the killed one
    assert old_head is not None and old_head.tree_size == 6
    in_archive = archived(tmp_path / "archive")
    assert len(in_archive) == 18  # the killed batch reached the archive before the kill

    services = open_services(tmp_path / "cw.duckdb", tmp_path / "archive")
    with services:
        log, pipeline, store = services.log, services.pipeline, services.store
        assert log is not None
        recovery = pipeline.recover()
        # What the kill left out of the log is appended; what was logged is not again. The
        # torn write left three whole records (kept: they were fsynced) and 5 bytes of a
        # fourth (cut off when the log opened).
        assert recovery.logged == {"before-log": 6, "torn-log": 3, "before-store": 0}[fault]
        assert log.recovered_bytes == (5 if fault == "torn-log" else 0)
        assert recovery.stored == 6
        assert pipeline.recover().logged == 0  # a second recovery finds nothing to do

        # Every acknowledged (and every archived) measurement is in the log exactly once,
        # under the content the archive holds.
        assert log.size == 18
        hashes = logged_uid_hashes(log.directory)
        assert len(hashes) == len(set(hashes)) == 18
        for uid, measurement in in_archive:
            index = log.index_of(uid)
            assert index is not None
            assert log.leaf(index) == entry_leaf_hash(uid, measurement)
        assert set(acked) <= {uid for uid, _ in in_archive}
        assert Counter(hashlib.sha256(u.encode()).digest() for u in acked).most_common(1)[0][1] == 1

        # The new head extends the one published before the kill (RFC 9162 consistency).
        assert old_head in log.heads()
        new_head = log.publish_head()
        proof = log.consistency_proof(old_head.tree_size, new_head.tree_size)
        assert merkle.verify_consistency(
            old_head.tree_size, new_head.tree_size, old_head.root_hash, new_head.root_hash, proof
        )

        # The probe, never acknowledged, sends the killed batch again: no second entry.
        outcomes = pipeline.commit([pipeline.prepare(m) for m in killed])
        assert [o.stored for o in outcomes] == [False] * 6
        assert log.size == 18 and store.count() == 18
        assert sorted(store.uids()) == sorted(uid for uid, _ in in_archive)


def test_a_failed_log_append_fails_the_commit_and_is_replayed(tmp_path: Path) -> None:
    data = batches(3, 4)
    services = open_services(tmp_path / "cw.duckdb", tmp_path / "archive", collector=True)
    with services:
        collector, log, pipeline = services.collector, services.log, services.pipeline
        assert collector is not None and log is not None
        collector.start()
        try:
            first = [collector.submit(pipeline.prepare(m)).result(30) for m in data[0]]
            assert all(o.stored for o in first)

            def disk_full(items: Any) -> list[int]:
                raise OSError(28, "No space left on device")

            real = log.append_many
            log.append_many = disk_full  # type: ignore[method-assign]
            failing = [pipeline.prepare(m) for m in data[1]]
            for future in [collector.submit(p) for p in failing]:
                with pytest.raises(Unavailable):
                    future.result(30)
            assert collector.metrics.log_errors._value.get() >= 1
            assert log.size == 4  # not logged, and not acknowledged

            log.append_many = real  # type: ignore[method-assign]
            later = [collector.submit(pipeline.prepare(m)).result(30) for m in data[2]]
            assert all(o.stored for o in later)
            # The next commit repaired first: the failed batch is logged and stored, once.
            assert log.size == 12 and services.store.count() == 12
            again = [collector.submit(pipeline.prepare(m)).result(30) for m in data[1]]
            assert [o.stored for o in again] == [False] * 4
            assert log.size == 12
            hashes = logged_uid_hashes(log.directory)
            assert len(set(hashes)) == 12
        finally:
            collector.stop()


def test_the_log_position_bounds_the_replay_and_belongs_to_its_log(tmp_path: Path) -> None:
    data = batches(2, 5)
    with open_services(tmp_path / "cw.duckdb", tmp_path / "archive") as services:
        for batch in data:
            services.pipeline.commit([services.pipeline.prepare(m) for m in batch])
    position_file = tmp_path / "archive" / LOG_POSITION_FILE
    saved = json.loads(position_file.read_bytes())
    assert saved["tree_size"] == 10
    end = Archive(tmp_path / "archive")
    *_, last = end.blocks()
    assert saved["archive"] == {"segment": last.location.segment, "offset": last.end}

    with open_services(tmp_path / "cw.duckdb", tmp_path / "archive") as services:
        assert services.pipeline.log_position() is not None
        assert services.pipeline.recover().logged == 0

    # A position recorded for another log does not excuse this one: the whole archive is
    # replayed into a fresh log (and nothing twice into the old one).
    fresh = tmp_path / "other-log"
    with open_services(tmp_path / "cw.duckdb", tmp_path / "archive", log_dir=fresh) as services:
        assert services.pipeline.log_position() is None
        assert services.pipeline.recover().logged == 10
        assert services.log is not None and services.log.size == 10


def test_collector_refuses_to_start_when_the_log_is_busy(tmp_path: Path) -> None:
    from censorwatch.evidence.log import LogBusyError

    with open_services(tmp_path / "cw.duckdb", tmp_path / "archive"), pytest.raises(LogBusyError):
        open_services(tmp_path / "other.duckdb", tmp_path / "archive")


def test_collector_open_appends_to_the_log_it_is_given(tmp_path: Path) -> None:
    from censorwatch.evidence.log import TransparencyLog
    from censorwatch.store import open_store

    store = open_store(tmp_path / "cw.duckdb")
    with TransparencyLog(tmp_path / "log") as log:
        collector = Collector.open(tmp_path / "archive", store, log=log)
        collector.start()
        try:
            (m,) = batches(1, 1)[0]
            outcome = collector.submit(collector.pipeline.prepare(m)).result(30)
        finally:
            collector.stop()
        assert log.index_of(outcome.measurement_uid) == 0
    store.close()
