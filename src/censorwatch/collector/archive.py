"""The append-only archive: the one copy of every accepted measurement that must never be lost.

Segments are gzip files named ``seg-NNNNNNNN.jsonl.gz``. Each commit appends one gzip member
(a block of JSON lines) and fsyncs before anyone is told the records are safe. Concatenated
members are a valid gzip stream, so ``zcat`` reads a segment. A crash can only leave a torn
*last* member; it fails its CRC or ends early, and recovery cuts it off.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from censorwatch.durable import fsync_dir
from censorwatch.store.base import ArchiveLocation

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"^seg-(\d{8})\.jsonl\.gz$")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Block:
    """One gzip member: its lines, where it starts, and where the next one starts."""

    location: ArchiveLocation
    end: int
    lines: list[bytes]


class TornBlock(Exception):
    """A member that ends early or fails its checksum (only legal at the end of a segment)."""


def segment_name(number: int) -> str:
    return f"seg-{number:08d}.jsonl.gz"


def _read_member(fh, start: int) -> tuple[bytes, int]:
    """Decompress the member at ``start``; returns (data, end offset). Raises TornBlock."""
    fh.seek(start)
    d = zlib.decompressobj(wbits=31)
    out: list[bytes] = []
    consumed = 0
    try:
        while not d.eof:
            chunk = fh.read(_CHUNK)
            if not chunk:
                raise TornBlock(f"member at {start} ends early")
            consumed += len(chunk)
            out.append(d.decompress(chunk))
    except zlib.error as exc:
        raise TornBlock(f"member at {start} is corrupt: {exc}") from exc
    return b"".join(out), start + consumed - len(d.unused_data)


class Archive:
    """Append-only, fsync'd segment files. One writer at a time (a lock guards ``append``)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        compresslevel: int = 3,
        fsync: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.compresslevel = compresslevel
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fh = None
        self._current: str | None = None
        self.torn_bytes_dropped = 0

    # -- layout ----------------------------------------------------------------------------
    def segments(self) -> list[str]:
        names = [p.name for p in self.directory.iterdir() if SEGMENT_RE.match(p.name)]
        return sorted(names)

    # -- writing ---------------------------------------------------------------------------
    def recover(self) -> int:
        """Cut a torn last member off the newest segment; returns the bytes dropped."""
        names = self.segments()
        if not names:
            return 0
        path = self.directory / names[-1]
        size = path.stat().st_size
        good = 0
        with open(path, "rb") as fh:
            while good < size:
                try:
                    _, good = _read_member(fh, good)
                except TornBlock as exc:
                    log.warning("archive %s: dropping torn tail (%s)", names[-1], exc)
                    break
        dropped = size - good
        if dropped:
            with open(path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        self.torn_bytes_dropped += dropped
        return dropped

    def _open_current(self) -> None:
        names = self.segments()
        if names and (self.directory / names[-1]).stat().st_size < self.segment_bytes:
            name = names[-1]
        else:
            last = int(SEGMENT_RE.match(names[-1]).group(1)) if names else 0
            name = segment_name(last + 1)
        path = self.directory / name
        created = not path.exists()
        self._fh = open(path, "ab")  # noqa: SIM115 - kept open across appends
        self._current = name
        if created and self.fsync:
            fsync_dir(self.directory)

    def append(self, lines: Sequence[bytes]) -> tuple[ArchiveLocation, ArchiveLocation]:
        """Write ``lines`` as one member and make it durable.

        Returns the location of the member and the position just after it (the checkpoint).
        """
        payload = b"".join(line + b"\n" for line in lines)
        member = gzip.compress(payload, compresslevel=self.compresslevel, mtime=0)
        with self._lock:
            if self._fh is None:
                self.recover()
                self._open_current()
            assert self._fh is not None and self._current is not None
            if self._fh.tell() >= self.segment_bytes:
                self._fh.close()
                self._fh = None
                self._open_current()
            fh = self._fh
            start = fh.tell()
            try:
                fh.write(member)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            except BaseException:
                # Never leave a half-written member behind a later good one.
                fh.truncate(start)
                raise
            return ArchiveLocation(self._current, start), ArchiveLocation(
                self._current, start + len(member)
            )

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    # -- reading ---------------------------------------------------------------------------
    def blocks(self, since: ArchiveLocation | None = None) -> Iterator[Block]:
        """Every complete member, in order, starting at ``since`` (a checkpoint) if given.

        A torn member ends its segment's iteration (recovery removes it from the newest one).
        """
        for name in self.segments():
            if since is not None and name < since.segment:
                continue
            pos = since.offset if since is not None and name == since.segment else 0
            with open(self.directory / name, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                while pos < size:
                    try:
                        data, end = _read_member(fh, pos)
                    except TornBlock as exc:
                        log.warning("archive %s: stopping at torn member (%s)", name, exc)
                        break
                    yield Block(ArchiveLocation(name, pos), end, data.splitlines())
                    pos = end

    def read_block(self, location: ArchiveLocation) -> list[bytes]:
        if not SEGMENT_RE.match(location.segment):
            raise ValueError("not a segment name")
        with open(self.directory / location.segment, "rb") as fh:
            data, _ = _read_member(fh, location.offset)
        return data.splitlines()
