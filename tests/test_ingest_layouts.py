"""Every layout of OONI's bucket, made from real OONI measurements: postcans beside their
jsonl.gz, the older ``jsonl/`` tree, LZ4 cans (tar of reports, report cans, legacy YAML).

What each file holds is checked against OONI's own reader (``oonidata``'s stream functions, in
their own environment); one measurement read from two layouts is stored once; a selection
lists only its folders (counted on a directory and on a local S3 server); a second run reads
nothing again; bad members and frames are named and the rest read; bombs stay bounded."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from datetime import datetime
from pathlib import Path

import lz4.frame
import pytest

from censorwatch.collector.archive import Archive
from censorwatch.collector.pipeline import Pipeline
from censorwatch.ingest import layouts
from censorwatch.ingest.lines import Limits, UnreadableFile
from censorwatch.ingest.ooni import ingest
from censorwatch.ingest.readers import POST_SLACK, Record, read_records
from censorwatch.ingest.sources import DirectorySource, S3Source, Selection
from censorwatch.store import open_store
from censorwatch.store.base import Filters
from collector_helpers import OONI
from ooni_tools import oonidata_python
from s3_helpers import S3_ENV, local_s3, moto_command

RAW = "raw/20240216/10/PK/webconnectivity"
PC0 = f"{RAW}/2024021610_PK_webconnectivity.n0.0.tar.gz"
JL0 = f"{RAW}/2024021610_PK_webconnectivity.n0.0.jsonl.gz"
PC1 = f"{RAW}/2024021610_PK_webconnectivity.n0.1.tar.gz"  # a plain tar, named .tar.gz
SIGNAL = "raw/20240217/03/IR/signal/2024021703_IR_signal.n0.0.jsonl.gz"
OLD = "raw/20240215/09/PK/webconnectivity/2024021509_PK_webconnectivity.n0.0.jsonl.gz"
JSONL_TREE = "jsonl/webconnectivity/IT/20201019/00/20201019_IT_webconnectivity.l.0.jsonl.gz"
TAR_CAN = "canned/2020-10-19/web_connectivity.0.tar.lz4"
REPORT_CAN = "canned/2020-10-19/20201019T110000Z-IR-AS197207-signal-20201019T110000Z_AS197207_x-0.2.0-probe.json.lz4"  # noqa: E501
YAML_CAN = "canned/2020-10-19/20201019T120000Z-RU-AS12389-http_requests-20201019T120000Z_AS12389_y-0.1.0-probe.yaml.lz4"  # noqa: E501
OONIDATA_EXT = {PC0: "tar.gz", PC1: "tar.gz", JL0: "jsonl.gz", SIGNAL: "jsonl.gz",
                OLD: "jsonl.gz", JSONL_TREE: "jsonl.gz", TAR_CAN: "tar.lz4",
                REPORT_CAN: "json.lz4"}  # fmt: skip


# -- real measurements, laid out as OONI's bucket lays them -----------------------------------


def real(names: list[Path], cc: str, asn: str, day: str, hour: int, start: int = 0) -> list[dict]:
    """Real OONI measurements moved to ``cc``/``asn`` and the given hour, each its own time."""
    out = []
    for i, path in enumerate(names, start):
        m = json.loads(path.read_text())
        m.pop("measurement_uid", None)
        when = f"{day} {hour:02d}:{i // 60:02d}:{i % 60:02d}"
        out.append({**m, "probe_cc": cc, "probe_asn": asn, "measurement_start_time": when})
    return out


def ooni_uid(m: dict, n: int) -> str:
    stamp = datetime.strptime(m["measurement_start_time"], "%Y-%m-%d %H:%M:%S")
    tail = hashlib.sha256(str(n).encode()).hexdigest()[:16]
    test = m["test_name"].replace("_", "")
    return f"{stamp:%Y%m%d%H%M%S}.{n:06d}_{m['probe_cc']}_{test}_{tail}"


def jsonl(ms: list[dict]) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\n" for m in ms)


def tar_of(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def post_members(items: list[tuple[str, dict]], hourdir: str) -> list[tuple[str, bytes]]:
    """As OONI's uploader adds them: the spool path of ``<uid>.post``, the probe's POST."""
    spool = f"var/lib/ooniapi/measurements/incoming/{hourdir}"
    return [(f"{spool}/{uid}.post", json.dumps({"format": "json", "content": m}).encode())
            for uid, m in items]  # fmt: skip


def put(root: Path, key: str, data: bytes) -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def build_bucket(root: Path) -> dict:
    """Every layout; returns what was put where (measurements by file, postcan UIDs)."""
    qa = sorted((OONI / "wc05_qa").glob("*.json"))
    signals = [OONI / "odd" / n for n in ("signal_022.json", "signal_2627.json")]
    pk = real(qa[:11], "PK", "AS17557", "2024-02-16", 10)
    pk_uids = [ooni_uid(m, i) for i, m in enumerate(pk)]
    hourdir = "2024021610_PK_webconnectivity"
    put(
        root,
        PC0,
        gzip.compress(tar_of(post_members(list(zip(pk_uids[:8], pk[:8], strict=True)), hourdir))),
    )
    put(root, JL0, gzip.compress(jsonl(pk[:8])))  # the same eight, as the uploader writes them
    put(root, PC1, tar_of(post_members(list(zip(pk_uids[8:], pk[8:], strict=True)), hourdir)))
    ir = real(signals, "IR", "AS197207", "2024-02-17", 3)
    put(root, SIGNAL, gzip.compress(jsonl(ir)))
    put(root, OLD, gzip.compress(jsonl(real(qa[40:42], "PK", "AS17557", "2024-02-15", 9))))

    it = real(qa[20:25], "IT", "AS3269", "2020-10-19", 10)
    br = real(qa[25:28], "BR", "AS28573", "2020-10-19", 11)
    put(root, JSONL_TREE, gzip.compress(jsonl(it)))  # re-packed from the can below
    reports = [
        ("2020-10-19/20201019T100000Z-IT-AS3269-web_connectivity-r1-0.2.0-probe.json", jsonl(it)),
        ("2020-10-19/20201019T110000Z-BR-AS28573-web_connectivity-r2-0.2.0-probe.json", jsonl(br)),
    ]
    put(root, TAR_CAN, lz4.frame.compress(tar_of(reports)))
    ir_can = real(signals, "IR", "AS197207", "2020-10-19", 11)
    put(root, REPORT_CAN, lz4.frame.compress(jsonl(ir_can)))
    put(root, YAML_CAN, lz4.frame.compress(b"---\ntest_name: http_requests\n...\n"))
    (root / "canned/2020-10-19/index.json.gz").write_bytes(gzip.compress(b"{}"))
    return {"pk": pk, "pk_uids": pk_uids, "ir": ir, "it": it, "br": br, "ir_can": ir_can}


UNIQUE = 8 + 3 + 2 + 2 + 5 + 3 + 2  # the pair, PC1, signal, OLD, the can+jsonl IT, BR, IR can
READ = UNIQUE + 8 + 5  # the jsonl twin of PC0, the jsonl/ copy of the can's IT report


def cli(tmp: Path, source: str, *args: str, env: dict | None = None, code: int = 0):
    proc = subprocess.run(
        [sys.executable, "-m", "censorwatch", "ingest", "ooni", source,
         "--db", str(tmp / "cw.duckdb"), "--archive", str(tmp / "archive"), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr + proc.stdout
    return proc


def stored(tmp: Path) -> list[dict]:
    store = open_store(tmp / "cw.duckdb", read_only=True)
    try:
        return store.query(Filters(), limit=10_000, offset=0)
    finally:
        store.close()


# -- OONI's own reader reads the same measurements from each file ----------------------------


def oonidata_reads(path: Path, key: str) -> list[dict]:
    tool = Path(__file__).parent / "tools" / "oonidata_stream.py"
    proc = subprocess.run(
        [str(oonidata_python()), str(tool), OONIDATA_EXT[key], str(path), key],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def censorwatch_reads(tmp: Path, bucket: Path, key: str) -> list[dict]:
    """What ``ingest`` stores from the one file ``key`` of ``bucket``."""
    alone = tmp / "alone" / key.replace("/", "_")
    shutil.copy2(bucket / key, put(alone, key, b""))
    store = open_store(alone / "cw.duckdb")
    pipeline = Pipeline(Archive(alone / "archive"), store)
    try:
        stats = ingest(DirectorySource(alone), pipeline, Selection(), on_problem=pytest.fail)
        assert stats.files == 1 and not stats.failed
        return store.query(Filters(), limit=10_000, offset=0)
    finally:
        store.close()


@pytest.mark.slow
def test_each_layout_reads_what_oonidata_reads(tmp_path: Path) -> None:
    oonidata_python()  # fails in CI, skips elsewhere, when OONI's environment is missing
    bucket = tmp_path / "bucket"
    build_bucket(bucket)
    counts = {}
    for key in OONIDATA_EXT:
        theirs = oonidata_reads(bucket / key, key)
        ours = censorwatch_reads(tmp_path, bucket, key)
        assert theirs and len(ours) == len(theirs), key
        if OONIDATA_EXT[key] == "jsonl.gz":  # a line has no UID: OONI's is kept outside it
            assert {t["measurement_uid"] for t in theirs} == {None}
            fields = ("report_id", "input", "test_name")
        else:
            fields = ("measurement_uid", "report_id", "input", "test_name")
        want = sorted(tuple(str(t[f]) for f in fields) for t in theirs)
        got = sorted(tuple(str(r[f]) for f in fields) for r in ours)
        assert got == want, key
        counts[key] = len(ours)
    assert counts[PC0] == counts[JL0] == 8 and counts[TAR_CAN] == 8 and counts[PC1] == 3


# -- one measurement, one row, whatever layout it is read from -------------------------------


@pytest.mark.slow
def test_the_whole_bucket_stores_each_measurement_once(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    data = build_bucket(bucket)
    proc = cli(tmp_path, str(bucket))
    out = proc.stdout
    assert f"ingested {READ} measurements from 8 files ({UNIQUE} new" in out, out
    assert f"; {READ - UNIQUE} stored before from another layout)" in out
    assert (
        "by kind of file: 2 from json.lz4, 17 from jsonl.gz, 11 from tar.gz, 8 from tar.lz4" in out
    )
    rows = stored(tmp_path)
    uids = [r["measurement_uid"] for r in rows]
    assert len(rows) == len(set(uids)) == UNIQUE
    assert set(data["pk_uids"]) <= set(uids)  # the postcan's names won over the jsonl twin
    # The legacy YAML can is named, counted, and never recorded: every run names it again.
    yaml_line = f"{bucket}/{YAML_CAN}: a legacy YAML report can: not supported (not read)"
    assert yaml_line in proc.stderr.splitlines()
    assert "1 legacy YAML reports not supported" in out
    again = cli(tmp_path, str(bucket))
    assert "ingested 0 measurements from 0 files" in again.stdout
    assert "8 files already ingested" in again.stdout and yaml_line in again.stderr
    assert len(stored(tmp_path)) == UNIQUE


@pytest.mark.slow
@pytest.mark.parametrize("first", [JL0, PC0])
def test_a_postcan_and_its_jsonl_store_once_in_either_order(tmp_path: Path, first: str) -> None:
    full = tmp_path / "full"
    data = build_bucket(full)
    bucket = tmp_path / "bucket"
    second = PC0 if first == JL0 else JL0
    shutil.copy2(full / first, put(bucket, first, b""))
    out = cli(tmp_path, str(bucket)).stdout
    assert "ingested 8 measurements from 1 files (8 new" in out
    shutil.copy2(full / second, put(bucket, second, b""))
    out = cli(tmp_path, str(bucket)).stdout
    assert "ingested 8 measurements from 1 files (0 new" in out
    assert "8 stored before from another layout" in out
    uids = {r["measurement_uid"] for r in stored(tmp_path)}
    assert len(uids) == 8
    assert (uids == set(data["pk_uids"][:8])) == (first == PC0)  # the first read names them


@pytest.mark.slow
def test_a_can_read_for_one_country_is_read_again_for_the_others(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    data = build_bucket(bucket)
    out = cli(tmp_path, str(bucket), "--since", "2020-10-19", "--until", "2020-10-20",
              "--cc", "BR").stdout  # fmt: skip
    assert "ingested 3 measurements from 1 files (3 new" in out  # the tar can: BR's report
    assert "5 measurements of cans left out" in out
    assert {r["probe_cc"] for r in stored(tmp_path)} == {"BR"}
    out = cli(tmp_path, str(bucket), "--since", "2020-10-19", "--until", "2020-10-20").stdout
    # The can again (all of it), the jsonl/ copy, the IR report can; BR is not stored twice.
    want = len(data["it"]) + len(data["ir_can"])
    assert f"({want} new" in out and f"; {len(data['it'])} stored before" in out
    assert len(stored(tmp_path)) == 3 + want


# -- listing: the selected folders only ------------------------------------------------------


ONE_DAY_PK = Selection(since=datetime(2024, 2, 16), until=datetime(2024, 2, 17),
                       ccs=frozenset({"PK"}))  # fmt: skip
ONE_DAY_PK_LISTED = ["", "raw/20240216/", "raw/20240216/10/PK/"]
CAN_DAY_IT = Selection(since=datetime(2020, 10, 19), until=datetime(2020, 10, 20),
                       ccs=frozenset({"IT"}))  # fmt: skip
CAN_DAY_IT_LISTED = ["", "canned/2020-10-19/", "jsonl/", "jsonl/webconnectivity/IT/20201019/",
                     "raw/20201019/"]  # fmt: skip


def test_a_directory_lists_only_the_selected_prefixes(tmp_path: Path) -> None:
    build_bucket(tmp_path)
    source = DirectorySource(tmp_path)
    assert [f.key for f in source.files(ONE_DAY_PK)] == [PC0, PC1, JL0]
    assert source.listed == ONE_DAY_PK_LISTED  # not 20240215, not 20240217, not the cans
    source = DirectorySource(tmp_path)
    assert [f.key for f in source.files(CAN_DAY_IT)] == [TAR_CAN, JSONL_TREE]
    assert source.listed == CAN_DAY_IT_LISTED
    source = DirectorySource(tmp_path)
    tests = Selection(tests=frozenset({"signal"}))
    assert [f.key for f in source.files(tests)] == [REPORT_CAN, SIGNAL]
    assert "raw/20240216/10/PK/" not in source.listed
    assert "raw/20240216/10/PK/signal/" in source.listed


def listing_requests(source: S3Source) -> list[str]:
    """The prefix of every listing request the source's client sends, as sent (boto's own
    event, not the source's account of itself)."""
    sent: list[str] = []

    def record(params: dict, **_: object) -> None:
        sent.append(params["query_string"]["prefix"])

    source._s3.meta.events.register("before-call.s3.ListObjectsV2", record)
    return sent


@pytest.mark.skipif(moto_command() is None, reason="moto (S3-compatible server) is not installed")
@pytest.mark.slow
def test_s3_lists_only_the_selected_prefixes(tmp_path: Path, monkeypatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    bucket = tmp_path / "bucket"
    build_bucket(bucket)
    with local_s3("ooni-data") as (s3, endpoint):
        for path in bucket.rglob("*"):
            if path.is_file():
                key = "mirror/" + path.relative_to(bucket).as_posix()
                s3.upload_file(str(path), "ooni-data", key)
        for selection, listed, keys in (
            (ONE_DAY_PK, ONE_DAY_PK_LISTED, [PC0, PC1, JL0]),
            (CAN_DAY_IT, CAN_DAY_IT_LISTED, [TAR_CAN, JSONL_TREE]),
        ):
            source = S3Source("s3://ooni-data/mirror", endpoint_url=endpoint)
            calls = listing_requests(source)
            assert [f.key for f in source.files(selection)] == keys
            assert calls == ["mirror/" + p for p in listed]
        # And the S3 path stores what the directory path stores.
        out = cli(tmp_path, "s3://ooni-data/mirror", "--endpoint-url", endpoint,
                  env=S3_ENV).stdout  # fmt: skip
        assert f"ingested {READ} measurements from 8 files ({UNIQUE} new" in out
        assert len(stored(tmp_path)) == UNIQUE


# -- bad members and frames: named, the rest read --------------------------------------------


@pytest.mark.slow
def test_bad_members_and_frames_are_named_and_the_rest_read(tmp_path: Path) -> None:
    qa = sorted((OONI / "wc05_qa").glob("*.json"))
    good = real(qa[:12], "PK", "AS17557", "2024-02-16", 11)
    bucket = tmp_path / "bucket"
    hourdir = "raw/20240216/11/PK/webconnectivity"
    pc = f"{hourdir}/a.tar.gz"
    members = post_members([(ooni_uid(good[0], 100), good[0])], "h")
    members += [
        ("h/20240216110000.1_PK_webconnectivity_bad.post", b'{"format": "json", "con'),
        ("h/README", b"not a submission"),
    ]
    members += post_members([(ooni_uid(good[1], 101), good[1])], "h")
    put(bucket, pc, gzip.compress(tar_of(members)))
    cut = gzip.compress(tar_of(post_members([(ooni_uid(m, 200 + i), m)
                                             for i, m in enumerate(good[2:6])], "h")))  # fmt: skip
    put(bucket, f"{hourdir}/b.tar.gz", cut[: len(cut) * 2 // 3])
    pax = tarfile.TarInfo("h/huge.post")
    pax.pax_headers = {"comment": "x" * (2 << 20)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(pax, io.BytesIO(b""))
    put(bucket, f"{hourdir}/c.tar.gz", gzip.compress(buf.getvalue()))
    can = "canned/2020-10-19/web_connectivity.0.tar.lz4"
    report = jsonl(good[6:8]).replace(b"\n", b"\nnot json\n", 1)
    put(bucket, can, lz4.frame.compress(tar_of([("d/r.json", report), ("d/old.yaml", b"---\n")])))
    two_frames = lz4.frame.compress(jsonl(good[8:10]))
    second = bytearray(lz4.frame.compress(jsonl(good[10:12]) * 50))
    second[len(second) // 2 :] = b"\xff" * (len(second) - len(second) // 2)
    rc = "canned/2020-10-19/20201019T1-PK-AS17557-web_connectivity-r-0.2.0-probe.json.lz4"
    put(bucket, rc, two_frames + bytes(second))
    nc = "canned/2020-10-19/20201019T2-PK-AS17557-web_connectivity-s-0.2.0-probe.json.lz4"
    put(bucket, nc, jsonl(good[:1]))  # not LZ4 at all

    proc = cli(tmp_path, str(bucket), code=1)
    err = proc.stderr.splitlines()
    name = f"{bucket}/{pc}"
    bad = "h/20240216110000.1_PK_webconnectivity_bad.post"
    assert any(e.startswith(f"{name}[{bad}]: invalid JSON") for e in err), err
    assert f"{name}[h/README]: not a submission (.post): not read" in err
    assert any(e.startswith(f"{bucket}/{hourdir}/b.tar.gz: truncated") for e in err), err
    assert any(
        e.startswith(f"{bucket}/{hourdir}/c.tar.gz: a tar header of more than") for e in err
    ), err
    assert any(e.startswith(f"{bucket}/{can}[d/r.json]:2: invalid JSON") for e in err), err
    assert f"{bucket}/{can}[d/old.yaml]: a legacy YAML report: not supported (not read)" in err
    assert any(e.startswith(f"{bucket}/{rc}: corrupt LZ4") for e in err), err
    assert any(e.startswith(f"{bucket}/{nc}: not LZ4") for e in err), err
    assert "bad: 4 files not read to their end" in proc.stdout
    times = {r["measurement_start_time"].strftime("%H:%M:%S") for r in stored(tmp_path)}
    for m in [good[0], good[1], good[6], good[7], good[8], good[9]]:
        assert m["measurement_start_time"][11:] in times  # the good members and frames
    cut_times = {m["measurement_start_time"][11:] for m in good[2:6]}
    assert times & cut_times  # and what the cut postcan held before its cut


# -- bounded: lz4 frames and tar members ------------------------------------------------------


def test_lz4_and_tar_bombs_stop_at_the_byte_limit() -> None:
    limits = Limits(max_file_bytes=1 << 20, max_file_lines=1 << 30)
    lines = b"{}\n" * (4 << 20)  # 12 MB of "{}" lines
    bomb = lz4.frame.compress(lines)
    assert len(bomb) < len(lines) // 100
    seen = 0
    with pytest.raises(UnreadableFile, match="inflates to more than 1048576 bytes"):
        for _ in read_records(layouts.REPORT_CAN, io.BytesIO(bomb), limits):
            seen += 1
    assert seen <= (1 << 20) // 3
    member = lz4.frame.compress(tar_of([("d/r.json", lines)]))
    with pytest.raises(UnreadableFile, match=r"more than 1048576 bytes.*in member 'd/r.json'"):
        list(read_records(layouts.TAR_CAN, io.BytesIO(member), limits))
    big = b" " * (100 + POST_SLACK + 1)
    posts = gzip.compress(tar_of([("h/a.post", big), ("h/b.post", b"{}")]))
    small = Limits(max_line_bytes=100)
    got = list(read_records(layouts.POSTCAN, io.BytesIO(posts), small))
    over = [r for r in got if isinstance(r, Record) and r.member == "h/a.post"]
    assert over and over[0].data is None  # over the limit: not kept, named by the ingester
    assert [r.data for r in got if isinstance(r, Record) and r.member == "h/b.post"] == [b"{}"]


def test_a_can_line_keeps_oonis_trivial_id_inputs() -> None:
    """The can UID hashes the line as stored, newline included (as oonidata does)."""
    lines = b'{"a": 1}\n{"b": 2}'
    got = list(read_records(layouts.REPORT_CAN, io.BytesIO(lz4.frame.compress(lines)), Limits()))
    assert [(r.data, r.ended) for r in got if isinstance(r, Record)] == [
        (b'{"a": 1}', True),
        (b'{"b": 2}', False),
    ]
