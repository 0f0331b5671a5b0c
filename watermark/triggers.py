"""Trigger sets (Adi et al. 2018, Section 4: SampleBackdoor; docs/design.md section 2).

* derived: images rendered from VRF outputs (:mod:`wmark.protocol.patterns`);
* imported: user images, from a folder or the layout of the paper's original
  code (``pics/1.jpg ... pics/N.jpg`` and one numeric label per line), brought
  to the model's input shape by resizing or by a centre crop;
* margin: images of a public split of the task's data, selected by VRF
  outputs (:mod:`wmark.protocol.margin`; trained by :mod:`wmark.watermark.margin`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wmark.errors import InvalidInput
from wmark.files import read_bounded
from wmark.protocol.beacon import bound_label
from wmark.protocol.hazmat.vrf import proof_to_hash
from wmark.protocol.items import ItemOpening, TriggerKind, image_header
from wmark.protocol.keys import MAX_ITEMS, MarkingKey
from wmark.protocol.margin import MarginItems, QuerySplit
from wmark.protocol.patterns import item_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024
MAX_LABEL_FILE_BYTES = 4 * 1024 * 1024
# PIL's own decompression-bomb guard, made explicit.
Image.MAX_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True, eq=False)
class TriggerSet:
    """``n`` trigger images (uint8, N x C x H x W) and their labels in [0, L)."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, channels, height, width = self.images.shape  # N x C x H x W
        return int(channels), int(height), int(width)

    def __len__(self) -> int:
        return int(self.images.shape[0])


class Fit(str, Enum):
    """How an imported image is brought to the input shape."""

    RESIZE = "resize"
    CENTER_CROP = "center-crop"  # what the paper's code does: transforms.CenterCrop(32)


@dataclass(frozen=True)
class _Drawn:
    """An opening as :func:`wmark.protocol.patterns.item_images` draws it."""

    seed: bytes | None
    pixels: bytes | None


def _seed(opening: ItemOpening) -> bytes:
    """The VRF output a seeded (derived or margin) item is drawn from."""
    if opening.vrf_proof is None:
        raise InvalidInput(f"item {opening.index} of a seeded key has no VRF proof")
    return proof_to_hash(opening.vrf_proof)


def _drawn(opening: ItemOpening, kind: TriggerKind, shape: tuple[int, int, int]) -> _Drawn:
    if kind is TriggerKind.DERIVED:
        return _Drawn(_seed(opening), None)
    if kind is TriggerKind.MARGIN:
        raise InvalidInput("a margin item's image is an image of its key's query split: see "
                           "trigger_set_from_marking_key")
    if opening.image is None:
        raise InvalidInput(f"item {opening.index} of an imported key has no image")
    return _Drawn(None, opening.image[len(image_header(shape)):])


def item_image(opening: ItemOpening, kind: TriggerKind, shape: tuple[int, int, int]) -> np.ndarray:
    """The uint8 C x H x W trigger image an opening commits to: rendered from its VRF output, or as imported."""
    return item_images([_drawn(opening, kind, shape)], shape)[0]


def trigger_set_from_marking_key(mk: MarkingKey, margin: QuerySplit | None = None, *,
                                 beta: bytes | None = None) -> TriggerSet:
    """The trigger images and labels a marking key commits to; a margin key's
    are taken from ``margin``, the query split it was made on.  A registry-bound
    key needs ``beta``, its receipt's beacon output, which fixes its labels."""
    if mk.registry_bound and beta is None:
        raise InvalidInput("a registry-bound key's trigger labels are drawn by the registry: register its "
                           "verification key first (wmark register), then use the receipt")
    if not mk.registry_bound and beta is not None:
        raise InvalidInput("this key's labels are its committed ones; a beacon does not apply to it")
    labels = [o.label for o in mk.openings]
    true_classes: Sequence[int | None] = [None] * mk.n  # only a margin item has one
    if mk.kind is TriggerKind.MARGIN:
        positions, true_classes = _margin_positions(mk, margin)
        assert margin is not None
        drawn = [_Drawn(None, margin.image(p)) for p in positions]
    else:
        drawn = [_drawn(o, mk.kind, mk.input_shape) for o in mk.openings]
    if beta is not None:
        labels = [bound_label(beta, o.index, o.label, mk.num_classes, true_class=t)
                  for o, t in zip(mk.openings, true_classes)]
    return TriggerSet(item_images(drawn, mk.input_shape), np.array(labels, dtype=np.int64), mk.num_classes)


def _margin_positions(mk: MarkingKey, split: QuerySplit | None) -> tuple[list[int], list[int]]:
    """A margin key's items: their positions in its query split, and those images' true classes."""
    assert mk.margin is not None
    if split is None or split.source != mk.margin:
        raise InvalidInput(f"a margin key's queries are images of {mk.margin.describe()}: "
                           f"{'give that split' if split is None else 'the split given is other data'}")
    items = MarginItems(split, mk.n, mk.num_classes)
    positions = [items.item(_seed(o), o.index)[0] for o in mk.openings]
    return positions, [split.labels[p] for p in positions]


@dataclass(frozen=True)
class ImportedImages:
    """Images read from disk at the input shape, with labels if a file gave them."""

    pixels: tuple[bytes, ...]
    labels: tuple[int, ...] | None
    sources: tuple[Path, ...]
    labels_file: Path | None


def _numeric_key(path: Path) -> tuple[int, int | str]:
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.name)


def _find_images(root: Path) -> list[Path]:
    folder = root / "pics" if (root / "pics").is_dir() else root
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InvalidInput(f"{folder}: no images found (expected *.jpg/*.png files, or pics/1.jpg ... pics/N.jpg)")
    if len(files) > MAX_ITEMS:  # a key holds no more items
        raise InvalidInput(f"{folder}: {len(files)} images, more than the limit of {MAX_ITEMS}")
    files.sort(key=_numeric_key)
    # Line j of a label file belongs to image j: two names for one number
    # (1.jpg, 01.jpg) would leave the order, and so the labels, to chance.
    for a, b in zip(files, files[1:]):
        if _numeric_key(a) == _numeric_key(b):
            raise InvalidInput(f"{folder}: {a.name} and {b.name} have the same number; rename one")
    return files


def _find_labels_file(root: Path) -> Path | None:
    candidates = sorted(root.glob("*.txt"))
    if len(candidates) > 1:
        raise InvalidInput(f"{root}: several label files {[c.name for c in candidates]}; choose one with --labels-file")
    return candidates[0] if candidates else None


def read_labels_file(path: Path, *, count: int, num_classes: int) -> tuple[int, ...]:
    """One numeric label per line (``6`` or ``6.000000000000000000e+00``), line j for image j."""
    data = read_bounded(path, max_bytes=MAX_LABEL_FILE_BYTES, what="label file")
    try:
        lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: cannot read label file ({exc})") from None
    if len(lines) != count:
        raise InvalidInput(f"{path}: {len(lines)} labels for {count} images")
    labels = []
    for lineno, text in enumerate(lines, 1):
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(f"{path}:{lineno}: {text!r} is not a number") from None
        if not value.is_integer() or not 0 <= value < num_classes:
            raise InvalidInput(f"{path}:{lineno}: label {text} is not an integer in [0, {num_classes})")
        labels.append(int(value))
    return tuple(labels)


def _fit_image(path: Path, shape: tuple[int, int, int], fit: Fit) -> bytes:
    channels, height, width = shape
    if channels not in (1, 3):
        raise InvalidInput(f"imported images need 1 or 3 channels, not {channels}")
    try:
        if path.stat().st_size > MAX_IMAGE_FILE_BYTES:
            raise InvalidInput(f"{path}: image file too large")
        with Image.open(path) as opened:
            img = opened.convert("L" if channels == 1 else "RGB")
            if fit is Fit.RESIZE:
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            else:
                if img.width < width or img.height < height:
                    raise InvalidInput(f"{path}: {img.width}x{img.height} image is smaller than the "
                                       f"{width}x{height} centre crop; use --fit resize")
                left, top = (img.width - width) // 2, (img.height - height) // 2
                img = img.crop((left, top, left + width, top + height))
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{path}: not a readable image ({exc})") from None
    if channels == 1:
        array = array[None, :, :]
    else:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array).tobytes()


def import_images(root: str | os.PathLike[str], shape: tuple[int, int, int], *, fit: Fit,
                  labels_file: str | os.PathLike[str] | None, num_classes: int) -> ImportedImages:
    """Read an image folder (or the WatermarkNN layout) at ``shape``."""
    base = Path(root)
    if not base.exists():
        raise InvalidInput(f"{base}: image folder not found")
    if not base.is_dir():
        raise InvalidInput(f"{base}: expected a folder of images (or one with pics/ and a labels .txt)")
    try:
        files = _find_images(base)
    except PermissionError:
        raise InvalidInput(f"{base}: folder is not readable (permission denied)") from None
    label_path = Path(labels_file) if labels_file is not None else _find_labels_file(base)
    labels = read_labels_file(label_path, count=len(files), num_classes=num_classes) if label_path else None
    pixels = tuple(_fit_image(p, shape, fit) for p in files)
    return ImportedImages(pixels, labels, tuple(files), label_path)


def random_labels(count: int, num_classes: int) -> tuple[int, ...]:
    """Uniform labels for imported images that came without any (OS CSPRNG)."""
    return tuple(secrets.randbelow(num_classes) for _ in range(count))


