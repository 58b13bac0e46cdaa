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


# -- batch inclusion: many leaves, one proof -------------------------------------------------------
#
# One audit path per leaf repeats the upper nodes of the tree in every proof. A batch proof
# instead gives, left to right, the hash of every *maximal* subtree (of the RFC 9162 split) that
# holds none of the proven leaves; the verifier rebuilds the root from those and the proven leaf
# hashes. k leaves of an n-leaf tree cost at most k·log2(n/k) + log2(n) hashes, and a run of
# consecutive leaves costs almost nothing (docs/evidence.md, "Batch inclusion proof").


def batch_inclusion_hashes(indexes: Sequence[int], size: int, subtree: Subtree) -> list[bytes]:
    """The batch proof for the sorted, distinct leaf ``indexes`` of a tree of ``size``."""
    _check_batch(indexes, size)
    hashes: list[bytes] = []
    stack = [(0, size, 0, len(indexes))]  # range [lo, hi) holding indexes[a:b]
    while stack:
        lo, hi, a, b = stack.pop()
        if a == b:
            hashes.append(subtree(lo, hi))
            continue
        if hi - lo == 1:
            continue
        mid = lo + split_point(hi - lo)
        cut = _bisect(indexes, mid, a, b)
        stack.append((mid, hi, cut, b))  # pushed first, so the left half is taken first
        stack.append((lo, mid, a, cut))
    return hashes


def root_from_batch(
    indexes: Sequence[int], leaves: Sequence[bytes], size: int, hashes: Sequence[bytes]
) -> bytes | None:
    """The root that a batch proof implies for ``leaves`` at ``indexes`` (sorted, distinct),
    or None when the proof has too few or too many hashes or the input is malformed."""
    try:
        _check_batch(indexes, size)
    except ProofError:
        return None
    if len(leaves) != len(indexes) or not indexes or not _valid_hashes(*leaves, *hashes):
        return None
    supply = iter(hashes)
    # Post-order walk with an explicit stack; each frame is (lo, hi, a, b, expanded).
    done: list[bytes] = []
    stack: list[tuple[int, int, int, int, bool]] = [(0, size, 0, len(indexes), False)]
    while stack:
        lo, hi, a, b, expanded = stack.pop()
        if a == b:
            nxt = next(supply, None)
            if nxt is None:
                return None
            done.append(bytes(nxt))
        elif hi - lo == 1:
            done.append(bytes(leaves[a]))
        elif expanded:
            right, left = done.pop(), done.pop()
            done.append(node_hash(left, right))
        else:
            mid = lo + split_point(hi - lo)
            cut = _bisect(indexes, mid, a, b)
            stack.append((lo, hi, a, b, True))
            stack.append((mid, hi, cut, b, False))
            stack.append((lo, mid, a, cut, False))
    if next(supply, None) is not None:
        return None
    return done[0] if len(done) == 1 else None


def verify_batch_inclusion(
    indexes: Sequence[int],
    leaves: Sequence[bytes],
    size: int,
    hashes: Sequence[bytes],
    root: bytes,
) -> bool:
    """True when every leaf sits at its index in the tree of ``size`` leaves headed by ``root``."""
    computed = root_from_batch(indexes, leaves, size, hashes)
    return computed is not None and _valid_hashes(root) and computed == root


def _check_batch(indexes: Sequence[int], size: int) -> None:
    last = -1
    for i in indexes:
        if not isinstance(i, int) or not last < i < size:
            raise ProofError(f"leaf indexes must be sorted, distinct and below {size}")
        last = i


def _bisect(indexes: Sequence[int], value: int, a: int, b: int) -> int:
    """The first position in ``indexes[a:b]`` whose index is >= ``value``."""
    while a < b:
        m = (a + b) // 2
        if indexes[m] < value:
            a = m + 1
        else:
            b = m
    return a
