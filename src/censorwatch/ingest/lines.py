"""The lines of one OONI file (``*.jsonl.gz``, an LZ4 can, a report in a tar), read within limits.

A raw file comes from someone else's bucket, so nothing about it is trusted: it may not be
gzip, may end inside a gzip member, may inflate a kilobyte into gigabytes, or hold one line of
a gigabyte or millions of tiny lines. The file is inflated a block at a time (``streams``)
and every limit is checked while streaming, so memory stays bounded by the longest line
allowed whatever the file holds. A line over the size limit is reported by number and
skipped to its end; a file that cannot be read on (not gzip, truncated, corrupt, over its
limits, a failing read) raises ``UnreadableFile`` after every line before the fault has been
handed out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from censorwatch.ingest.streams import StreamError, gzip_blocks


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
    for number, line, _ in split_lines(gzip_blocks(stream), limits):
        yield number, line


def split_lines(
    blocks: Iterator[bytes], limits: Limits
) -> Iterator[tuple[int, bytes | None, bool]]:
    """``(number, line, ended)`` for every line of the decompressed ``blocks``, as
    ``iter_lines`` gives them; ``ended`` says whether a newline closed the line (OONI's can
    UIDs hash a line with its newline)."""
    parts: list[bytes] = []  # the pieces of the line being read
    size = 0  # its length so far
    too_long = False  # the line being read is over the limit: skip to its end
    number = 0
    total = 0
    max_line = limits.max_line_bytes
    while True:
        try:
            block = next(blocks, b"")
        except StreamError as exc:
            raise UnreadableFile(f"{exc} (after line {number}, {total} bytes in)") from None
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
                yield number, None, True
            elif parts:
                parts.append(block[start:end])
                yield number, b"".join(parts), True
            else:
                yield number, block[start:end], True
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
        yield number, None if too_long else b"".join(parts), False
