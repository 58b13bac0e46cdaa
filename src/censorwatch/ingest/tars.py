"""The members of a tar (a postcan, a can of reports) read as a stream, within bounds.

``tarfile`` reads a header's extension records (long names, pax headers) whole, whatever
size the header claims, and keeps every member it has seen. So each step to the next member
may pull from the stream only what the member before it still holds plus ``HEADER_BYTES``,
the members seen are let go as the walk moves on, and the members of one file are counted:
a tar that claims a gigabyte of header, or holds millions of empty members, stops with a
reason instead of filling memory.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from censorwatch.ingest.lines import Limits, UnreadableFile
from censorwatch.ingest.streams import BLOCK_BYTES, BlockReader, StreamError

#: What the headers of one member may take (names, pax records), read-ahead included.
HEADER_BYTES = (1 << 20) + (64 << 10)
_BLOCK = tarfile.BLOCKSIZE


@dataclass(slots=True)
class Member:
    """A regular file of the tar, readable once, while the walk stands on it."""

    name: str
    size: int
    _file: IO[bytes]

    def read_all(self) -> bytes:
        """Its bytes (the caller checks ``size`` against its limit first)."""
        return b"".join(self.blocks())

    def blocks(self) -> Iterator[bytes]:
        """Its bytes, a block at a time; a fault of the stream is a ``StreamError``."""
        while True:
            try:
                block = self._file.read(BLOCK_BYTES)
            except tarfile.TarError as exc:
                raise StreamError(f"corrupt tar: {exc}") from None
            if not block:
                return
            yield block


def members(blocks: Iterator[bytes], limits: Limits) -> Iterator[Member]:
    """The regular files of the tar in the decompressed ``blocks``, in order. Raises
    ``UnreadableFile`` where the tar cannot be read on."""
    reader = BlockReader(blocks, limits.max_file_bytes)
    header_over = f"a tar header of more than {HEADER_BYTES} bytes"
    reader.limit_next(HEADER_BYTES, header_over)
    count = 0
    last = "the start"
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            while True:
                info = tar.next()
                tar.members.clear()  # a stream's walk needs none of the members behind it
                if info is None:
                    return
                count += 1
                if count > limits.max_file_lines:
                    raise UnreadableFile(
                        f"more than {limits.max_file_lines} members; the rest is not read"
                    )
                data_end = info.offset_data + -(-info.size // _BLOCK) * _BLOCK
                last = repr(info.name)
                if info.isfile():
                    reader.limit_next(None)
                    file = tar.extractfile(info)
                    if file is not None:
                        yield Member(info.name, info.size, file)
                # What the member still holds is skipped by the next step, then its header read.
                reader.limit_next(max(0, data_end - reader.total) + HEADER_BYTES, header_over)
    except StreamError as exc:
        raise UnreadableFile(f"{exc} (after member {last}, {reader.total} bytes in)") from None
    except tarfile.TarError as exc:
        what = "not a tar" if count == 0 else "corrupt tar"
        raise UnreadableFile(f"{what}: {exc} (after member {last})") from None
