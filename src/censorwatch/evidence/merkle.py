"""The Merkle tree of RFC 9162 (Certificate Transparency 2.0, §2.1): hashing, proofs, checks.

Pure functions, no storage. Proof *generation* takes a ``subtree(start, end)`` callable that
returns MTH(D[start:end]); the log answers it from cached perfect-subtree hashes, tests answer it
from a plain list. Proof *verification* follows the algorithms of §2.1.3.2 and §2.1.4.2 and
needs nothing but the proof, the sizes and the hashes, so a bundle verifies offline.

Conventions beyond the RFC (documented in docs/evidence.md): a consistency proof between equal
sizes is empty and holds when the roots are equal; from size 0 it is empty and always holds
(the empty tree is a prefix of every tree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof was requested for sizes or indexes the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the domain prefix keeps leaves and nodes apart."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): where RFC 9162 splits."""
    if n < 2:
        raise ValueError("a tree of fewer than 2 leaves has no split point")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of a list of leaf hashes (iterative, O(n))."""
    if not leaves:
        return EMPTY_ROOT
    return list_subtree(leaves)(0, len(leaves))


def list_subtree(leaves: Sequence[bytes]) -> Subtree:
    """A ``subtree`` callable over an in-memory list of leaf hashes."""

    def subtree(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaves[start]
        k = split_point(end - start)
        return node_hash(subtree(start, start + k), subtree(start + k, end))

    return subtree


def inclusion_path(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, leaf-side first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    siblings: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            siblings.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(subtree(lo, lo + k))
            lo = lo + k
    siblings.reverse()
    return siblings


def consistency_path(first: int, second: int, subtree: Subtree) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, deepest node first."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    nodes: list[bytes] = []
    lo, hi, m, whole = 0, second, first, True
    while True:
        if m == hi - lo:
            if not whole:
                nodes.append(subtree(lo, hi))
            break
        k = split_point(hi - lo)
        if m <= k:
            nodes.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            nodes.append(subtree(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    nodes.reverse()
    return nodes


def _valid_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE for h in hashes)


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` implies for ``leaf`` at ``index`` (RFC 9162 §2.1.3.2), or None."""
    if not 0 <= index < size or not _valid_hashes(leaf, *path):
        return None
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """True when ``leaf`` is at ``index`` in the tree of ``size`` leaves whose head is ``root``."""
    computed = root_from_inclusion(index, size, leaf, path)
    return computed is not None and _valid_hashes(root) and computed == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> bool:
    """True when the tree of ``first`` leaves is a prefix of the tree of ``second`` leaves.

    RFC 9162 §2.1.4.2, plus the two degenerate cases named in the module docstring.
    """
    if not _valid_hashes(first_root, second_root, *path) or not 0 <= first <= second:
        return False
    if first == 0:
        return not path
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    nodes = list(path)
    if first & (first - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        nodes.insert(0, bytes(first_root))
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
