"""The bundle's zip container, read strictly: a bundle is exactly its members, nothing more.

``zipfile`` parses the central directory; what it leaves to its caller is checked here, because
a verifier must neither read bytes that no hash covers nor inflate more than it was told:

* **bounds**: the first local header at offset 0, the end-of-central-directory record (or the
  ZIP64 one) last, no zip comment, and every byte in between belonging to exactly one member's
  local record or to the central directory (no prefix, no gap, no overlap, no suffix);
* **names**: every entry, directories included, against the name rules and the bundle's layout
  (docs/evidence.md, "Layout"), and no name twice;
* **agreement**: each local header and data descriptor against its central-directory entry;
* **sizes while inflating**: a member inflates in bounded steps and is stopped as soon as it
  passes its declared size or the budget left, whatever its headers claim.

Every refusal names the member (or ``bundle`` for the container) and the rule it breaks.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: The item a refusal of the container itself names (as ``verify_bundle`` reports it).
CONTAINER = "bundle"

#: The bundle's fixed members (docs/evidence.md, "Layout"); nothing else may be in the zip.
LAYOUT_NAMES = frozenset(
    {
        "manifest.json",
        "log_key.json",
        "tree_head.json",
        "checkpoint.txt",
        "probe_keys.json",
        "verdicts.json",
        "event.json",
        "report.html",
        "index.json",
        "inclusion.json",
    }
)
#: The bundle's numbered members and analysis inputs (any safe segment, as exported).
LAYOUT_PATTERNS = (
    re.compile(r"measurements/[0-9]{5,}\.json"),
    re.compile(r"proofs/[0-9]{5,}\.json"),
    re.compile(r"analysis/fingerprints/(?:[^/]+/){0,7}[^/]+"),
    re.compile(r"analysis/asn_db/[^/]+"),
)
MAX_NAME_CHARS = 1024

STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
_ENCRYPTED, _DATA_DESCRIPTOR, _UTF8_NAME = 0x0001, 0x0008, 0x0800
#: Flag bits a bundle member may carry: deflate options, a data descriptor, a UTF-8 name.
_ALLOWED_FLAGS = 0x0002 | 0x0004 | _DATA_DESCRIPTOR | _UTF8_NAME
_ZIP64_MARK = 0xFFFF_FFFF
_INFLATE_STEP = 64 << 10  # compressed bytes fed per step; the output per step is bounded too

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_END = struct.Struct("<4sQHHIIQQQQ")
_DESCRIPTOR = struct.Struct("<4sIII")
_DESCRIPTOR64 = struct.Struct("<4sIQQ")
_LOCAL_SIG, _CENTRAL_SIG, _END_SIG = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_ZIP64_LOCATOR_SIG, _ZIP64_END_SIG, _DESCRIPTOR_SIG = b"PK\x06\x07", b"PK\x06\x06", b"PK\x07\x08"


@dataclass(frozen=True)
class ZipLimits:
    """What reading one bundle may cost: entries, bytes per member, bytes in all."""

    entries: int = 200_000
    member_bytes: int = 64 << 20
    total_bytes: int = 1 << 30

    @property
    def container_bytes(self) -> int:
        """The largest zip worth opening: every member stored, with room for its headers."""
        return self.total_bytes + self.entries * 512 + (1 << 16)


@dataclass(frozen=True)
class Refusal:
    member: str  # the entry's name, or CONTAINER
    rule: str

    def __str__(self) -> str:
        return f"{self.member}: {self.rule}"


@dataclass
class ZipContents:
    """The members that passed every rule, and a refusal for each one that did not.

    ``readable`` is False when the container itself was refused: then nothing was read.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    readable: bool = True


class MemberNameError(ValueError):
    """A name the bundle format does not have was about to be written."""


class _ContainerRefused(Exception):
    pass


class _MemberRefused(Exception):
    pass


@dataclass(frozen=True)
class _Bounds:
    cd_offset: int
    cd_size: int
    entries: int


@dataclass
class _Member:
    info: zipfile.ZipInfo
    raw_name: bytes
    data_start: int = 0
    #: Where the local header or data descriptor disagrees with the central directory.
    disagreement: str | None = None


# -- names -----------------------------------------------------------------------------------------


def member_name_problem(name: str) -> str | None:
    """The name rule ``name`` breaks (``None`` when it is a name of the bundle's layout)."""
    if not name:
        return "unsafe name: empty"
    if len(name) > MAX_NAME_CHARS:
        return f"unsafe name: longer than {MAX_NAME_CHARS} characters"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "unsafe name: an absolute path"
    if "\\" in name:
        return "unsafe name: a backslash"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "unsafe name: a control character"
    segments = name.removesuffix("/").split("/")
    if ".." in segments:
        return "unsafe name: a '..' segment"
    if "." in segments:
        return "unsafe name: a '.' segment"
    if "" in segments:
        return "unsafe name: an empty segment"
    if name.endswith("/"):
        return "is a directory entry, which a bundle never has"
    if name not in LAYOUT_NAMES and not any(p.fullmatch(name) for p in LAYOUT_PATTERNS):
        return "not a name the bundle format has (docs/evidence.md, Layout)"
    return None


def _same_name_key(name: str) -> str:
    """Names that a file system may take for one another (case, Unicode normalisation)."""
    return unicodedata.normalize("NFC", name).casefold()


# -- writing ---------------------------------------------------------------------------------------


def write_members(path: str | Path, members: Iterable[tuple[str, bytes]]) -> None:
    """Write a bundle zip: deflated members, fixed dates and modes, so that the same contents
    give the same bytes; a name the reader would refuse is refused here first."""
    members = list(members)
    seen: set[str] = set()
    for name, _ in members:
        problem = member_name_problem(name)
        if problem:
            raise MemberNameError(f"{name!r}: {problem}")
        if _same_name_key(name) in seen:
            raise MemberNameError(f"{name!r} appears more than once")
        seen.add(_same_name_key(name))
    with zipfile.ZipFile(path, "w", compression=DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


# -- reading ---------------------------------------------------------------------------------------


def read_members(source: bytes | str | Path, limits: ZipLimits | None = None) -> ZipContents:
    """Read a bundle zip under ``limits``: the members that pass every rule, and the refusals."""
    limits = limits or ZipLimits()
    try:
        data = _container_bytes(source, limits)
        members = _members(data, limits)
    except _ContainerRefused as exc:
        return ZipContents(refusals=[Refusal(CONTAINER, str(exc))], readable=False)
    contents = ZipContents()
    counts = Counter(_same_name_key(m.info.orig_filename) for m in members)
    total = 0
    for member in members:
        name = member.info.orig_filename
        try:
            _check_entry(member, counts[_same_name_key(name)])
            content = _read_member(data, member, limits, total)
        except _MemberRefused as exc:
            contents.refusals.append(Refusal(name, str(exc)))
            continue
        total += len(content)
        contents.files[name] = content
    return contents


def _container_bytes(source: bytes | str | Path, limits: ZipLimits) -> bytes:
    """The zip's bytes, refused unread when larger than any bundle within ``limits``."""
    most = limits.container_bytes
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as f:
                if os.fstat(f.fileno()).st_size > most:
                    raise _ContainerRefused(f"larger than {most} bytes, the most a bundle takes")
                data = f.read(most + 1)
        except OSError as exc:
            raise _ContainerRefused(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > most:
        raise _ContainerRefused(f"larger than {most} bytes, the most a bundle takes")
    return data


def _end_record(data: bytes) -> _Bounds:
    """The central directory's place, from an end record that must be the zip's last bytes."""
    size = len(data)
    if size < _END.size:
        raise _ContainerRefused(f"not a zip file: {size} bytes, too short for an end record")
    at = size - _END.size
    if data[at : at + 4] != _END_SIG or data[-2:] != b"\x00\x00":
        found = data.rfind(_END_SIG, max(0, at - 0xFFFF))
        if found < 0 or found + _END.size > size:
            raise _ContainerRefused("not a zip file: no end-of-central-directory record")
        comment = _END.unpack_from(data, found)[7]
        after = size - found - _END.size
        if comment and comment == after:
            raise _ContainerRefused(f"has a zip comment ({comment} bytes); a bundle carries none")
        if after > comment:
            raise _ContainerRefused(f"{after} bytes after the end-of-central-directory record")
        raise _ContainerRefused("the end-of-central-directory record runs past the end")
    _, disk, cd_disk, here, entries, cd_size, cd_offset, _ = _END.unpack_from(data, at)
    cd_end = at
    if at >= _ZIP64_LOCATOR.size and data[at - 20 : at - 16] == _ZIP64_LOCATOR_SIG:
        _, z_disk, z_offset, disks = _ZIP64_LOCATOR.unpack_from(data, at - 20)
        z_at = at - _ZIP64_LOCATOR.size - _ZIP64_END.size
        if z_at < 0 or z_offset != z_at or data[z_at : z_at + 4] != _ZIP64_END_SIG:
            raise _ContainerRefused("the ZIP64 end record is not where its locator says")
        if z_disk != 0 or disks != 1:
            raise _ContainerRefused("spans several disks")
        (_, record, _, _, disk, cd_disk, here, entries, cd_size, cd_offset) = (
            _ZIP64_END.unpack_from(data, z_at)
        )
        if record != _ZIP64_END.size - 12:
            raise _ContainerRefused("the ZIP64 end record carries extra data")
        cd_end = z_at
    if disk != 0 or cd_disk != 0 or here != entries:
        raise _ContainerRefused("spans several disks")
    unaccounted = cd_end - cd_offset - cd_size
    if unaccounted > 0:
        if data[cd_offset : cd_offset + 4] == _CENTRAL_SIG:
            raise _ContainerRefused(
                f"{unaccounted} bytes between the central directory and the end record"
            )
        raise _ContainerRefused(f"{unaccounted} bytes before the first local header")
    if unaccounted < 0:
        raise _ContainerRefused("the central directory overlaps its end record")
    return _Bounds(cd_offset, cd_size, entries)


def _central_names(data: bytes, bounds: _Bounds, limits: ZipLimits) -> list[bytes]:
    """The raw names of the central directory, counted before ``zipfile`` builds anything."""
    names: list[bytes] = []
    at, end = bounds.cd_offset, bounds.cd_offset + bounds.cd_size
    while at < end:
        if len(names) >= limits.entries:
            raise _ContainerRefused(f"more than {limits.entries} entries")
        if at + _CENTRAL.size > end or data[at : at + 4] != _CENTRAL_SIG:
            raise _ContainerRefused("the central directory is damaged")
        header = _CENTRAL.unpack_from(data, at)
        name_len, extra_len, comment_len = header[10], header[11], header[12]
        names.append(data[at + _CENTRAL.size : at + _CENTRAL.size + name_len])
        at += _CENTRAL.size + name_len + extra_len + comment_len
    if at != end:
        raise _ContainerRefused("the central directory's last entry runs past its end")
    if len(names) != bounds.entries:
        raise _ContainerRefused(
            f"the central directory holds {len(names)} entries, its end record says "
            f"{bounds.entries}"
        )
    return names


def _members(data: bytes, limits: ZipLimits) -> list[_Member]:
    """Every entry in central-directory order, once the container's bounds all hold."""
    bounds = _end_record(data)
    if bounds.entries > limits.entries:
        raise _ContainerRefused(f"more than {limits.entries} entries")
    raw_names = _central_names(data, bounds, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos, start_dir, comment = zf.infolist(), zf.start_dir, zf.comment
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError) as exc:
        raise _ContainerRefused(f"not a readable zip file: {exc}") from None
    if len(infos) != len(raw_names) or start_dir != bounds.cd_offset or comment:
        raise _ContainerRefused("zipfile reads another central directory than its bounds say")
    members = [_Member(info, raw) for info, raw in zip(infos, raw_names, strict=True)]
    _tile(data, members, bounds.cd_offset)
    return members


def _tile(data: bytes, members: list[_Member], cd_offset: int) -> None:
    """Every byte before the central directory belongs to exactly one member's local record."""
    cursor, previous = 0, None
    for member in sorted(members, key=lambda m: m.info.header_offset):
        name, at = member.info.orig_filename, member.info.header_offset
        if at > cursor:
            where = (
                "before the first local header" if previous is None
                else f"between members {previous!r} and {name!r}"
            )  # fmt: skip
            raise _ContainerRefused(f"{at - cursor} bytes {where}")
        if at < cursor:
            raise _ContainerRefused(f"member {name!r} overlaps member {previous!r}")
        if at + _LOCAL.size > cd_offset or data[at : at + 4] != _LOCAL_SIG:
            raise _ContainerRefused(f"no local header where the central directory puts {name!r}")
        cursor = _local_record_end(data, member)
        if cursor > cd_offset:
            raise _ContainerRefused(f"member {name!r} runs into the central directory")
        previous = name
    if cursor < cd_offset:
        where = "the last member" if previous is not None else "the start"
        raise _ContainerRefused(
            f"{cd_offset - cursor} bytes between {where} and the central directory"
        )


def _local_record_end(data: bytes, member: _Member) -> int:
    """Where ``member``'s local record (header, data, descriptor) ends; notes disagreements."""
    info = member.info
    (_, _, flags, method, _, _, crc, csize, usize, name_len, extra_len) = _LOCAL.unpack_from(
        data, info.header_offset
    )
    name_at = info.header_offset + _LOCAL.size
    extra = data[name_at + name_len : name_at + name_len + extra_len]
    member.data_start = name_at + name_len + extra_len
    end = member.data_start + info.compress_size
    differ = []
    if data[name_at : name_at + name_len] != member.raw_name:
        differ.append("name")
    if flags != info.flag_bits:
        differ.append("flags")
    if method != info.compress_type:
        differ.append("compression method")
    zip64 = usize == _ZIP64_MARK or csize == _ZIP64_MARK
    usize, csize = _zip64_sizes(extra, usize, csize)
    if info.flag_bits & _DATA_DESCRIPTOR:
        if (crc, csize, usize) not in ((0, 0, 0), (info.CRC, info.compress_size, info.file_size)):
            differ.append("CRC-32 or sizes")
        end = _descriptor_end(data, member, end, zip64 or info.file_size >= _ZIP64_MARK)
    else:
        differ += [what for what, local, central in (
            ("CRC-32", crc, info.CRC),
            ("compressed size", csize, info.compress_size),
            ("size", usize, info.file_size),
        ) if local != central]  # fmt: skip
    if differ and member.disagreement is None:
        member.disagreement = (
            f"its local header disagrees with the central directory ({', '.join(differ)})"
        )
    return end


def _zip64_sizes(extra: bytes, usize: int, csize: int) -> tuple[int, int]:
    """The local header's sizes, read from its ZIP64 extra field where they are marked so."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + length]
        if kind == 0x0001:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if usize == _ZIP64_MARK and values:
                usize = values.pop(0)
            if csize == _ZIP64_MARK and values:
                csize = values.pop(0)
        at += 4 + length
    return usize, csize


def _descriptor_end(data: bytes, member: _Member, at: int, zip64: bool) -> int:
    """The end of the data descriptor at ``at``, which must be signed and agree."""
    shape = _DESCRIPTOR64 if zip64 else _DESCRIPTOR
    if data[at : at + 4] != _DESCRIPTOR_SIG or at + shape.size > len(data):
        name = member.info.orig_filename
        raise _ContainerRefused(f"member {name!r} has a data descriptor without its signature")
    _, crc, csize, usize = shape.unpack_from(data, at)
    info = member.info
    differ = [what for what, got, central in (
        ("CRC-32", crc, info.CRC),
        ("compressed size", csize, info.compress_size),
        ("size", usize, info.file_size),
    ) if got != central]  # fmt: skip
    if differ:
        member.disagreement = (
            f"its data descriptor disagrees with the central directory ({', '.join(differ)})"
        )
    return at + shape.size


def _check_entry(member: _Member, copies: int) -> None:
    """The name, listing and container rules of one entry, before any byte of it is read."""
    info = member.info
    rules = []
    if copies > 1:
        rules.append(
            f"appears {copies} times in the zip (a duplicate name, case and Unicode "
            "normalisation aside); no copy is read"
        )
    name_rule = member_name_problem(info.orig_filename)
    if name_rule and info.orig_filename.endswith("/") and (info.file_size or info.compress_size):
        name_rule += f", and carries {info.file_size} bytes"
    if name_rule:
        rules.append(name_rule)
    elif not info.flag_bits & _UTF8_NAME and not member.raw_name.isascii():
        rules.append("its name is not ASCII and lacks the UTF-8 flag (readers spell it apart)")
    if rules:
        raise _MemberRefused("; ".join(rules))
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind not in (0, stat.S_IFREG) or info.external_attr & 0x10:
        raise _MemberRefused("is marked as a directory, link or device; a bundle holds files")
    if info.flag_bits & _ENCRYPTED:
        raise _MemberRefused("is encrypted")
    if info.flag_bits & ~_ALLOWED_FLAGS:
        raise _MemberRefused(f"uses zip features a bundle never needs (flags {info.flag_bits:#x})")
    if info.compress_type not in (STORED, DEFLATED):
        method = zipfile.compressor_names.get(info.compress_type, "unknown")
        raise _MemberRefused(
            f"compression method {info.compress_type} ({method}); only stored (0) and "
            "deflate (8) are accepted"
        )
    if info.comment:
        raise _MemberRefused("carries a file comment, which no hash covers")
    if member.disagreement:
        raise _MemberRefused(member.disagreement)


def _read_member(data: bytes, member: _Member, limits: ZipLimits, total: int) -> bytes:
    """The member's bytes, inflated under its declared size and the budget that is left."""
    info = member.info
    if info.file_size > limits.member_bytes:
        raise _MemberRefused(
            f"declares {info.file_size} bytes, past the per-member limit of {limits.member_bytes}"
        )
    allowance = limits.total_bytes - total
    if info.file_size > allowance:
        raise _MemberRefused(
            f"declares {info.file_size} bytes, past the bundle's total limit of "
            f"{limits.total_bytes} ({total} already read)"
        )
    raw = memoryview(data)[member.data_start : member.data_start + info.compress_size]
    if info.compress_type == STORED:
        if info.compress_size != info.file_size:
            raise _MemberRefused(
                f"is stored in {info.compress_size} bytes but declares {info.file_size}"
            )
        content = bytes(raw)
    else:
        content = _inflate(raw, info.file_size, min(allowance, limits.member_bytes))
    if zlib.crc32(content) != info.CRC:
        raise _MemberRefused("its CRC-32 differs from the one its headers declare")
    return content


def _inflate(raw: memoryview, declared: int, budget: int) -> bytes:
    """Inflate ``raw`` in bounded steps, stopping at the first byte past ``declared`` or
    ``budget``: the output never grows more than one byte beyond what was allowed."""
    limit = min(declared, budget)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    fed = 0
    try:
        while not inflater.eof:
            if inflater.unconsumed_tail:
                chunk: bytes | memoryview = inflater.unconsumed_tail
            else:
                chunk = raw[fed : fed + _INFLATE_STEP]
                fed += len(chunk)
            piece = inflater.decompress(chunk, limit - len(out) + 1)
            if not piece and not chunk:
                raise _MemberRefused("its data ends before its deflate stream does (truncated)")
            out += piece
            if len(out) > declared:
                raise _MemberRefused(f"inflates past its declared size of {declared} bytes")
            if len(out) > limit:
                raise _MemberRefused(f"inflates past the {limit} bytes its budget leaves")
    except zlib.error as exc:
        raise _MemberRefused(f"is not a valid deflate stream ({exc})") from None
    trailing = len(inflater.unused_data) + len(raw) - fed
    if trailing:
        raise _MemberRefused(f"carries {trailing} bytes after its deflate stream ends")
    if len(out) != declared:
        raise _MemberRefused(f"inflates to {len(out)} bytes, not the {declared} it declares")
    return bytes(out)
