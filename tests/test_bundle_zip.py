"""The bundle's zip container, attacked: every entry passes the name, listing and size rules,
sizes hold while inflating, and the bundle is exactly its members.

Hostile zips are assembled here by hand (``assemble``), independently of ``zipfile`` and of
``evidence.bundlezip``, so that every header field can be made to lie. A legitimate bundle is
built as ``tests/test_evidence_bundle.py`` builds one (real OONI measurements, a real log).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.evidence.bundle import verify_bundle
from censorwatch.evidence.bundlezip import (
    ZipLimits,
    member_name_problem,
    read_members,
    write_members,
)
from test_evidence_bundle import Built, build, fix_hashes, rezip, unzip

#: What verifying the bomb may cost at most, whole process included (a legitimate bundle of
#: this size costs about 45 MB; the bomb inflates to 1 GiB when read naively).
RSS_BOUND_BYTES = 200 * 1024 * 1024
GIB = 1 << 30


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> Built:
    return build(tmp_path_factory.mktemp("bundle-zip"))


# -- an independent zip writer whose every field can lie -------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes = b""
    method: int = 8
    raw: bytes | None = None  # the bytes written as the member's data (default: compressed data)
    declared: int | None = None  # the uncompressed size written (default: len(data))
    crc: int | None = None
    flags: int = 0
    local_name: str | None = None  # the local header's name (default: the central one)
    local_declared: int | None = None
    descriptor: bytes | None = None  # bytes written after the data (a data descriptor)
    gap_after: bytes = b""
    comment: bytes = b""


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def assemble(
    entries: list[Entry],
    *,
    prefix: bytes = b"",
    suffix: bytes = b"",
    comment: bytes = b"",
    absolute_offsets: bool = True,
) -> bytes:
    """A zip of ``entries``; ``prefix`` is counted in the offsets unless ``absolute_offsets``."""
    out = bytearray(prefix)
    base = 0 if absolute_offsets else len(prefix)
    central = bytearray()
    for e in entries:
        raw = e.raw if e.raw is not None else (deflate(e.data) if e.method == 8 else e.data)
        crc = e.crc if e.crc is not None else zlib.crc32(e.data)
        size = e.declared if e.declared is not None else len(e.data)
        name = e.name.encode("utf-8")
        local_name = (e.local_name if e.local_name is not None else e.name).encode("utf-8")
        local_size = e.local_declared if e.local_declared is not None else size
        offset = len(out) - base
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, e.flags, e.method, 0, 33,
                           crc, len(raw), local_size, len(local_name), 0)  # fmt: skip
        out += local_name + raw + (e.descriptor or b"") + e.gap_after
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 0x0314, 20, e.flags,
                               e.method, 0, 33, crc, len(raw), size, len(name), 0,
                               len(e.comment), 0, 0, 0o644 << 16, offset)  # fmt: skip
        central += name + e.comment
    start = len(out) - base
    out += central
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                       len(central), start, len(comment))  # fmt: skip
    return bytes(out + comment + suffix)


def entries_of(files: dict[str, bytes]) -> list[Entry]:
    return [Entry(name, data) for name, data in files.items()]


def problems(result) -> list[tuple[str, str]]:
    return [(p.item, p.message) for p in result.problems]


def refused(result, item: str, *words: str) -> bool:
    """Does the result name ``item`` with a message holding every one of ``words``?"""
    return any(p.item == item and all(w in p.message for w in words) for p in result.problems)


# -- a legitimate bundle ---------------------------------------------------------------------------


def test_a_legitimate_bundle_verifies_and_reads_exactly(built: Built) -> None:
    result = verify_bundle(built.bundle)
    assert result.ok, problems(result)
    assert result.measurements == 12
    read = read_members(built.bundle)
    assert read.readable and not read.refusals
    assert read.files == unzip(built.bundle)


def test_the_same_bundle_written_by_another_zip_writer_verifies(built: Built) -> None:
    """Stored or deflated, by this file's writer or by zipfile's: the container does not matter."""
    files = unzip(built.bundle)
    assert verify_bundle(assemble(entries_of(files))).ok
    stored = assemble([Entry(n, d, method=0) for n, d in files.items()])
    assert verify_bundle(stored).ok, problems(verify_bundle(stored))
    assert verify_bundle(rezip(files)).ok


def test_writing_then_reading_gives_back_the_same_members(tmp_path: Path) -> None:
    members = [("manifest.json", b"{}"), ("measurements/00000.json", b"x" * 5000),
               ("analysis/fingerprints/ooni/fingerprints_dns.csv", b"a,b\n")]  # fmt: skip
    write_members(tmp_path / "a.zip", members)
    write_members(tmp_path / "b.zip", members)
    data = (tmp_path / "a.zip").read_bytes()
    assert data == (tmp_path / "b.zip").read_bytes()  # fixed dates: same contents, same bytes
    assert read_members(tmp_path / "a.zip").files == dict(members)
    with pytest.raises(ValueError, match="unsafe name"):
        write_members(tmp_path / "c.zip", [("../escape.json", b"{}")])
    with pytest.raises(ValueError, match="more than once"):
        write_members(tmp_path / "c.zip", [("event.json", b"{}"), ("event.json", b"{}")])


class _Unseekable(io.RawIOBase):
    """A stream ``zipfile`` cannot seek back in, so it writes data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def test_zip64_records_and_streamed_data_descriptors_are_read() -> None:
    """What standard writers produce stays readable: ZIP64 extras, descriptors."""
    members = {"manifest.json": b"{}" * 100, "report.html": b"y" * 10_000}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("manifest.json", "w", force_zip64=True) as f:
            f.write(members["manifest.json"])
        zf.writestr("report.html", members["report.html"])
    assert read_members(buf.getvalue()).files == members
    streamed = _Unseekable()
    with zipfile.ZipFile(streamed, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            with zf.open(name, "w") as f:
                f.write(data)
    assert zipfile.ZipFile(io.BytesIO(bytes(streamed.data))).infolist()[0].flag_bits & 0x08
    read = read_members(bytes(streamed.data))
    assert read.files == members and not read.refusals


@pytest.mark.slow
def test_a_zip64_end_record_is_read() -> None:
    """More than 65,535 entries: the ZIP64 end record and its locator end the file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(70_000):
            zf.writestr(f"proofs/{i:05d}.json", b"{}")
    data = buf.getvalue()
    assert data[-42:-38] == b"PK\x06\x07"  # the ZIP64 locator before the end record
    read = read_members(data)
    assert not read.refusals and len(read.files) == 70_000
    assert (
        "more than 69999 entries" in read_members(data, ZipLimits(entries=69_999)).refusals[0].rule
    )


_FUZZ_MEMBERS = {
    "manifest.json": b'{"format":"x"}' * 20,
    "measurements/00000.json": bytes(range(256)) * 12,
    "proofs/00000.json": b"abc" * 100,
}
_FUZZ_ZIPS = [
    assemble(entries_of(_FUZZ_MEMBERS)),
    assemble([Entry(n, d, method=0) for n, d in _FUZZ_MEMBERS.items()]),
]


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_hypothesis_altered_containers_are_refused_or_read_unchanged(data) -> None:
    """Bytes altered anywhere in the container: nothing raises, every refusal states its rule,
    and after one altered byte whatever is read is exactly what was written (an alteration
    passes only in fields no content depends on: dates, versions, attributes)."""
    zipped = bytearray(data.draw(st.sampled_from(_FUZZ_ZIPS)))
    flips = data.draw(st.integers(1, 3))
    for _ in range(flips):
        zipped[data.draw(st.integers(0, len(zipped) - 1))] ^= data.draw(st.integers(1, 255))
    read = read_members(bytes(zipped))
    assert all(r.member and r.rule for r in read.refusals)
    if flips == 1:
        assert all(_FUZZ_MEMBERS.get(name) == content for name, content in read.files.items())
        if not read.refusals:
            assert read.files == _FUZZ_MEMBERS


# -- directory entries pass every rule -------------------------------------------------------------


def test_a_traversing_directory_entry_is_refused(built: Built) -> None:
    result = verify_bundle(rezip(unzip(built.bundle), [("../../x/", b"")]))
    assert not result.ok
    assert refused(result, "../../x/", "unsafe name", "'..'"), problems(result)


def test_a_directory_entry_carrying_bytes_is_refused(built: Built) -> None:
    hidden = b"a payload no check looks at" * 100
    result = verify_bundle(rezip(unzip(built.bundle), [("measurements/", hidden)]))
    assert not result.ok
    assert refused(result, "measurements/", "directory entry", f"{len(hidden)} bytes"), problems(
        result
    )
    # Hashes fixed up (an attacker without the log key): still named for the rule it breaks.
    files = unzip(built.bundle)
    files["measurements/"] = hidden
    fix_hashes(files)
    again = verify_bundle(rezip(files))
    assert refused(again, "measurements/", "directory entry"), problems(again)


# -- sizes hold while inflating --------------------------------------------------------------------


def _zeros_deflated(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    parts = [c.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, c.flush()])


@pytest.fixture(scope="module")
def bomb_bundle(built: Built, tmp_path_factory) -> Path:
    """The legitimate bundle whose report.html declares 1,000 bytes and inflates to 1 GiB."""
    files = unzip(built.bundle)
    entries = [
        Entry(n, d) if n != "report.html"
        else Entry(n, raw=_zeros_deflated(GIB), declared=1000, crc=zlib.crc32(bytes(1000)))
        for n, d in files.items()
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    path.write_bytes(assemble(entries))
    return path


VERIFY_AND_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from censorwatch.evidence.bundle import verify_bundle
    result = verify_bundle(sys.argv[1])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"rss": rss, "problems": [[p.item, p.message] for p in result.problems]}))
    """
)
#: Linux carries the peak RSS of the process that exec()s into the new program's ru_maxrss, so
#: the measuring process is started from a small launcher, never from the test runner itself.
LAUNCH = (
    "import subprocess, sys; "
    "sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]]).returncode)"
)


def _verify_in_subprocess(path: Path) -> tuple[int, list[list[str]]]:
    """Verify ``path`` in a fresh process: its peak RSS and the problems it found."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, VERIFY_AND_MEASURE, str(path)],
        capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    return answer["rss"], answer["problems"]


@pytest.mark.slow
def test_a_member_inflating_past_its_declared_size_is_stopped_with_memory_bounded(
    built: Built, bomb_bundle: Path, tmp_path: Path
) -> None:
    assert bomb_bundle.stat().st_size < 2 << 20  # about 1 MB that inflates to 1 GiB
    good = tmp_path / "good.zip"
    good.write_bytes(built.bundle)
    baseline, none = _verify_in_subprocess(good)
    assert none == []
    rss, found = _verify_in_subprocess(bomb_bundle)
    sys.stdout.write(
        f"\nverify RSS: legitimate bundle {baseline / 1e6:.1f} MB, "
        f"1 GiB bomb {rss / 1e6:.1f} MB (bound {RSS_BOUND_BYTES / 1e6:.0f} MB)\n"
    )
    assert rss < RSS_BOUND_BYTES, f"verifying the bomb took {rss / 1e6:.0f} MB"
    assert any(
        item == "report.html" and "inflates past its declared size of 1000 bytes" in message
        for item, message in found
    ), found


def test_sizes_are_enforced_while_inflating_not_trusted_from_headers() -> None:
    data = b"0123456789" * 10_000
    small = ZipLimits(entries=10, member_bytes=50_000, total_bytes=120_000)
    # The declared size is within every limit, but the data inflates past it.
    lying = assemble([Entry("event.json", data, declared=40_000, crc=zlib.crc32(data[:40_000]))])
    read = read_members(lying, small)
    assert [(r.member, r.rule) for r in read.refusals] == [
        ("event.json", "inflates past its declared size of 40000 bytes")
    ]
    assert read.files == {}
    # Declared sizes past the per-member and the total budget are refused before inflating.
    too_big = assemble([Entry("event.json", data)])
    assert "per-member limit of 50000" in read_members(too_big, small).refusals[0].rule
    total = assemble([Entry(f"proofs/{i:05d}.json", data[:45_000]) for i in range(3)])
    read = read_members(total, small)
    assert sorted(read.files) == ["proofs/00000.json", "proofs/00001.json"]
    assert read.refusals[0].member == "proofs/00002.json"
    assert "total limit of 120000" in read.refusals[0].rule
    # A member that inflates to less than it declares, or whose stream is cut or padded.
    short = assemble([Entry("event.json", data, declared=len(data) + 1)])
    assert "not the 100001 it declares" in read_members(short).refusals[0].rule
    cut = assemble([Entry("event.json", data, raw=deflate(data)[:-20])])
    assert "ends before its deflate stream does" in read_members(cut).refusals[0].rule
    padded = assemble([Entry("event.json", data, raw=deflate(data) + b"hidden")])
    assert "6 bytes after its deflate stream" in read_members(padded).refusals[0].rule
    bad_crc = assemble([Entry("event.json", data, crc=zlib.crc32(data) ^ 1)])
    assert "CRC-32" in read_members(bad_crc).refusals[0].rule
    many = assemble([Entry(f"proofs/{i:05d}.json", b"{}") for i in range(11)])
    read = read_members(many, small)
    assert not read.readable and "more than 10 entries" in read.refusals[0].rule


# -- the bundle is exactly its members -------------------------------------------------------------


def test_prepended_bytes_are_refused(built: Built) -> None:
    prefix = b"MZ" + bytes(62)
    result = verify_bundle(prefix + built.bundle)  # offsets left as they were
    assert not result.ok
    assert refused(result, "bundle", "64 bytes before the first local header"), problems(result)
    # Offsets rewritten to count the prefix (as self-extracting archives do): refused too.
    absolute = assemble(entries_of(unzip(built.bundle)), prefix=prefix)
    assert zipfile.ZipFile(io.BytesIO(absolute)).testzip() is None  # a valid zip to zipfile
    again = verify_bundle(absolute)
    assert refused(again, "bundle", "64 bytes before the first local header"), problems(again)


def test_appended_bytes_are_refused(built: Built) -> None:
    result = verify_bundle(built.bundle + b"appended after the end")
    assert not result.ok
    assert refused(result, "bundle", "22 bytes after the end-of-central-directory record"), (
        problems(result)
    )


def test_a_zip_comment_is_refused(built: Built) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in unzip(built.bundle).items():
            zf.writestr(name, data)
        zf.comment = b"a comment no hash covers"
    result = verify_bundle(buf.getvalue())
    assert not result.ok
    assert refused(result, "bundle", "zip comment (24 bytes)"), problems(result)


def test_bytes_hidden_between_members_or_after_them_are_refused(built: Built) -> None:
    files = unzip(built.bundle)
    entries = entries_of(files)
    entries[3] = replace(entries[3], gap_after=b"smuggled")
    result = verify_bundle(assemble(entries))
    assert refused(result, "bundle", "8 bytes between", entries[3].name), problems(result)
    entries = entries_of(files)
    entries[-1] = replace(entries[-1], gap_after=b"smuggled")
    result = verify_bundle(assemble(entries))
    assert refused(result, "bundle", "8 bytes between the last member and the central"), problems(
        result
    )


def test_local_headers_and_data_descriptors_must_agree_with_the_central_directory(
    built: Built,
) -> None:
    files = unzip(built.bundle)
    data = files["verdicts.json"]

    def verify_with(entry: Entry):
        return verify_bundle(
            assemble([entry if e.name == "verdicts.json" else e for e in entries_of(files)])
        )

    renamed = verify_with(Entry("verdicts.json", data, local_name="verdicts.jsoN"))
    assert refused(renamed, "verdicts.json", "local header", "name"), problems(renamed)
    resized = verify_with(Entry("verdicts.json", data, local_declared=len(data) - 1))
    assert refused(resized, "verdicts.json", "local header", "size"), problems(resized)
    descriptor = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), len(deflate(data)),
                             len(data) + 7)  # fmt: skip
    lying = verify_with(Entry("verdicts.json", data, flags=0x08, descriptor=descriptor))
    assert refused(lying, "verdicts.json", "data descriptor", "size"), problems(lying)
    honest = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), len(deflate(data)),
                         len(data))  # fmt: skip
    agreeing = verify_with(Entry("verdicts.json", data, flags=0x08, descriptor=honest))
    assert agreeing.ok, problems(agreeing)


def test_only_stored_and_deflate_are_accepted(built: Built) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_BZIP2) as zf:
        for name, data in unzip(built.bundle).items():
            zf.writestr(name, data)
    result = verify_bundle(buf.getvalue())
    assert not result.ok
    assert refused(result, "manifest.json", "compression method 12"), problems(result)


# -- names: duplicates, unexpected members, unsafe spellings ---------------------------------------


def test_duplicate_names_are_refused_and_no_copy_is_read(built: Built) -> None:
    files = unzip(built.bundle)
    changed = json.loads(files["verdicts.json"])
    changed[1]["verdict"] = "ok"
    result = verify_bundle(rezip(files, [("verdicts.json", json.dumps(changed).encode())]))
    assert not result.ok
    assert refused(result, "verdicts.json", "appears 2 times"), problems(result)
    # Neither copy is taken: a zip reader may pick either one, so neither is the evidence.
    read = read_members(rezip(files, [("verdicts.json", b"[]")]))
    assert "verdicts.json" not in read.files
    # Names a case-insensitive or normalising file system takes for one another count as one.
    fps = "analysis/fingerprints/{}/fingerprints_dns.csv"
    folded = read_members(rezip({fps.format("ooni"): b"a", fps.format("OONI"): b"b"}))
    assert folded.files == {}
    assert [r.rule.split(" (")[0] for r in folded.refusals] == ["appears 2 times in the zip"] * 2
    # Duplicate directory entries go through the same rules.
    twice = verify_bundle(rezip(files, [("proofs/", b""), ("proofs/", b"")]))
    assert refused(twice, "proofs/", "appears 2 times"), problems(twice)


def test_an_unexpected_extra_member_is_refused_for_its_name(built: Built) -> None:
    for extra in ("notes.txt", "measurements/evil.json", "proofs/00000.json.bak"):
        files = unzip(built.bundle)
        files[extra] = b"{}"
        fix_hashes(files)  # listed in the manifest too: the name itself is refused
        result = verify_bundle(rezip(files))
        assert not result.ok
        assert refused(result, extra, "not a name the bundle format has"), problems(result)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("/manifest.json", "absolute path"),
        ("C:/manifest.json", "absolute path"),
        ("measurements\\00000.json", "backslash"),
        ("measurements/../manifest.json", "'..'"),
        ("measurements/./00000.json", "'.'"),
        ("measurements//00000.json", "empty"),
        ("report.html\x00.exe", "control character"),
        ("measurements/", "directory entry"),
        ("Manifest.json", "not a name the bundle format has"),
        ("analysis/asn_db/a/b.json", "not a name the bundle format has"),
    ],
)
def test_name_rules(name: str, rule: str) -> None:
    problem = member_name_problem(name)
    assert problem is not None and rule in problem


@pytest.mark.parametrize(
    "name",
    ["manifest.json", "event.json", "report.html", "measurements/00000.json",
     "proofs/123456.json", "analysis/fingerprints/ooni-blocking-fingerprints/fingerprints_dns.csv",
     "analysis/asn_db/plan 2024.json"],
)  # fmt: skip
def test_the_names_of_the_layout_are_accepted(name: str) -> None:
    assert member_name_problem(name) is None


def test_a_non_ascii_name_must_say_it_is_utf8(built: Built) -> None:
    name = "analysis/asn_db/plan\u00e9.json"
    raw = assemble([Entry(name, b"{}")])
    # Drop the UTF-8 flag that ``assemble`` does not set, and which a reader would need: the
    # same bytes then spell another name in code page 437.
    read = read_members(raw)
    assert [r.member for r in read.refusals] == [name.encode().decode("cp437")]
    assert "UTF-8 flag" in read.refusals[0].rule
    flagged = assemble([Entry(name, b"{}", flags=0x800)])
    assert read_members(flagged).files == {name: b"{}"}


def test_every_refusal_names_the_member_and_the_rule(built: Built) -> None:
    """Each refusal says which member broke which rule; the members that hold are still read."""
    files = unzip(built.bundle)
    read = read_members(rezip(files, [("../../x/", b""), ("notes.txt", b"x")]))
    assert read.readable
    assert [(r.member, r.rule) for r in read.refusals] == [
        ("../../x/", "unsafe name: a '..' segment"),
        ("notes.txt", "not a name the bundle format has (docs/evidence.md, Layout)"),
    ]
    assert read.files == files


def test_a_member_of_millions_of_values_is_refused_before_it_is_decoded(monkeypatch) -> None:
    """A bundle file is measured on its bytes first (observations.budget), as submissions are."""
    from censorwatch.evidence import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "MAX_FILE_VALUES", 1000)
    result = bundle_mod.Verification()
    data = b"[" + b",".join([b"{}"] * 5000) + b"]"
    assert bundle_mod._load_json({"events.json": data}, "events.json", result) is None
    assert any("more than 1,000 JSON values" in str(p) for p in result.problems), result.problems
