"""Margin trigger items (Kim et al. 2023): in-distribution queries drawn from a public split.

A margin item is derived like a derived item: its seed is the VRF output
``s_i`` on the index ``i``, so the owner cannot choose or re-draw it.  Instead
of rendering an abstract pattern, the seed selects an image of a public,
held-out split of the task's data and a label different from that image's
true class:

* the split is cut into ``n`` consecutive strata of ``size // n`` or
  ``size // n + 1`` images, and item ``i`` takes the image of stratum ``i``
  that ``DigestStream(QUERY_TAG, s_i)`` picks.  Items therefore never share an
  image: with free draws over the whole split, 100 items on a 100-image split
  would land on about 63 distinct images, and two items on one image with two
  labels cap the query accuracy any model can reach.  When ``n`` equals the
  split's size every stratum is one image and the seed picks the label only.
* the label is uniform over the ``L - 1`` classes other than the true one:
  ``r = DigestStream(LABEL_TAG, s_i).randbelow(L - 1)``, skipping the true
  class (``r + 1`` when ``r >= true``), a bijection onto those classes, so no
  rejection loop is needed.

Under H0 (a model not trained with this key) the label of an item is
independent of the model and uniform over ``L - 1`` classes that exclude the
true one, so whatever the model answers, it matches with probability at most
``1 / (L - 1)``: that is ``p0``.  Items are independent given their images,
since each label comes from its own seed.

This module knows nothing of tensors or files: the caller hands it the split
as bytes (:class:`QuerySplit`), and the digest recorded in the verification
key (:class:`MarginSource`) tells a verifier whether its copy of the data is
the one the key was made on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

from wmark.errors import DecodeError, InvalidInput
from wmark.protocol.hazmat.encoding import b64u_decode, b64u_encode, field, int_field, object_with
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.hazmat.sampling import DigestStream
from wmark.protocol.items import image_header, pixel_count

QUERY_TAG = "wmark/margin/query/v1"
LABEL_TAG = "wmark/margin/label/v1"
SPLIT_TAG = "wmark/margin/split/v1"
# A public split is a few hundred images; a bound keeps a hostile vk from
# naming a split no verifier could hold.
MAX_SPLIT = 1_000_000
# Names are printed to terminals and used to find data: plain tokens only.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def _name(value: Any, *, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise DecodeError(f"{what}: {str(value)[:70]!r} is not a data set or split name "
                          f"(lower-case letters, digits, '.', '_', '-')")
    return value


@dataclass(frozen=True)
class MarginSource:
    """The ``margin`` section of ``vk`` and ``mk``: which public split the queries
    come from, and a digest of its images and labels."""

    dataset: str
    split: str
    size: int
    digest: bytes

    def describe(self) -> str:
        return f"{self.dataset}/{self.split} ({self.size} images, sha256 {self.digest.hex()[:16]}…)"

    def to_obj(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "size": self.size, "digest": b64u_encode(self.digest)}

    @classmethod
    def from_obj(cls, obj: Any, *, n: int, what: str) -> "MarginSource":
        what = f"{what}: margin"
        object_with(obj, {"dataset", "split", "size", "digest"}, what=what)
        size = int_field(obj, "size", what=what, low=1, high=MAX_SPLIT)
        if n > size:
            raise DecodeError(f"{what}: {n} items cannot take distinct images of a {size}-image split")
        return cls(_name(field(obj, "dataset", str, what=what), what=f"{what}: dataset"),
                   _name(field(obj, "split", str, what=what), what=f"{what}: split"),
                   size, b64u_decode(obj.get("digest"), what=f"{what}: digest", size=32))


def split_digest(shape: tuple[int, int, int], pixels: bytes, labels: Sequence[int]) -> bytes:
    """What names a split's contents: every image (uint8 CHW, in order) and every true label."""
    return tagged_hash(SPLIT_TAG, image_header(shape), len(labels).to_bytes(8, "big"), pixels,
                       b"".join(label.to_bytes(4, "big") for label in labels))


@dataclass(frozen=True, eq=False, repr=False)
class QuerySplit:
    """A public split as the owner or a verifier holds it: uint8 C x H x W images,
    concatenated in order, and their true labels."""

    dataset: str
    split: str
    shape: tuple[int, int, int]
    pixels: bytes
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        _name(self.dataset, what="query split")
        _name(self.split, what="query split")
        if not 1 <= len(self.labels) <= MAX_SPLIT:
            raise InvalidInput(f"a query split needs 1 to {MAX_SPLIT} images, has {len(self.labels)}")
        if len(self.pixels) != len(self.labels) * pixel_count(self.shape):
            raise InvalidInput(f"query split: {len(self.pixels)} bytes of pixels for {len(self.labels)} images of "
                               f"{'x'.join(map(str, self.shape))}")
        if min(self.labels) < 0:
            raise InvalidInput("query split: negative labels")

    def __repr__(self) -> str:
        return f"QuerySplit({self.dataset}/{self.split}, {len(self)} images)"

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def source(self) -> MarginSource:
        return MarginSource(self.dataset, self.split, len(self),
                            split_digest(self.shape, self.pixels, self.labels))

    def image(self, position: int) -> bytes:
        size = pixel_count(self.shape)
        return self.pixels[position * size:(position + 1) * size]


def stratum(index: int, n: int, size: int) -> range:
    """The positions of the split that item ``index`` of ``n`` may take."""
    return range(index * size // n, (index + 1) * size // n)


def query_position(seed: bytes, index: int, n: int, size: int) -> int:
    """The split image of item ``index``: one of its stratum, chosen by the seed."""
    positions = stratum(index, n, size)
    return positions[DigestStream(QUERY_TAG, seed).randbelow(len(positions))]


def query_label(seed: bytes, true_label: int, num_classes: int) -> int:
    """Uniform over the ``num_classes - 1`` classes other than ``true_label``."""
    r = DigestStream(LABEL_TAG, seed).randbelow(num_classes - 1)
    return r + 1 if r >= true_label else r


@dataclass(frozen=True)
class MarginItems:
    """The items of one margin key: its ``n`` and the split they are drawn from."""

    split: QuerySplit
    n: int
    num_classes: int

    def __post_init__(self) -> None:
        if not 1 <= self.n <= len(self.split):
            raise InvalidInput(f"{self.n} margin items need a split of at least {self.n} images, "
                               f"{self.split.dataset}/{self.split.split} has {len(self.split)}")
        if self.num_classes < 3:
            raise InvalidInput("a margin key needs at least 3 classes: with 2, the label other than the true "
                               "one is no secret and any misclassification matches it")
        if max(self.split.labels) >= self.num_classes:
            raise InvalidInput(f"the query split has labels up to {max(self.split.labels)}, the key "
                               f"{self.num_classes} classes")

    def item(self, seed: bytes, index: int) -> tuple[int, int]:
        """Item ``index``'s position in the split and its label."""
        position = query_position(seed, index, self.n, len(self.split))
        return position, query_label(seed, self.split.labels[position], self.num_classes)
