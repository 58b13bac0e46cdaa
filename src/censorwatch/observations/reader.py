"""Read measurements from files: JSON, JSONL, gzip-compressed, single files or whole trees.

Every item names where it came from (``file`` or ``file:line``), and a broken file or line
becomes an error item that names it; reading always goes on with the rest. The analysis, the
ingest and the collector all read through here, so they agree on what a readable file is.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
MAX_FILE_BYTES = 1 << 30  # one decompressed file; larger files are refused, not read

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Loaded:
    """One measurement, or the reason one could not be read, and where it came from."""

    source: str
    measurement: dict[str, Any] | None = None
    error: str | None = None
    raw: bytes | None = None  # the measurement's own JSON bytes, when it had its own line

    @property
    def ok(self) -> bool:
        return self.measurement is not None


def iter_measurements(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Loaded]:
    """Every measurement in ``paths`` (files or directories, searched recursively, sorted)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(SUFFIXES)
            )
            if not files:
                yield Loaded(str(p), error="no measurement files (.json, .jsonl, .gz) found")
            for f in files:
                yield from _read_file(f)
        elif p.exists() or str(path) == "-":
            yield from _read_file(p)
        else:
            yield Loaded(str(p), error="no such file or directory")


def _read_bytes(path: Path) -> bytes:
    if str(path) == "-":
        import sys

        return sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    with path.open("rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=fh) as gz:
                data = gz.read(MAX_FILE_BYTES + 1)
        else:
            data = fh.read(MAX_FILE_BYTES + 1)
    return data


def _read_file(path: Path) -> Iterator[Loaded]:
    name = str(path)
    try:
        data = _read_bytes(path)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield Loaded(name, error=f"cannot read: {exc}")
        return
    if len(data) > MAX_FILE_BYTES:
        yield Loaded(name, error=f"larger than {MAX_FILE_BYTES} bytes; split it into JSONL")
        return
    stripped = data.strip()
    if not stripped:
        yield Loaded(name, error="empty file")
        return
    # A whole-file JSON document (object or list) first; JSONL when that fails.
    if stripped[:1] in (b"{", b"["):
        try:
            doc = _decoder.decode(stripped)
        except msgspec.DecodeError as exc:
            first = stripped.split(b"\n", 1)[0].strip()
            try:
                _decoder.decode(first)
            except msgspec.DecodeError:
                yield Loaded(name, error=f"invalid JSON: {exc}")
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
    yield from _read_lines(name, data)


def _read_lines(name: str, data: bytes) -> Iterator[Loaded]:
    for lineno, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        src = f"{name}:{lineno}"
        try:
            doc = _decoder.decode(line)
        except msgspec.DecodeError as exc:
            yield Loaded(src, error=f"invalid JSON: {exc}")
            continue
        if isinstance(doc, dict):
            yield Loaded(src, measurement=doc, raw=line)
        else:
            yield Loaded(src, error=f"not a JSON object ({type(doc).__name__})")
