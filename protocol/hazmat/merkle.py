"""RFC 9162 Merkle trees: tree hash, inclusion and consistency proofs (section 2.1).

Pure computation, no I/O: :class:`MerkleTree` generates roots and proofs from
leaf hashes, :func:`verify_inclusion` and :func:`verify_consistency` check
them holding nothing but the proof and the roots.

The hashes are exactly RFC 9162's (identical to RFC 6962 section 2.1):
``leaf = SHA-256(0x00 || data)`` and ``node = SHA-256(0x01 || left || right)``.
They are the one place in wmark without a ``tagged_hash`` domain tag, on
purpose: any RFC 9162 tool, and the published test vectors, must apply to our
logs unchanged.  The 0x00/0x01 prefixes separate leaves from nodes, and a
wmark leaf is a typed, versioned log entry, which separates it from any other
object.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Callable, Iterable, Iterator, Sequence

from wmark.errors import InvalidInput, InvalidProof

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# A tree of fewer than 2^64 leaves never needs a longer proof; the bound stops
# a hostile proof from costing more than 64 hashes to reject.
MAX_PROOF_HASHES = 64


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash ``SHA-256(0x00 || data)`` (no wmark tag, see module doc)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """RFC 9162's ``k``: the largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes with every complete subtree's hash cached.

    ``_levels[h][j]`` is the hash of the complete subtree over leaves
    ``[j * 2^h, (j + 1) * 2^h)``.  Appending costs O(log n) hashes; the root
    and the proofs for *any* earlier size cost O(log n) too, because every
    range RFC 9162's recursions ask for is one complete subtree or a right
    edge made of O(log n) of them.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        self._levels[0].append(leaf)
        index, height = len(self._levels[0]) - 1, 0
        while index & 1:  # this leaf completed a subtree one level up
            row = self._levels[height]
            parent = node_hash(row[index - 1], row[index])
            height, index = height + 1, index >> 1
            if height == len(self._levels):
                self._levels.append([])
            self._levels[height].append(parent)

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on: undoes appends whose storage failed."""
        for height, row in enumerate(self._levels):
            del row[size >> height:]

    def leaf(self, index: int) -> bytes:
        self._check_index(index, len(self))
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) (RFC 9162 section 2.1.1); the current root by default."""
        size = self._check_size(size)
        return self._hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 section 2.1.3.1), leaf side first."""
        size = self._check_size(size)
        self._check_index(index, size)
        return inclusion_path(self._hash, index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[0:size2]) (RFC 9162 section 2.1.4.1)."""
        size2 = self._check_size(size2)
        if not 0 < size1 <= size2:
            raise InvalidInput(f"a consistency proof needs 0 < first <= second, got first={size1}, second={size2}")
        return consistency_path(self._hash, size1, size2)

    def subtree_hashes(self, height: int, start: int, end: int) -> list[bytes]:
        """The hashes of the complete subtrees of ``2^height`` leaves numbered ``start``
        to ``end - 1`` at that height: what a tlog-tiles tile holds (docs/design.md section 4b)."""
        if height >= len(self._levels) or not 0 <= start <= end <= len(self._levels[height]):
            raise InvalidInput(f"subtrees {start}..{end - 1} of height {height} are not all complete "
                               f"in the tree of size {len(self)}")
        return self._levels[height][start:end]

    def _hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for 0 <= start < end <= len(self)."""
        return range_hash(self._complete, start, end)

    def _complete(self, start: int, end: int) -> bytes:
        """The cached hash of the complete, aligned subtree over leaves [start, end)."""
        n = end - start
        return self._levels[n.bit_length() - 1][start // n]

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return len(self)
        if not 0 <= size <= len(self):
            raise InvalidInput(f"tree size {size} is beyond the tree, which has {len(self)} leaves")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise InvalidInput(f"leaf index {index} is beyond the tree of size {size}")


def inclusion_path(subtree: Callable[[int, int], bytes], index: int, size: int) -> list[bytes]:
    """RFC 9162's PATH(index, D[0:size]), leaf side first, reading ``MTH(D[start:end])``
    of any range from ``subtree``: the in-memory tree and a reader of tlog-tiles share this walk."""
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            siblings.append(subtree(start + k, end))
            end = start + k
        else:
            siblings.append(subtree(start, start + k))
            start += k
    # The walk went root-down; RFC 9162 lists the path leaf-up.
    siblings.reverse()
    return siblings


def consistency_path(subtree: Callable[[int, int], bytes], size1: int, size2: int) -> list[bytes]:
    """RFC 9162's PROOF(size1, D[0:size2]) for 0 < size1 <= size2, from ``subtree`` as above."""
    nodes: list[bytes] = []
    start, end, m, whole_old_tree = 0, size2, size1, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            nodes.append(subtree(start + k, end))
            end = start + k
        else:
            nodes.append(subtree(start, start + k))
            start, m, whole_old_tree = start + k, m - k, False
    # SUBPROOF's base case: the old tree's root is left out only when the
    # old tree is itself the subtree reached (the verifier holds it already).
    if not whole_old_tree:
        nodes.append(subtree(start, end))
    nodes.reverse()
    return nodes


def range_hash(subtree: Callable[[int, int], bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) built from the complete, aligned subtrees ``subtree`` returns."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return subtree(start, end)
    k = _split(n)
    return node_hash(range_hash(subtree, start, start + k), range_hash(subtree, start + k, end))


def _check_hash(value: bytes, *, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} is {len(value)} bytes, expected a {HASH_SIZE}-byte SHA-256 hash")


def _check_proof(proof: Sequence[bytes], *, what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise InvalidProof(f"{what} has {len(proof)} hashes; no tree needs more than {MAX_PROOF_HASHES}")
    for i, node in enumerate(proof):
        _check_hash(node, what=f"{what} hash {i}")


def _climb(fn: int, sn: int, path: Sequence[bytes], *, too_long: str,
           too_short: str) -> Iterator[tuple[bytes, bool]]:
    """The walk up the tree that both of RFC 9162's proof checks take (sections 2.1.3.2 and
    2.1.4.2), from node ``fn`` of a level whose last node is ``sn``: each hash of ``path`` with
    whether it is the left sibling (``fn`` odd, or the level's last node).  Refused, with the
    message given, when ``path`` is longer or shorter than that climb to the root."""
    for p in path:
        if sn == 0:
            raise InvalidProof(too_long)
        left = bool(fn & 1) or fn == sn
        yield p, left
        if left:
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InvalidProof(too_short)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`InvalidProof` unless ``proof`` shows leaf ``index`` of the tree
    of ``size`` leaves with ``root`` hashes to ``leaf`` (RFC 9162 section 2.1.3.2)."""
    what = f"inclusion proof for leaf {index} of a tree of size {size}"
    _check_hash(leaf, what="leaf hash")
    _check_hash(root, what="root hash")
    _check_proof(proof, what=what)
    if not 0 <= index < size:
        raise InvalidProof(f"{what}: leaf index {index} is beyond the tree of size {size}")
    r = leaf
    for p, left in _climb(index, size - 1, proof, too_long=f"{what}: proof is too long (made for a larger tree?)",
                          too_short=f"{what}: proof is too short (truncated, or made for a smaller tree?)"):
        r = node_hash(p, r) if left else node_hash(r, p)
    if not hmac.compare_digest(r, root):
        raise InvalidProof(f"{what}: proof does not lead to the root hash")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Raise :class:`InvalidProof` unless ``proof`` shows the tree of ``size1`` leaves
    with ``root1`` is a prefix of the tree of ``size2`` with ``root2`` (RFC 9162 section 2.1.4.2).

    Beyond the RFC text, and as the transparency-dev probes expect: an empty
    old tree (size1 = 0) is refused, and equal sizes need an empty proof and
    equal roots.
    """
    what = f"consistency proof from size {size1} to {size2}"
    _check_proof(proof, what=what)
    if not 0 < size1 <= size2:
        raise InvalidProof(f"{what}: sizes must satisfy 0 < old <= new")
    # Equal sizes are decided by comparing the roots alone, before their
    # length is checked: a tree is a prefix of itself whatever its hash
    # looks like (the transparency-dev probes expect exactly this).
    if size1 == size2:
        if proof:
            raise InvalidProof(f"{what}: trees of equal size need an empty proof")
        if not hmac.compare_digest(root1, root2):
            raise InvalidProof(f"{what}: two trees of the same size have different roots (the log forked)")
        return
    _check_hash(root1, what="old root hash")
    _check_hash(root2, what="new root hash")
    if not proof:
        raise InvalidProof(f"{what}: proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c, left in _climb(fn, sn, path[1:], too_long=f"{what}: proof is too long",
                          too_short=f"{what}: proof is too short (truncated?)"):
        if left:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    if not hmac.compare_digest(fr, root1):
        raise InvalidProof(f"{what}: proof does not lead to the old root hash")
    if not hmac.compare_digest(sr, root2):
        raise InvalidProof(f"{what}: proof does not lead to the new root hash (the log rewrote its history?)")
