"""The RFC 9162 tree: published test vectors, and properties against a naive recomputation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.evidence import merkle

# The Certificate Transparency reference inputs and the roots every conforming
# implementation computes for the first n of them (RFC 6962/9162 test data, as published in
# the CT and transparency-dev test suites).
CT_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
CT_CONSISTENCY = [
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip

CT_LEAVES = [merkle.leaf_hash(bytes.fromhex(x)) for x in CT_INPUTS]


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition, written independently of merkle.py."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(leaves[:k]) + naive_root(leaves[k:])).digest()


def leaves_of(n: int, salt: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(f"{salt}:{i}".encode()) for i in range(n)]


def test_roots_match_the_reference_vectors() -> None:
    for n, expected in enumerate(CT_ROOTS):
        assert merkle.root_from_leaves(CT_LEAVES[:n]).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_the_reference_vectors(index, size, path) -> None:
    got = merkle.inclusion_path(index, size, merkle.list_subtree(CT_LEAVES))
    assert [h.hex() for h in got] == path
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify_inclusion(index, size, CT_LEAVES[index], got, root)


@pytest.mark.parametrize(("first", "second", "path"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_reference_vectors(first, second, path) -> None:
    got = merkle.consistency_path(first, second, merkle.list_subtree(CT_LEAVES))
    assert [h.hex() for h in got] == path
    assert merkle.verify_consistency(
        first,
        second,
        bytes.fromhex(CT_ROOTS[first]),
        bytes.fromhex(CT_ROOTS[second]),
        got,
    )


def test_every_proof_in_small_trees_verifies_and_matches_the_naive_root() -> None:
    leaves = leaves_of(70)
    sub = merkle.list_subtree(leaves)
    roots = [naive_root(leaves[:n]) for n in range(71)]
    for n in range(1, 71):
        assert merkle.root_from_leaves(leaves[:n]) == roots[n]
        for i in range(n):
            assert merkle.verify_inclusion(
                i, n, leaves[i], merkle.inclusion_path(i, n, sub), roots[n]
            )
        for m in range(n + 1):
            proof = merkle.consistency_path(m, n, sub)
            assert merkle.verify_consistency(m, n, roots[m], roots[n], proof)


sizes = st.integers(min_value=1, max_value=600)


@settings(max_examples=200, deadline=None)
@given(n=sizes, data=st.data())
def test_inclusion_property(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n, salt=n)
    root = naive_root(leaves)
    i = data.draw(st.integers(0, n - 1))
    path = merkle.inclusion_path(i, n, merkle.list_subtree(leaves))
    assert merkle.verify_inclusion(i, n, leaves[i], path, root)
    # The path recomputes the independent root, and nothing else passes.
    assert merkle.root_from_inclusion(i, n, leaves[i], path) == root
    assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"other"), path, root)
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
        assert not merkle.verify_inclusion(j, n, leaves[i], path, root)
        k = data.draw(st.integers(0, len(path) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(path)
        flipped = bytearray(bad[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad[k] = bytes(flipped)
        assert not merkle.verify_inclusion(i, n, leaves[i], bad, root)
        assert not merkle.verify_inclusion(i, n, leaves[i], path[:-1], root)
        assert not merkle.verify_inclusion(i, n, leaves[i], [*path, leaves[0]], root)
        bigger = naive_root(leaves_of(n + 1, salt=n))  # same first n leaves, one more
        assert not merkle.verify_inclusion(i, n + 1, leaves[i], path, bigger)


@settings(max_examples=200, deadline=None)
@given(n=sizes, data=st.data())
def test_consistency_property(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n, salt=n + 7)
    m = data.draw(st.integers(0, n))
    old, new = naive_root(leaves[:m]), naive_root(leaves)
    proof = merkle.consistency_path(m, n, merkle.list_subtree(leaves))
    assert merkle.verify_consistency(m, n, old, new, proof)
    if 0 < m < n:
        # A different history of the same size is not consistent with the new tree.
        forked = list(leaves[:m])
        forked[data.draw(st.integers(0, m - 1))] = merkle.leaf_hash(b"rewritten")
        assert not merkle.verify_consistency(m, n, naive_root(forked), new, proof)
        assert not merkle.verify_consistency(m, n, old, naive_root(forked + leaves[m:]), proof)
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = hashlib.sha256(bad[k]).digest()
        assert not merkle.verify_consistency(m, n, old, new, bad)
        assert not merkle.verify_consistency(m, n, old, new, proof[:-1])
        assert not merkle.verify_consistency(m, n, old, new, [*proof, new])


def test_degenerate_and_malformed_inputs_are_refused() -> None:
    leaves = leaves_of(8)
    root = naive_root(leaves)
    sub = merkle.list_subtree(leaves)
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_path(8, 8, sub)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_path(5, 3, sub)
    assert merkle.consistency_path(8, 8, sub) == []
    assert merkle.verify_consistency(8, 8, root, root, [])
    assert not merkle.verify_consistency(8, 8, root, naive_root(leaves[:7]), [])
    assert not merkle.verify_consistency(4, 8, naive_root(leaves[:4]), root, [])
    assert merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, root, [])
    assert not merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, root, [root])
    assert not merkle.verify_inclusion(0, 8, leaves[0][:31], merkle.inclusion_path(0, 8, sub), root)
    assert not merkle.verify_inclusion(-1, 8, leaves[0], merkle.inclusion_path(0, 8, sub), root)
    assert not merkle.verify_inclusion(0, 0, leaves[0], [], root)
    # Leaves and nodes are hashed apart: an interior node cannot pass for a leaf.
    node = merkle.node_hash(leaves[0], leaves[1])
    assert merkle.verify_inclusion(0, 1, node, [], node)
    assert not merkle.verify_inclusion(0, 4, node, merkle.inclusion_path(0, 2, sub)[1:], root)
