"""Domain-separated SHA-256.

Every hash in wmark goes through :func:`tagged_hash`, whose input is the tag
and each part, each prefixed with its length, so two hashes with different
tags or different splits of the same bytes can never collide by construction.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

TAG_PREFIX = "wmark/"


@functools.lru_cache(maxsize=256)
def _tagged(tag: str) -> hashlib._Hash:
    """SHA-256 having absorbed the tag: copied per hash (the registry hashes a
    hundred item digests per append under one tag)."""
    if not tag.startswith(TAG_PREFIX):
        raise ValueError(f"hash tag {tag!r} must start with {TAG_PREFIX!r}")
    tag_bytes = tag.encode("ascii")
    return hashlib.sha256(len(tag_bytes).to_bytes(2, "big") + tag_bytes)


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    # The same bytes TaggedHasher would absorb, written out: this is the hot
    # path of the registry's appends, so no per-part generator or length check.
    h = _tagged(tag).copy()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def tagged_hashes_of_pairs(tag: str, pairs: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """``[tagged_hash(tag, a, b) for a, b in pairs]`` with one update per hash: the
    registry hashes a pair per item of every vk it appends (a third faster, measured)."""
    base = _tagged(tag)
    out = []
    for a, b in pairs:
        h = base.copy()
        h.update(b"".join((len(a).to_bytes(8, "big"), a, len(b).to_bytes(8, "big"), b)))
        out.append(h.digest())
    return out


class TaggedHasher:
    """:func:`tagged_hash` fed in pieces, for parts too large to hold in memory
    (a model's weights): each part's length is announced first, as in the
    one-shot form, and the chunks that follow must add up to it."""

    def __init__(self, tag: str) -> None:
        self._h = _tagged(tag).copy()

    def part(self, length: int, chunks: Iterable[bytes]) -> None:
        self._h.update(length.to_bytes(8, "big"))
        seen = 0
        for chunk in chunks:
            seen += len(chunk)
            if seen > length:
                break
            self._h.update(chunk)
        if seen != length:
            raise ValueError(f"a part announced as {length} bytes had {'more' if seen > length else seen}")

    def digest(self) -> bytes:
        return self._h.digest()


def tagged_stream(tag: str, seed: bytes, nbytes: int) -> bytes:
    """``nbytes`` pseudorandom bytes expanded from ``seed`` with SHAKE-256.

    Used where a deterministic, platform-independent stream is needed (images
    and labels derived from a VRF output); numpy's generators do not promise
    the same stream across versions, which would break re-derivation by a
    verifier with another numpy.
    """
    tag_bytes = tag.encode("ascii")
    if not tag.startswith(TAG_PREFIX):
        raise ValueError(f"stream tag {tag!r} must start with {TAG_PREFIX!r}")
    shake = hashlib.shake_256()
    shake.update(len(tag_bytes).to_bytes(2, "big") + tag_bytes)
    shake.update(len(seed).to_bytes(8, "big") + seed)
    return shake.digest(nbytes)
