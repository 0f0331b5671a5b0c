"""Unbiased, deterministic sampling from a public digest.

Both sides of a verification derive the challenged subset ``S`` from the
challenge digest (docs/design.md section 4, step 2); derived trigger labels come
from a VRF output the same way.  Integers are drawn by rejection sampling
(never ``mod``, whose bias an adversary could exploit), subsets by a partial
Fisher-Yates shuffle, which is uniform over all k-subsets.
"""

from __future__ import annotations

from wmark.protocol.hazmat.hashing import tagged_hash

SUBSET_TAG = "wmark/challenge/subset/v1"
LABEL_TAG = "wmark/label/v1"


class DigestStream:
    """An endless deterministic stream of integers expanded from a seed."""

    def __init__(self, tag: str, seed: bytes) -> None:
        self._tag = tag
        self._seed = seed
        self._counter = 0
        self._buffer = b""

    def _take(self, nbytes: int) -> bytes:
        while len(self._buffer) < nbytes:
            self._buffer += tagged_hash(self._tag, self._seed, self._counter.to_bytes(8, "big"))
            self._counter += 1
        out, self._buffer = self._buffer[:nbytes], self._buffer[nbytes:]
        return out

    def randbelow(self, bound: int) -> int:
        """Uniform integer in [0, bound): draw just enough bits, reject overshoots."""
        if bound < 1:
            raise ValueError("bound must be positive")
        if bound == 1:
            return 0
        bits = (bound - 1).bit_length()
        nbytes = (bits + 7) // 8
        mask = (1 << bits) - 1
        while True:
            candidate = int.from_bytes(self._take(nbytes), "big") & mask
            if candidate < bound:
                return candidate


def sample_subset(digest: bytes, n: int, k: int) -> tuple[int, ...]:
    """The k indices of [0, n) selected by ``digest``, in increasing order."""
    if not 1 <= k <= n:
        raise ValueError(f"sample size k={k} must be between 1 and n={n}")
    stream = DigestStream(SUBSET_TAG, digest)
    pool = list(range(n))
    for i in range(k):
        j = i + stream.randbelow(n - i)
        pool[i], pool[j] = pool[j], pool[i]
    return tuple(sorted(pool[:k]))


def derive_label(seed: bytes, num_classes: int) -> int:
    """The label of a derived trigger item: uniform over the L classes."""
    return DigestStream(LABEL_TAG, seed).randbelow(num_classes)
