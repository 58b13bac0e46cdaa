"""Read JSON objects from files: JSON, JSONL, gzip-compressed, single files, whole trees, stdin.

The one reader of the project's JSON inputs: measurements for the analysis and the evidence
export, verdict records for ``events``, event records, the demo's files. Every item names where
it came from (``file``, ``file:line`` or ``file[i]``), and a broken file or line becomes an
error item that names it; reading always goes on with the rest, so the callers agree on what a
readable file is.

JSONL is read in blocks (a pipe or a large archive file is never held whole); a whole-file
JSON document (one object, or a list of objects) is held in memory up to ``MAX_FILE_BYTES``.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import msgspec

SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
MAX_FILE_BYTES = 1 << 30  # one decompressed JSON document; larger ones are refused, not read
MAX_LINE_BYTES = 256 << 20  # one JSONL line; a longer one is an error item, then reading goes on
BLOCK_BYTES = 8 << 20  # a file up to this size is read whole (a document, else JSONL)
# Past the first block, JSONL is read this many bytes at a time: small enough that the
# allocator reuses the buffers instead of mapping fresh pages for each (fewer page faults).
READ_BYTES = 256 << 10
STDIN = "-"

#: A file of more JSON lines than this is cut there (a named error item): a small gzip can
#: inflate to a billion tiny lines, and no real measurement file holds nearly as many.
MAX_ITEMS_PER_FILE = 1_000_000

#: What decoding hostile bytes can raise: not JSON, not UTF-8, or nested past the decoder's
#: recursion limit. Each becomes an error item naming the file and line, never a crash.
JSON_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

_decoder = msgspec.json.Decoder()
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)  # checks a document without building it
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def json_problem(exc: BaseException) -> str:
    """The words for one of ``JSON_ERRORS``, as error items and the analysis print them."""
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid JSON: not UTF-8 (byte {exc.start})"
    if "UTF-8" in str(exc):  # msgspec 0.23 and later raise DecodeError for bad UTF-8
        return "invalid JSON: not UTF-8"
    return f"invalid JSON: {exc}"


class Loaded(msgspec.Struct, frozen=True):
    """One JSON object, or the reason one could not be read, and where it came from.

    (A msgspec struct, built in C: one is made for every line read.)"""

    source: str
    measurement: dict[str, Any] | None = None  # the object (a measurement, or any record)
    error: str | None = None
    raw: bytes | None = None  # the object's own JSON bytes, when it had its own line or file

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def record(self) -> dict[str, Any] | None:
        """The object read, for callers whose objects are not measurements (verdicts, events)."""
        return self.measurement


def iter_json_objects(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    what: str = "JSON",
    decode: bool = True,
) -> Iterator[Loaded]:
    """Every JSON object in ``paths``: files, directories (searched recursively for
    ``SUFFIXES``, sorted) or ``-`` for standard input. ``what`` names the files in the message
    for a directory that holds none. With ``decode=False`` an item carries only ``raw`` (its
    own JSON bytes; a JSONL line is not checked, its reader's decoder does that) and
    ``measurement`` is None, for callers that decode the bytes themselves."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for path in paths:
        p = Path(path)
        if str(path) == STDIN:
            yield from _read_file(p, STDIN, decode)
        elif p.is_dir():
            files = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(SUFFIXES)
            )
            if not files:
                yield Loaded(str(p), error=f"no {what} files (.json, .jsonl, .gz) found")
            for f in files:
                yield from _read_file(f, str(f), decode)
        elif p.exists():
            yield from _read_file(p, str(p), decode)
        else:
            yield Loaded(str(p), error="no such file or directory")


def iter_measurements(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], *, decode: bool = True
) -> Iterator[Loaded]:
    """Every measurement in ``paths`` (files or directories, searched recursively, sorted);
    ``decode=False``: raw bytes only (see ``iter_json_objects``)."""
    return iter_json_objects(paths, what="measurement", decode=decode)


@contextmanager
def _open(path: Path, name: str) -> Iterator[IO[bytes]]:
    """The decompressed bytes of a file or of standard input (gzip recognised by its magic)."""
    if name == STDIN:
        stream: IO[bytes] = sys.stdin.buffer
        peek = getattr(stream, "peek", None)
        if peek is not None and peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=stream) as gz:
                yield gz
        else:
            yield stream
        return
    with path.open("rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=fh) as gz:
                yield gz
        else:
            yield fh


def _read_at_most(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream (pipes return short reads)."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        # In blocks: ``read(n)`` of a file allocates n bytes at once, however short the file.
        block = stream.read(min(left, BLOCK_BYTES))
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def _read_file(path: Path, name: str, decode: bool = True) -> Iterator[Loaded]:
    try:
        with _open(path, name) as stream:
            yield from _read_stream(name, stream, decode)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        yield Loaded(name, error=f"cannot read: {exc}")


def _read_stream(name: str, stream: IO[bytes], decode: bool = True) -> Iterator[Loaded]:
    head = _read_at_most(stream, BLOCK_BYTES)
    if len(head) < BLOCK_BYTES:
        yield from _read_whole(name, head, decode)  # the whole file fits in one block
    elif _starts_as_jsonl(head):
        yield from _read_lines(name, _lines(head, stream), decode)
    else:
        # More than one block and not JSONL: a whole JSON document, held in memory.
        head += _read_at_most(stream, MAX_FILE_BYTES + 1 - len(head))
        if len(head) > MAX_FILE_BYTES:
            yield Loaded(name, error=f"larger than {MAX_FILE_BYTES} bytes; split it into JSONL")
            return
        yield from _read_whole(name, head, decode)


def _starts_as_jsonl(head: bytes) -> bool:
    """Whether a file too long to hold whole reads as JSONL: its first line is JSON."""
    body = head.lstrip()
    if body[:1] not in (b"{", b"["):
        return True
    first, newline, _ = body.partition(b"\n")
    if not newline:
        return False  # one line longer than a block: a document
    try:
        _decoder.decode(first)
    except JSON_ERRORS:
        return False
    return True


def _read_whole(name: str, data: bytes, decode: bool = True) -> Iterator[Loaded]:
    """A file held whole: one JSON document (object or list), else JSONL."""
    stripped = data.strip()
    if not stripped:
        yield Loaded(name, error="empty file")
        return
    if not decode and stripped[:1] in (b"{", b"["):
        try:
            _raw_decoder.decode(stripped)
        except JSON_ERRORS as exc:
            # Not one document: JSONL when its first line reads as a record of its own.
            if not _first_line_is_a_record(stripped):
                yield Loaded(name, error=json_problem(exc))
                return
        else:
            yield from _raw_document(name, stripped)
            return
    # A whole-file JSON document (object or list) first; JSONL when that fails.
    if stripped[:1] in (b"{", b"["):
        try:
            doc = _decoder.decode(stripped)
        except JSON_ERRORS as exc:
            if not _first_line_is_a_record(stripped):
                yield Loaded(name, error=json_problem(exc))
                return
        else:
            if isinstance(doc, dict):
                yield Loaded(name, measurement=doc, raw=stripped)
                return
            if isinstance(doc, list):
                for i, item in enumerate(doc):
                    src = f"{name}[{i}]"
                    if isinstance(item, dict):
                        yield Loaded(src, measurement=item)
                    else:
                        yield Loaded(src, error=f"not a JSON object ({type(item).__name__})")
                return
    yield from _read_lines(name, iter(data.splitlines()), decode)


def _first_line_is_a_record(data: bytes) -> bool:
    """Whether a file that is not one JSON document reads as JSONL: its first line is JSON, or
    is bracketed as a record of its own (``{...}``, ``[...]``) however broken inside, so one
    bad first line is reported alone and the lines after it are still read. A document
    pretty-printed over several lines (first line ``{`` or ``{"a": 1,``) is not."""
    first, newline, _ = data.partition(b"\n")
    first = first.strip()
    if not newline:
        return False
    if (first[:1], first[-1:]) in ((b"{", b"}"), (b"[", b"]")):
        return True
    try:
        _decoder.decode(first)
    except JSON_ERRORS:
        return False
    return True


_KIND_BY_FIRST_BYTE = {b"[": "list", b'"': "str", b"t": "bool", b"f": "bool", b"n": "NoneType"}


def _raw_document(name: str, doc: bytes) -> Iterator[Loaded]:
    """A valid whole-file document as raw items: the object, or each object of the list."""
    if doc[:1] == b"{":
        yield Loaded(name, raw=doc)
        return
    for i, item in enumerate(_raw_list_decoder.decode(doc)):
        data = bytes(item)
        if data[:1] == b"{":
            yield Loaded(f"{name}[{i}]", raw=data)
        else:
            # Named by its first byte: decoding a large non-object only to name it would build
            # all of it (a list of a million lists is 150 MB).
            kind = _KIND_BY_FIRST_BYTE.get(data[:1]) or (
                "float" if any(c in data for c in b".eE") else "int"
            )
            yield Loaded(f"{name}[{i}]", error=f"not a JSON object ({kind})")


def _lines(head: bytes, stream: IO[bytes]) -> Iterator[bytes | None]:
    """The lines of ``head`` and the rest of ``stream``, numbered as ``splitlines`` of the
    whole would number them; None stands for a line longer than ``MAX_LINE_BYTES``."""
    chunk = min(BLOCK_BYTES, READ_BYTES)
    carry = head  # the bytes not yet split: they end with the start of an unfinished line
    pieces: list[bytes] = []  # that line's earlier bytes, from blocks that held no newline
    held = 0  # their length: a long line is joined once, not copied again with every block
    skipping = False  # inside a too-long line, until its end
    while True:
        cut = carry.rfind(b"\n") + 1
        if cut:
            if pieces:
                carry = b"".join([*pieces, carry])
                cut += held
                pieces, held = [], 0
            lines = _block_lines(carry, cut)
            if skipping:
                next(lines, None)  # the end of the too-long line, already reported
                skipping = False
            yield from lines
            carry = carry[cut:]
        if held + len(carry) > MAX_LINE_BYTES:
            if not skipping:
                yield None
            skipping, carry, pieces, held = True, b"", [], 0
        block = stream.read(chunk)
        if not block:
            break
        if carry and b"\n" not in block:
            pieces.append(carry)
            held += len(carry)
            carry = block
        else:
            carry += block
    if pieces:
        carry = b"".join([*pieces, carry])
    if carry:
        lines = carry.splitlines()
        if skipping:
            del lines[0]
        yield from lines


def _block_lines(data: bytes, end: int) -> Iterator[bytes]:
    """The lines of ``data[:end].splitlines()`` (``end`` just past a newline), one at a time and
    without copying the block, so a line's memory is reused by the next (no ``\r`` in the
    block, as JSONL has: a JSON line holds none; else ``splitlines`` itself)."""
    if data.find(b"\r", 0, end) >= 0:
        yield from data[:end].splitlines()
        return
    find = data.find
    start = 0
    while start < end:
        newline = find(b"\n", start, end)
        yield data[start:newline]
        start = newline + 1


def _read_lines(name: str, lines: Iterator[bytes | None], decode: bool = True) -> Iterator[Loaded]:
    items = 0
    for lineno, line in enumerate(lines, 1):
        src = f"{name}:{lineno}"
        items += 1
        if items > MAX_ITEMS_PER_FILE:
            yield Loaded(src, error=f"more than {MAX_ITEMS_PER_FILE:,} lines: the rest of the "
                         "file is not read (split it)")  # fmt: skip
            return
        if line is None:
            yield Loaded(src, error=f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        line = line.strip()
        if not line:
            continue
        if not decode:
            yield Loaded(src, raw=line)
            continue
        try:
            doc = _decoder.decode(line)
        except JSON_ERRORS as exc:
            yield Loaded(src, error=json_problem(exc))
            continue
        if isinstance(doc, dict):
            yield Loaded(src, measurement=doc, raw=line)
        else:
            yield Loaded(src, error=f"not a JSON object ({type(doc).__name__})")
