"""The append-only transparency log: one leaf per accepted measurement, signed tree heads.

A log is a directory::

    log.key      Ed25519 private key of the log (PKCS#8 PEM, 0600), created on first open
    leaves.bin   fixed 72-byte records, appended and fsynced as part of the collector's commit
                 (collector/pipeline.py), before it acknowledges anything:
                 leaf hash (32) | SHA-256(measurement_uid) (32) | check (8)
                 check = SHA-256(b"censorwatch/leaf-record/v1" | u64 index | leaf | uid hash)[:8]
    sth.jsonl    every tree head ever published, one canonical JSON line each, fsynced
    lock         flock(2) target: one writing process per log

Opening a log re-reads both files and proves to itself that every published tree head still
matches the leaves. A torn tail (a crash in the middle of an append) is truncated only when no
published tree head covers it; anything else refuses to open with ``LogCorruptedError``, because
silently repairing a log that already promised something would be rewriting history.

Proofs: every perfect subtree hash (2n-1 nodes of 32 bytes, one ``bytearray`` per level) is
kept in memory, rebuilt from ``leaves.bin`` when the log opens (O(n), about 0.3 s per 100k
leaves). Any MTH(D[a:b]) a proof needs is then at most 2·log2(n) cached nodes, so inclusion and
consistency proofs cost O(log n) lookups and hashes and no storage reads.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from censorwatch.durable import fsync_dir
from censorwatch.evidence import merkle
from censorwatch.evidence.formats import (
    MANIFEST_CONTEXT,
    BatchProof,
    InclusionProof,
    TreeHead,
    checkpoint_origin,
    entry_leaf_hash,
    sign_tree_head,
)
from censorwatch.evidence.note import Checkpoint, Note, NoteSigner, sign_checkpoint
from censorwatch.model import canonical_json
from censorwatch.signing.encoding import public_key_bytes
from censorwatch.signing.keys import load_or_create

RECORD_SIZE = 72
_RECORD_CONTEXT = b"censorwatch/leaf-record/v1"


class LogCorruptedError(Exception):
    """The log's storage contradicts something the log has already published."""


class LogBusyError(Exception):
    """Another process holds the log open for writing."""


class ConflictingEntryError(ValueError):
    """A measurement UID is already logged with different content."""


def _uid_hash(uid: str) -> bytes:
    return hashlib.sha256(uid.encode("utf-8")).digest()


def _record(index: int, leaf: bytes, uid_hash: bytes) -> bytes:
    check = hashlib.sha256(_RECORD_CONTEXT + struct.pack(">Q", index) + leaf + uid_hash).digest()
    return leaf + uid_hash + check[:8]


class TransparencyLog:
    """A persistent RFC 9162 log. Thread-safe; one process per directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.RLock()
        self._lockfile = open(self.directory / "lock", "a+b")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise LogBusyError(f"the log in {self.directory} is open in another process") from None
        try:
            self._key = load_or_create(self.directory / "log.key")
            self.public_key = public_key_bytes(self._key)
            self._levels: list[bytearray] = [bytearray()]
            self._by_uid: dict[bytes, int] = {}
            self.recovered_bytes = 0  # torn tail bytes dropped when opening
            self._heads = self._load_heads()
            self._load_leaves()
            self._check_heads()
            new = not (self.directory / "leaves.bin").exists()
            self._leaves_file = open(self.directory / "leaves.bin", "ab")  # noqa: SIM115
            if new:
                fsync_dir(self.directory)  # the file itself must survive a crash too
        except BaseException:
            self._lockfile.close()
            raise

    # -- opening ---------------------------------------------------------------------------------

    def _load_heads(self) -> list[TreeHead]:
        path = self.directory / "sth.jsonl"
        if not path.exists():
            return []
        data = path.read_bytes()
        heads: list[TreeHead] = []
        offset = 0
        for line in data.split(b"\n")[:-1]:
            try:
                heads.append(TreeHead.from_json(msgspec.json.decode(line)))
            except (msgspec.DecodeError, ValueError) as exc:
                msg = f"{path}: tree head {len(heads)} is unreadable: {exc}"
                raise LogCorruptedError(msg) from None
            offset += len(line) + 1
        if offset != len(data):
            # A head whose line never completed was never fsynced, hence never published.
            with open(path, "r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
        for i, head in enumerate(heads):
            if not head.verify(self.public_key):
                raise LogCorruptedError(f"{path}: tree head {i} is not signed by this log's key")
            if i and (
                head.tree_size < heads[i - 1].tree_size or head.timestamp < heads[i - 1].timestamp
            ):
                raise LogCorruptedError(f"{path}: tree head {i} goes back in size or time")
        return heads

    def _load_leaves(self) -> None:
        path = self.directory / "leaves.bin"
        data = path.read_bytes() if path.exists() else b""
        published = self._heads[-1].tree_size if self._heads else 0
        count = 0
        for count in range(len(data) // RECORD_SIZE + 1):
            rec = data[count * RECORD_SIZE : (count + 1) * RECORD_SIZE]
            if len(rec) < RECORD_SIZE or _record(count, rec[:32], rec[32:64]) != rec:
                break
            self._add_to_tree(rec[:32])
            self._by_uid.setdefault(rec[32:64], count)
        if count < published:
            raise LogCorruptedError(
                f"{path}: leaf record {count} is damaged, but tree head of size {published} "
                "was published; refusing to rewrite history"
            )
        if len(data) > count * RECORD_SIZE:
            self.recovered_bytes = len(data) - count * RECORD_SIZE
            with open(path, "r+b") as fh:
                fh.truncate(count * RECORD_SIZE)
                os.fsync(fh.fileno())

    def _check_heads(self) -> None:
        for i, head in enumerate(self._heads):
            if self.root(head.tree_size) != head.root_hash:
                raise LogCorruptedError(
                    f"the stored leaves no longer match published tree head {i} "
                    f"(size {head.tree_size}); refusing to serve a rewritten log"
                )

    # -- the tree ----------------------------------------------------------------------------------

    def _add_to_tree(self, leaf: bytes) -> None:
        levels = self._levels
        levels[0] += leaf
        h = 0
        while (len(levels[h]) // 32) % 2 == 0:
            right = levels[h][-32:]
            left = levels[h][-64:-32]
            if h + 1 == len(levels):
                levels.append(bytearray())
            levels[h + 1] += merkle.node_hash(bytes(left), bytes(right))
            h += 1

    def _subtree(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            h = n.bit_length() - 1
            i = start >> h
            return bytes(self._levels[h][32 * i : 32 * i + 32])
        k = merkle.split_point(n)
        return merkle.node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    @property
    def size(self) -> int:
        return len(self._levels[0]) // 32

    @property
    def log_id(self) -> str:
        from censorwatch.evidence.formats import log_id

        return log_id(self.public_key)

    def leaf(self, index: int) -> bytes:
        with self._lock:
            if not 0 <= index < self.size:
                raise IndexError(index)
            return bytes(self._levels[0][32 * index : 32 * index + 32])

    def root(self, size: int | None = None) -> bytes:
        with self._lock:
            size = self.size if size is None else size
            if not 0 <= size <= self.size:
                raise merkle.ProofError(f"the log has {self.size} leaves, not {size}")
            return merkle.EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def index_of(self, measurement_uid: str) -> int | None:
        with self._lock:
            return self._by_uid.get(_uid_hash(measurement_uid))

    # -- appending ---------------------------------------------------------------------------------

    def append(self, measurement_uid: str, measurement: dict[str, Any]) -> int:
        """Log one measurement durably; returns its leaf index (the old one if already logged)."""
        return self.append_many([(measurement_uid, measurement)])[0]

    def append_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[int]:
        """Log several measurements with one fsync. Idempotent per UID.

        A UID already logged (or given earlier in ``items``) with the same content is skipped,
        which is what lets the collector replay its archive into the log after a crash without
        adding a leaf twice. One with other content is not logged again; everything else is,
        and then ``ConflictingEntryError`` names the conflicts. Any other error (the disk) leaves
        the log as it was and is raised: the caller must not acknowledge the items.
        """
        with self._lock:
            indexes: list[int] = []
            pending: dict[bytes, tuple[int, bytes]] = {}
            conflicts: list[str] = []
            chunk = bytearray()
            for uid, measurement in items:
                leaf = entry_leaf_hash(uid, measurement)
                uh = _uid_hash(uid)
                known = self._by_uid.get(uh)
                if known is None and uh in pending:
                    known = pending[uh][0]
                if known is not None:
                    known_leaf = pending[uh][1] if uh in pending else self.leaf(known)
                    if known_leaf != leaf:
                        conflicts.append(uid)
                    indexes.append(known)
                    continue
                index = self.size + len(pending)
                pending[uh] = (index, leaf)
                chunk += _record(index, leaf, uh)
                indexes.append(index)
            if chunk:
                try:
                    self._leaves_file.write(chunk)
                    self._leaves_file.flush()
                    os.fsync(self._leaves_file.fileno())
                except BaseException:
                    # Keep the file aligned with what the tree holds: nothing was acknowledged.
                    self._leaves_file.truncate(self.size * RECORD_SIZE)
                    raise
                for uh, (index, leaf) in pending.items():
                    self._add_to_tree(leaf)
                    self._by_uid[uh] = index
            if conflicts:
                shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
                raise ConflictingEntryError(f"already logged with other content: {shown}")
            return indexes

    # -- tree heads --------------------------------------------------------------------------------

    def latest_head(self) -> TreeHead | None:
        with self._lock:
            return self._heads[-1] if self._heads else None

    def heads(self) -> list[TreeHead]:
        with self._lock:
            return list(self._heads)

    def publish_head(self) -> TreeHead:
        """Sign and durably record a head for the current size, unless one already exists.

        A published size is never signed again, so no two heads can disagree about a size.
        """
        with self._lock:
            last = self._heads[-1] if self._heads else None
            if last is not None and last.tree_size == self.size:
                return last
            now = int(time.time() * 1000)
            timestamp = max(now, last.timestamp) if last else now
            head = sign_tree_head(self._key, self.size, timestamp, self.root())
            path = self.directory / "sth.jsonl"
            new = not path.exists()
            with open(path, "ab") as fh:
                fh.write(canonical_json(head.to_json()) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            if new:
                fsync_dir(self.directory)
            self._heads.append(head)
            return head

    def head_for(self, tree_size: int | None) -> TreeHead:
        """The published head of ``tree_size`` (latest if None; publishing one if needed)."""
        with self._lock:
            if tree_size is None:
                return self.publish_head()
            for head in reversed(self._heads):
                if head.tree_size == tree_size:
                    return head
            raise merkle.ProofError(f"no tree head of size {tree_size} was published")

    @property
    def origin(self) -> str:
        """The origin line of this log's checkpoints (also its note key name)."""
        return checkpoint_origin(self.log_id)

    def checkpoint_for(self, head: TreeHead) -> Note:
        """``head`` as a C2SP checkpoint signed by the log (Ed25519 is deterministic, so the
        same head always gives the same note, and nothing more needs storing)."""
        checkpoint = Checkpoint(self.origin, head.tree_size, head.root_hash)
        return sign_checkpoint(checkpoint, NoteSigner(self.origin, self._key))

    def sign_manifest(self, payload: bytes) -> bytes:
        """Sign a bundle manifest; the context prefix keeps this apart from tree heads."""
        return self._key.sign(MANIFEST_CONTEXT + payload)

    # -- proofs ------------------------------------------------------------------------------------

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        with self._lock:
            if tree_size > self.size:
                raise merkle.ProofError(f"the log has {self.size} leaves, not {tree_size}")
            return merkle.inclusion_path(index, tree_size, self._subtree)

    def inclusion_for(self, measurement_uid: str, head: TreeHead) -> InclusionProof:
        """The proof that ``measurement_uid`` is in the tree that ``head`` signs."""
        with self._lock:
            index = self.index_of(measurement_uid)
            if index is None:
                raise KeyError(measurement_uid)
            if index >= head.tree_size:
                raise merkle.ProofError(
                    f"{measurement_uid} was logged after the tree head of size {head.tree_size}"
                )
            return InclusionProof(
                measurement_uid=measurement_uid,
                leaf_index=index,
                tree_size=head.tree_size,
                leaf_hash=self.leaf(index),
                audit_path=self.inclusion_proof(index, head.tree_size),
            )

    def batch_inclusion_for(self, indexes: list[int], head: TreeHead) -> BatchProof:
        """One proof that all the leaves at ``indexes`` (sorted, distinct) are in the tree
        that ``head`` signs (``merkle.batch_inclusion_hashes``)."""
        with self._lock:
            if head.tree_size > self.size:
                raise merkle.ProofError(f"the log has {self.size} leaves, not {head.tree_size}")
            hashes = merkle.batch_inclusion_hashes(indexes, head.tree_size, self._subtree)
            return BatchProof(head.tree_size, hashes)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        with self._lock:
            if second > self.size:
                raise merkle.ProofError(f"the log has {self.size} leaves, not {second}")
            return merkle.consistency_path(first, second, self._subtree)

    def close(self) -> None:
        with self._lock:
            if not self._leaves_file.closed:
                self._leaves_file.close()
                self._lockfile.close()

    def __enter__(self) -> TransparencyLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
