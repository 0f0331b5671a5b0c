"""The c2sp.org/tlog-tiles layout: tile paths, entry bundles, and proofs read from tiles
(docs/design.md section 4b).

A tile at level L holds up to 256 consecutive hashes of complete subtrees of
2^(8L) leaves; ``tile/entries/N`` holds the matching 256 entries, each
prefixed by its length as a big-endian uint16.  :class:`TileReader`
rebuilds any RFC 9162 root or inclusion proof from tiles fetched by a
function (over HTTP or from a directory), trusting none of them: whatever it
computes is checked against a signed checkpoint afterwards.
"""

from __future__ import annotations

import re
import struct
from typing import Callable

from wmark.errors import DecodeError, InvalidInput, InvalidProof
from wmark.protocol.hazmat import merkle

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
_INDEX_PATH = r"((?:x[0-9]{3}/)*[0-9]{3})"
_PARTIAL = r"(?:\.p/([1-9][0-9]?|1[0-9]{2}|2[0-4][0-9]|25[0-5]))?"
_TILE = re.compile(r"tile/(0|[1-9]|[1-5][0-9]|6[0-3])/" + _INDEX_PATH + _PARTIAL)
_BUNDLE = re.compile(r"tile/entries/" + _INDEX_PATH + _PARTIAL)


def encode_index(n: int) -> str:
    """1234067 -> ``x001/x234/067``: 3-digit groups, all but the last prefixed by x."""
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _decode_index(text: str) -> int:
    groups = text.split("/")
    if len(groups) > 1 and groups[0] == "x000":
        raise DecodeError(f"tile index {text!r} has a leading zero group")
    return int("".join(g.lstrip("x") for g in groups))


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/entries/{encode_index(index)}{suffix}"


def _width(text: str | None) -> int:
    return TILE_WIDTH if text is None else int(text)


def parse_tile_path(path: str) -> tuple[int, int, int] | None:
    """(level, index, width) of a ``tile/L/N[.p/W]`` path; None if it is not one."""
    match = _TILE.fullmatch(path)
    if not match:
        return None
    return int(match.group(1)), _decode_index(match.group(2)), _width(match.group(3))


def parse_bundle_path(path: str) -> tuple[int, int] | None:
    match = _BUNDLE.fullmatch(path)
    if not match:
        return None
    return _decode_index(match.group(1)), _width(match.group(2))


def width_at(size: int, level: int, index: int) -> int:
    """How many hashes tile ``index`` at ``level`` holds in the tree of ``size`` leaves (0: none)."""
    available = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, available - index * TILE_WIDTH))


def encode_bundle(entries: list[bytes]) -> bytes:
    for i, entry in enumerate(entries):
        if len(entry) > 0xFFFF:
            raise InvalidInput(f"entry {i} of the bundle has {len(entry)} bytes; tlog-tiles allows 65535")
    return b"".join(struct.pack(">H", len(e)) + e for e in entries)


def decode_bundle(data: bytes, *, what: str = "entry bundle") -> list[bytes]:
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise DecodeError(f"{what}: truncated length prefix")
        (n,) = struct.unpack_from(">H", data, at)
        if at + 2 + n > len(data):
            raise DecodeError(f"{what}: entry {len(entries)} is truncated")
        entries.append(data[at + 2:at + 2 + n])
        at += 2 + n
    if len(entries) > TILE_WIDTH:
        raise DecodeError(f"{what}: more than {TILE_WIDTH} entries")
    return entries


class TileReader:
    """Roots and inclusion proofs of the tree of ``size`` leaves, computed from tiles.

    ``fetch(path)`` returns a tile's bytes (``tile/L/N[.p/W]``); each tile is
    fetched once.  A tile of the wrong length is refused; wrong contents
    yield a root or proof that the caller's checkpoint check then rejects.
    """

    def __init__(self, fetch: Callable[[str], bytes], size: int) -> None:
        self._fetch, self.size = fetch, size
        self._tiles: dict[tuple[int, int], list[bytes]] = {}

    def _tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        if key not in self._tiles:
            width = width_at(self.size, level, index)
            if width == 0:
                raise InvalidInput(f"tile {index} of level {level} is empty in a tree of size {self.size}")
            data = self._fetch(tile_path(level, index, width))
            if len(data) != width * merkle.HASH_SIZE:
                raise InvalidProof(f"{tile_path(level, index, width)}: {len(data)} bytes, "
                                   f"expected {width} hashes")
            self._tiles[key] = [data[i:i + merkle.HASH_SIZE] for i in range(0, len(data), merkle.HASH_SIZE)]
        return self._tiles[key]

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) of a complete, aligned subtree, from the tile holding it."""
        height = (end - start).bit_length() - 1
        level, below = divmod(height, TILE_HEIGHT)
        # The subtree spans 2^below consecutive hashes of one level-`level` tile.
        first = start >> (TILE_HEIGHT * level)
        tile = self._tile(level, first // TILE_WIDTH)
        hashes = tile[first % TILE_WIDTH:first % TILE_WIDTH + (1 << below)]
        while len(hashes) > 1:
            hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def _range(self, start: int, end: int) -> bytes:
        return merkle.range_hash(self._subtree, start, end)

    def root(self) -> bytes:
        return self._range(0, self.size) if self.size else merkle.EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        return self._subtree(index, index + 1)

    def inclusion_proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise InvalidInput(f"leaf index {index} is beyond the tree of size {self.size}")
        return merkle.inclusion_path(self._range, index, self.size)


def tile_from_tree(tree: merkle.MerkleTree, level: int, index: int, width: int) -> bytes:
    """The bytes of tile ``index`` of ``level`` (``width`` hashes) of an in-memory tree."""
    if not 0 <= level <= MAX_LEVEL or not 1 <= width <= TILE_WIDTH or width > width_at(len(tree), level, index):
        raise InvalidInput(f"tile {tile_path(level, index, width)} is not in the tree of size {len(tree)}")
    first = index * TILE_WIDTH
    return b"".join(tree.subtree_hashes(TILE_HEIGHT * level, first, first + width))
