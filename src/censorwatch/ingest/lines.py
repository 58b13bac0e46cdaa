"""The lines of one OONI raw file (``*.jsonl.gz``), read within limits.

A raw file comes from someone else's bucket, so nothing about it is trusted: it may not be
gzip, may end inside a gzip member, may inflate a kilobyte into gigabytes, or hold one line of
a gigabyte or millions of tiny lines. The file is inflated a block at a time and every limit
is checked while streaming, so memory stays bounded by the longest line allowed whatever the
file holds. A line over the size limit is reported by number and skipped to its end; a file
that cannot be read on (not gzip, truncated, corrupt, over its limits, a failing read) raises
``UnreadableFile`` after every line before the fault has been handed out.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

#: Decompressed bytes taken from the gzip stream at a time (the inflater's output is bounded
#: by this, however well the input compresses).
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """What one raw file and one of its lines may hold. OONI's measurements are 1 KB to about
    1 MB; a line is allowed the collector's default body size (16 MiB)."""

    max_line_bytes: int = 16 << 20
    max_line_values: int = 1 << 20  # JSON values (objects, arrays, scalars) in one line
    max_depth: int = 64  # nesting of objects and arrays in one line, as the collector allows
    max_file_lines: int = 1_000_000
    max_file_bytes: int = 4 << 30  # decompressed


class UnreadableFile(Exception):
    """The file cannot be read on from here; the message says why and where."""


def iter_lines(stream: IO[bytes], limits: Limits) -> Iterator[tuple[int, bytes | None]]:
    """``(number, line)`` for every line of the gzip ``stream`` (numbered from 1, without its
    newline); ``line`` is None for a line longer than ``limits.max_line_bytes``, which is not
    kept. Raises ``UnreadableFile`` where the file stops being readable."""
    inflated = gzip.GzipFile(fileobj=stream, mode="rb")
    parts: list[bytes] = []  # the pieces of the line being read
    size = 0  # its length so far
    too_long = False  # the line being read is over the limit: skip to its end
    number = 0
    total = 0
    max_line = limits.max_line_bytes
    while True:
        block = _read_block(inflated, total, number)
        if not block:
            break
        total += len(block)
        if total > limits.max_file_bytes:
            raise UnreadableFile(
                f"inflates to more than {limits.max_file_bytes} bytes (after line {number}); "
                "the rest is not read"
            )
        start = 0
        find = block.find
        while (end := find(b"\n", start)) >= 0:
            number += 1
            if number > limits.max_file_lines:
                raise UnreadableFile(
                    f"more than {limits.max_file_lines} lines; the rest is not read"
                )
            if too_long or size + end - start > max_line:
                yield number, None
            elif parts:
                parts.append(block[start:end])
                yield number, b"".join(parts)
            else:
                yield number, block[start:end]
            parts, size, too_long = [], 0, False
            start = end + 1
        rest = len(block) - start
        if rest and not too_long:
            if size + rest > max_line:
                parts, size, too_long = [], 0, True
            else:
                parts.append(block[start:])
                size += rest
    if parts or too_long:
        number += 1
        if number > limits.max_file_lines:
            raise UnreadableFile(f"more than {limits.max_file_lines} lines; the rest is not read")
        yield number, None if too_long else b"".join(parts)


def _read_block(inflated: gzip.GzipFile, offset: int, lines: int) -> bytes:
    """The next block of decompressed bytes; each way a file can fail becomes one message."""
    where = f"after line {lines}, {offset} bytes in"
    try:
        return inflated.read1(BLOCK_BYTES)  # what one read gives: all of it before a fault
    except EOFError:
        raise UnreadableFile(f"truncated: the gzip stream ends early ({where})") from None
    except gzip.BadGzipFile as exc:
        what = "not gzip" if offset == 0 else "bytes after a gzip member are not gzip"
        raise UnreadableFile(f"{what}: {exc} ({where})") from None
    except zlib.error as exc:
        raise UnreadableFile(f"corrupt gzip: {exc} ({where})") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read: {exc} ({where})") from None
