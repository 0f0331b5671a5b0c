"""RFC 9162 Merkle trees against the RFC 6962 / RFC 9162 vectors, against the
RFC's recursive definitions, and attacked with single-bit flips (hypothesis)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmark.errors import InvalidInput, InvalidProof
from wmark.protocol.hazmat.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc9162-merkle.json").read_text())
H = bytes.fromhex
LEAVES = [leaf_hash(H(x)) for x in VECTORS["leaf_inputs"]]
VECTOR_TREE = MerkleTree(LEAVES)
SIZES = range(1, 65)


# --- The RFC's own recursive definitions (section 2.1), as an independent oracle.

def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    return subproof(m, d[:k], b) + [mth(d[k:])] if m <= k else subproof(m - k, d[k:], False) + [mth(d[:k])]


LEAVES_64 = [leaf_hash(b"leaf %d" % i) for i in range(64)]
TREE_64 = MerkleTree(LEAVES_64)


# --- Known answers.

def test_leaf_and_node_hashes_match_the_vectors():
    assert [h.hex() for h in LEAVES] == VECTORS["leaf_hashes"]
    assert EMPTY_ROOT.hex() == VECTORS["empty_root"]
    for height, row in enumerate(VECTORS["node_hashes_by_level"]["levels"]):
        width = 1 << height
        for j, expected in enumerate(row):
            assert MerkleTree(LEAVES[j * width:(j + 1) * width]).root().hex() == expected


@pytest.mark.parametrize("vector", VECTORS["roots"], ids=lambda v: f"size{v['tree_size']}")
def test_roots_match_the_vectors(vector):
    assert VECTOR_TREE.root(vector["tree_size"]).hex() == vector["root"]
    assert MerkleTree(LEAVES[:vector["tree_size"]]).root().hex() == vector["root"]


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['leaf_index']}of{v['tree_size']}")
def test_inclusion_proofs_match_the_vectors(vector):
    proof = VECTOR_TREE.inclusion_proof(vector["leaf_index"], vector["tree_size"])
    assert [p.hex() for p in proof] == vector["audit_path"]
    verify_inclusion(H(vector["leaf_hash"]), vector["leaf_index"], vector["tree_size"], proof, H(vector["root"]))


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['size1']}to{v['size2']}")
def test_consistency_proofs_match_the_vectors(vector):
    proof = VECTOR_TREE.consistency_proof(vector["size1"], vector["size2"])
    assert [p.hex() for p in proof] == vector["proof"]
    verify_consistency(vector["size1"], vector["size2"], H(vector["root1"]), H(vector["root2"]), proof)


def _probe_id(probe):
    return probe["file"].removeprefix("testdata/").removesuffix(".json")


@pytest.mark.parametrize("probe", VECTORS["verifier_probes"]["inclusion"], ids=_probe_id)
def test_inclusion_probes(probe):
    def check():
        verify_inclusion(H(probe["leaf_hash"]), probe["leaf_index"], probe["tree_size"],
                         [H(p) for p in probe["proof"]], H(probe["root"]))
    if probe["want_valid"]:
        check()
    else:
        with pytest.raises(InvalidProof):
            check()


@pytest.mark.parametrize("probe", VECTORS["verifier_probes"]["consistency"], ids=_probe_id)
def test_consistency_probes(probe):
    def check():
        verify_consistency(probe["size1"], probe["size2"], H(probe["root1"]), H(probe["root2"]),
                           [H(p) for p in probe["proof"]])
    if probe["want_valid"]:
        check()
    else:
        with pytest.raises(InvalidProof):
            check()


def test_all_196_probes_are_present():
    probes = VECTORS["verifier_probes"]
    assert len(probes["inclusion"]) + len(probes["consistency"]) == 196


# --- Every tree size from 1 to 64, exhaustively, against the RFC's definitions.

@pytest.mark.parametrize("n", SIZES)
def test_every_inclusion_proof_up_to_64_leaves(n):
    d = LEAVES_64[:n]
    root = TREE_64.root(n)
    assert root == mth(d) == MerkleTree(d).root()
    for m in range(n):
        proof = TREE_64.inclusion_proof(m, n)
        assert proof == path(m, d)
        verify_inclusion(d[m], m, n, proof, root)


@pytest.mark.parametrize("n", SIZES)
def test_every_consistency_proof_up_to_64_leaves(n):
    d = LEAVES_64[:n]
    for m in range(1, n + 1):
        proof = TREE_64.consistency_proof(m, n)
        assert proof == subproof(m, d, True)
        verify_consistency(m, n, TREE_64.root(m), TREE_64.root(n), proof)


def test_truncate_undoes_appends():
    tree = MerkleTree(LEAVES_64[:13])
    for leaf in LEAVES_64[50:57]:
        tree.append(leaf)
    tree.truncate(13)
    for leaf in LEAVES_64[13:40]:
        tree.append(leaf)
    assert [tree.root(n) for n in range(41)] == [TREE_64.root(n) for n in range(41)]


# --- Single-bit flips (hypothesis): each must be rejected.

def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def inclusion_cases(draw):
    n = draw(st.integers(1, 64))
    return n, draw(st.integers(0, n - 1))


@st.composite
def consistency_cases(draw):
    n = draw(st.integers(2, 64))
    return draw(st.integers(1, n - 1)), n


FLIPS = settings(max_examples=300, deadline=None)


@FLIPS
@given(inclusion_cases(), st.data())
def test_inclusion_rejects_any_flipped_bit(case, data):
    n, m = case
    leaf, root, proof = LEAVES_64[m], TREE_64.root(n), TREE_64.inclusion_proof(m, n)
    target = data.draw(st.sampled_from(["leaf", "root", "index"] + ["proof"] * bool(proof)))
    if target == "index":
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, m ^ (1 << data.draw(st.integers(0, 7))), n, proof, root)
        return
    bit = data.draw(st.integers(0, 255))
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    else:
        i = data.draw(st.integers(0, len(proof) - 1))
        proof = proof[:i] + [_flip(proof[i], bit)] + proof[i + 1:]
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, m, n, proof, root)


@FLIPS
@given(consistency_cases(), st.data())
def test_consistency_rejects_any_flipped_bit(case, data):
    m, n = case
    root1, root2, proof = TREE_64.root(m), TREE_64.root(n), TREE_64.consistency_proof(m, n)
    target = data.draw(st.sampled_from(["root1", "root2", "proof", "first"]))
    if target == "first":
        with pytest.raises(InvalidProof):
            verify_consistency(m ^ (1 << data.draw(st.integers(0, 7))), n, root1, root2, proof)
        return
    bit = data.draw(st.integers(0, 255))
    if target == "root1":
        root1 = _flip(root1, bit)
    elif target == "root2":
        root2 = _flip(root2, bit)
    else:
        i = data.draw(st.integers(0, len(proof) - 1))
        proof = proof[:i] + [_flip(proof[i], bit)] + proof[i + 1:]
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, root1, root2, proof)


def test_the_tree_size_is_bound_by_the_signed_head_not_by_the_proof():
    # RFC 9162 behaviour worth knowing: leaf 0's path in a tree of 5 also
    # folds to the same root when read as a path in a tree of 7.  The size is
    # authenticated by the log's signature over (size, root), which
    # wmark.protocol.transparency always checks (see test_registry).
    proof = TREE_64.inclusion_proof(0, 5)
    verify_inclusion(LEAVES_64[0], 0, 7, proof, TREE_64.root(5))


# --- Precise refusals.

def test_truncated_and_padded_proofs_are_named():
    proof = TREE_64.inclusion_proof(3, 8)
    with pytest.raises(InvalidProof, match="too short"):
        verify_inclusion(LEAVES_64[3], 3, 8, proof[:-1], TREE_64.root(8))
    with pytest.raises(InvalidProof, match="too long"):
        verify_inclusion(LEAVES_64[3], 3, 8, proof + [proof[0]], TREE_64.root(8))
    consistency = TREE_64.consistency_proof(3, 8)
    with pytest.raises(InvalidProof, match="too short"):
        verify_consistency(3, 8, TREE_64.root(3), TREE_64.root(8), consistency[:-1])


def test_index_beyond_the_tree_and_oversized_proofs_are_refused():
    with pytest.raises(InvalidProof, match="beyond the tree"):
        verify_inclusion(LEAVES_64[0], 8, 8, [], TREE_64.root(8))
    with pytest.raises(InvalidProof, match="no tree needs more"):
        verify_inclusion(LEAVES_64[0], 0, 8, [LEAVES_64[0]] * (MAX_PROOF_HASHES + 1), TREE_64.root(8))
    with pytest.raises(InvalidProof, match="13 bytes"):
        verify_inclusion(b"not 32 bytes!", 0, 1, [], TREE_64.root(1))
    with pytest.raises(InvalidProof, match="forked"):
        verify_consistency(4, 4, TREE_64.root(4), TREE_64.root(5), [])


def test_generation_refuses_what_the_tree_does_not_hold():
    tree = MerkleTree(LEAVES_64[:4])
    with pytest.raises(InvalidInput, match="beyond the tree of size 4"):
        tree.inclusion_proof(4)
    with pytest.raises(InvalidInput, match="tree size 5 is beyond"):
        tree.root(5)
    with pytest.raises(InvalidInput, match="0 < first <= second"):
        tree.consistency_proof(0)
    with pytest.raises(ValueError):
        tree.append(b"short")
