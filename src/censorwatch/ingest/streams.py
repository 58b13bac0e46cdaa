"""A file of the bucket as decompressed blocks: gzip, LZ4 frames, or the bytes as they are.

Every decoder hands out at most ``BLOCK_BYTES`` at a time, however well its input compresses,
so a bomb costs time (bounded by the callers' byte limits) but never memory. Each way a stream
can fail becomes a ``StreamError`` whose message says what is wrong; the caller adds where.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import IO

import lz4.frame

#: Decompressed bytes handed out at a time.
BLOCK_BYTES = 1 << 20
#: Compressed bytes read from the source at a time.
READ_BYTES = 1 << 16

GZIP_MAGIC = b"\x1f\x8b"
LZ4_MAGIC = b"\x04\x22\x4d\x18"


class StreamError(Exception):
    """The stream cannot be read on; the message says why (not where: the caller knows)."""


def gzip_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The inflated bytes of a gzip stream of one or more members."""
    inflated = gzip.GzipFile(fileobj=stream, mode="rb")
    offset = 0
    while True:
        try:
            block = inflated.read1(BLOCK_BYTES)  # all of it before a fault
        except EOFError:
            raise StreamError("truncated: the gzip stream ends early") from None
        except gzip.BadGzipFile as exc:
            what = "not gzip" if offset == 0 else "bytes after a gzip member are not gzip"
            raise StreamError(f"{what}: {exc}") from None
        except zlib.error as exc:
            raise StreamError(f"corrupt gzip: {exc}") from None
        except OSError as exc:
            raise StreamError(f"cannot read: {exc}") from None
        if not block:
            return
        offset += len(block)
        yield block


def lz4_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The bytes of a stream of one or more LZ4 frames (OONI's cans), read as it comes: no
    need to hold the whole file, as a seeking reader would."""
    decoder = lz4.frame.LZ4FrameDecompressor()
    pending = b""  # compressed bytes not yet given to the decoder
    in_frame = False  # the decoder has taken part of a frame
    frames = 0  # frames read to their end
    while True:
        if not pending and decoder.needs_input:
            pending = _read(stream)
            if not pending:
                if in_frame:
                    raise StreamError("truncated: the LZ4 stream ends inside a frame")
                return
        framed = in_frame or pending.startswith(LZ4_MAGIC)  # a frame has begun
        try:
            block = decoder.decompress(pending, max_length=BLOCK_BYTES)
        except RuntimeError as exc:
            if framed:
                raise StreamError(f"corrupt LZ4: {exc}") from None
            if frames == 0:
                raise StreamError(f"not LZ4: {exc}") from None
            raise StreamError(f"bytes after an LZ4 frame are not LZ4: {exc}") from None
        pending = b""
        in_frame = True
        if decoder.eof:
            frames += 1
            pending = decoder.unused_data or b""
            decoder = lz4.frame.LZ4FrameDecompressor()
            in_frame = False
        if block:
            yield block


def plain_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The bytes of a stream that is not compressed."""
    while block := _read(stream, BLOCK_BYTES):
        yield block


def gzip_or_plain_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """Inflated when the stream starts as gzip does, else as it is: some of OONI's older
    postcans are named ``.tar.gz`` but hold a plain tar."""
    head = _read(stream, 2)
    replay = _Prefixed(head, stream)
    if head == GZIP_MAGIC:
        yield from gzip_blocks(replay)  # type: ignore[arg-type]
    else:
        yield from plain_blocks(replay)  # type: ignore[arg-type]


def _read(stream: IO[bytes], size: int = READ_BYTES) -> bytes:
    try:
        return stream.read(size)
    except OSError as exc:
        raise StreamError(f"cannot read: {exc}") from None


class _Prefixed:
    """``stream`` with ``head`` (bytes already read from it) put back in front."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                head, self._head = self._head, b""
                rest = self._stream.read(-1 if size < 0 else size - len(head))
                return head + rest
            head, self._head = self._head[:size], self._head[size:]
            return head
        return self._stream.read(size)


class BlockReader:
    """A read-only file over decompressed blocks, for ``tarfile``; it counts what it hands out
    and refuses to go past ``max_bytes`` in all, or past a budget set for a stretch of reading
    (``limit_next``), so a header that claims gigabytes cannot make anyone hold them."""

    def __init__(self, blocks: Iterator[bytes], max_bytes: int) -> None:
        self._blocks = blocks
        self._buffer = b""
        self.total = 0
        self.max_bytes = max_bytes
        self._budget: int | None = None
        self._budget_what = ""

    def limit_next(self, budget: int | None, what: str = "") -> None:
        """Allow at most ``budget`` more bytes (None: no budget but the file's)."""
        self._budget, self._budget_what = budget, what

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = BLOCK_BYTES
        while not self._buffer:
            block = next(self._blocks, b"")
            if not block:
                return b""
            self._buffer = block
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.total += len(out)
        if self.total > self.max_bytes:
            raise StreamError(f"decompresses to more than {self.max_bytes} bytes")
        if self._budget is not None:
            self._budget -= len(out)
            if self._budget < 0:
                raise StreamError(self._budget_what or "over its read budget")
        return out

    def tell(self) -> int:
        return self.total

    def close(self) -> None:
        """Nothing to release: the source stream is closed by its owner."""
