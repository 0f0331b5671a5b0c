"""Task data: labelled uint8 images in four fixed, disjoint splits.

Every data set is held as uint8 ``N x C x H x W`` arrays, the same form as a
trigger set, so task images and trigger images reach a model through one path
(the model's preprocessing, :class:`wmark.watermark.modelio.Preprocessing`).

Splits, each disjoint from the others and the same on every machine:

``train``
    the owner's training data.
``test``
    what accuracies are reported on.
``adversary``
    held out from the owner: the data a thief fine-tunes, re-trains, distils
    or extracts with (removal attacks).
``query``
    a small held-out validation split (the margin-based scheme of Kim et al.
    2023 picks its trigger queries against it).

``digits`` (scikit-learn's bundled ``load_digits``: 1797 real 8x8 grey
images of the digits 0-9, pixel values 0..16 scaled to 0..255) is embedded and
needs no download.  It is split, stratified by class, with ``SPLIT_SEED``:

=========  =====
train       1000
test         360
adversary    337
query        100
=========  =====

``fashion-mnist`` (Xiao et al. 2017: 70,000 real 28x28 grey photos of
clothes in 10 classes) is read from its four IDX files (gzipped or not) under
``data_root``, by default where Debian's ``dataset-fashion-mnist`` package puts
them (``/usr/share/datasets/fashion-mnist``).  Its official test set is
``test``, all 10,000 images, untouched; its official training set of 60,000 is
split, stratified, with ``SPLIT_SEED``:

=========  ======
query         100
adversary   9,900
train      50,000
=========  ======

``cifar10``, ``cifar100`` (torchvision's loaders, ``download=False``; the
files are unpickled by torchvision only after their MD5 sums match the
published archives) and ``imagefolder`` (``ROOT/train/CLASS/*`` and
``ROOT/test/CLASS/*``, resized to ``image_size`` squares, RGB) come from a
local ``data_root``.  Their official training set is ``train`` (all of it, as
in the paper); their official test set is split, stratified, into ``query``
(100 images), ``adversary`` (49% of it) and ``test`` (the rest: 5000 images
for CIFAR).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wmark.errors import InvalidInput
from wmark.files import read_bounded

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")
SPLITS = ("train", "test", "adversary", "query")
# Fixed forever: changing it changes every split, and with them every result.
SPLIT_SEED = 20180815
DIGITS_SIZES = {"query": 100, "test": 360, "adversary": 337, "train": 1000}
QUERY_SIZE = 100
STATS_IMAGES = 10_000
ADVERSARY_FRACTION = 0.49
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_SIDE = 28
# Of the official training set: the owner's share (50,000 of 60,000); the
# query split takes QUERY_SIZE and the adversary the rest.
FASHION_OWNER_FRACTION = 5 / 6
# The largest IDX file read (decompressed): Fashion-MNIST's training images are 47 MB.
MAX_IDX_BYTES = 64 * 1024 * 1024
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """uint8 images (N x C x H x W) with labels.

    ``labels`` are class indices (int64, shape N) or, for distillation, class
    probabilities (float32, shape N x L); the training loop takes either.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise InvalidInput(f"images must be uint8 N x C x H x W, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape[0] != self.images.shape[0] or self.labels.ndim not in (1, 2):
            raise InvalidInput(f"{self.images.shape[0]} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def soft(self) -> bool:
        return self.labels.ndim == 2


@dataclass(frozen=True, eq=False)
class TaskData:
    """A classification task: its four splits and per-channel pixel statistics."""

    name: str
    num_classes: int
    train: LabelledImages
    test: LabelledImages
    adversary: LabelledImages
    query: LabelledImages
    # Per channel, of (the first STATS_IMAGES of) the training split on the
    # 0..1 scale: the default normalisation of a model trained on this task.
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, channels, height, width = self.train.images.shape  # N x C x H x W
        return int(channels), int(height), int(width)

    def split(self, name: str) -> LabelledImages:
        if name not in SPLITS:
            raise InvalidInput(f"unknown split {name!r} (choose from {', '.join(SPLITS)})")
        return getattr(self, name)

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {len(self.split(s))}" for s in SPLITS)
        return f"{self.name}: {'x'.join(map(str, self.input_shape))} images, {self.num_classes} classes ({sizes})"


def load_task(name: str, data_root: str | os.PathLike[str] | None = None, *, image_size: int = 32) -> TaskData:
    """Load a data set by name; see the module docstring for what each needs."""
    if name == "digits":
        return _digits()
    if name == "fashion-mnist":
        return _fashion_mnist(Path(data_root if data_root is not None else FASHION_ROOT))
    if name not in DATASETS:
        raise InvalidInput(f"unknown data set {name!r} (choose from {', '.join(DATASETS)})")
    if data_root is None:
        raise InvalidInput(f"data set {name} needs --data-root: {_layout(name, 'DATA_ROOT')}")
    root = Path(data_root)
    if not root.is_dir():
        raise InvalidInput(f"data root {root} is not a directory: {_layout(name, str(root))}")
    if name == "imagefolder":
        if not 8 <= image_size <= 512:
            raise InvalidInput(f"image size {image_size} outside [8, 512]")
        train, test, classes = _image_folder(root, image_size)
    else:
        train, test, classes = _cifar(name, root)
    return _with_held_out(name, classes, train, test)


def stratified_split(labels: np.ndarray, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Disjoint index sets of the given sizes, each with (nearly) the class mix of ``labels``.

    Items are shuffled with a seeded ``RandomState`` (whose stream numpy
    promises never to change), then interleaved so that the ``j``-th of ``n_c``
    items of class ``c`` sits at relative position ``(j + 1/2) / n_c``; cutting
    that order into consecutive runs gives every run the overall class mix.
    """
    if sum(sizes.values()) > len(labels):
        raise InvalidInput(f"split sizes {sizes} exceed the {len(labels)} items")
    order = np.random.RandomState(seed).permutation(len(labels))
    shuffled = labels[order]
    position = np.empty(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(shuffled == c)
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    interleaved = order[np.argsort(position, kind="stable")]
    bounds = np.cumsum([0, *sizes.values()])
    return {name: np.sort(interleaved[lo:hi]) for name, lo, hi in zip(sizes, bounds[:-1], bounds[1:])}


def _subset(data: LabelledImages, index: np.ndarray) -> LabelledImages:
    return LabelledImages(np.ascontiguousarray(data.images[index]), data.labels[index])


def _task(name: str, num_classes: int, splits: dict[str, LabelledImages]) -> TaskData:
    # The first STATS_IMAGES are plenty for two decimals and keep CIFAR's
    # statistics from needing a float copy of the whole training set.
    train = splits["train"].images[:STATS_IMAGES].astype(np.float32) / 255.0
    mean = tuple(round(float(v), 4) for v in train.mean(axis=(0, 2, 3)))
    std = tuple(round(max(float(v), 1e-3), 4) for v in train.std(axis=(0, 2, 3)))
    return TaskData(name=name, num_classes=num_classes, mean=mean, std=std, **splits)


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``load_digits`` gives them (images 1797x8x8 in
    0..16, classes), read from the CSV file it ships, as it reads it, without
    importing scikit-learn: that import is ~0.9 s of every command that loads
    the digits, the read ~20 ms.  A scikit-learn that keeps the file elsewhere
    is asked the usual way; tests/test_datasets.py checks both against it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target.astype(np.int64)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def _digits() -> TaskData:
    pixels, classes = _digits_table()
    images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    everything = LabelledImages(images, classes)
    index = stratified_split(everything.labels, DIGITS_SIZES, SPLIT_SEED)
    return _task("digits", 10, {split: _subset(everything, index[split]) for split in SPLITS})


def _fashion_mnist(root: Path) -> TaskData:
    files = {part: [_idx_path(root, name) for name in names] for part, names in FASHION_FILES.items()}
    missing = [f"{name}.gz" for part, names in FASHION_FILES.items()
               for name, path in zip(names, files[part]) if path is None]
    if missing:
        expected = ", ".join(f"{n}.gz" for names in FASHION_FILES.values() for n in names)
        raise InvalidInput(f"fashion-mnist: {', '.join(missing)} not found under {root} "
                           f"(install it with `{INSTALL_HINT}`, or pass --data-root a folder holding {expected})")
    official: dict[str, LabelledImages] = {}
    for part, (images_path, labels_path) in files.items():
        assert images_path is not None and labels_path is not None  # none is missing: checked above
        official[part] = _read_idx_pair(images_path, labels_path)
    everything = official["train"]
    owner = int(round(FASHION_OWNER_FRACTION * len(everything)))
    sizes = {"query": QUERY_SIZE, "adversary": len(everything) - QUERY_SIZE - owner, "train": owner}
    if sizes["adversary"] < 1:
        raise InvalidInput(f"fashion-mnist: its training set has {len(everything)} images, too few to split")
    index = stratified_split(everything.labels, sizes, SPLIT_SEED)
    return _task("fashion-mnist", len(FASHION_CLASSES),
                 {"test": official["test"], **{s: _subset(everything, index[s]) for s in sizes}})


def _idx_path(root: Path, name: str) -> Path | None:
    """``root/name.gz`` (as Debian ships them) or else ``root/name`` (as unpacked), if either is a file."""
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file's array, read by torchvision's MNIST reader (which takes an
    uncompressed file: a gzipped one is unpacked, bounded, to a temporary file)."""
    import gzip
    import tempfile

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read(MAX_IDX_BYTES + 1)
        else:
            data = read_bounded(path, max_bytes=MAX_IDX_BYTES, what="IDX file")
        if len(data) > MAX_IDX_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_IDX_BYTES} bytes unpacked; not a Fashion-MNIST file")
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "idx"
            plain.write_bytes(data)
            # The reader's own checks are asserts (gone under python -O), so
            # the shape and size are checked again by the callers.
            array = read_sn3_pascalvincent_tensor(str(plain), strict=False).numpy()
    except (OSError, EOFError, AssertionError, KeyError, ValueError, RuntimeError) as exc:
        raise InvalidInput(f"{path}: not a readable IDX file ({exc or type(exc).__name__})") from None
    return array


def _read_idx_pair(images_path: Path, labels_path: Path) -> LabelledImages:
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (FASHION_SIDE, FASHION_SIDE):
        raise InvalidInput(f"{images_path}: expected uint8 N x {FASHION_SIDE} x {FASHION_SIDE} images, "
                           f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise InvalidInput(f"{labels_path}: expected {len(images)} uint8 labels, got {labels.dtype} {labels.shape}")
    if labels.size and int(labels.max()) >= len(FASHION_CLASSES):
        raise InvalidInput(f"{labels_path}: label {int(labels.max())} outside [0, {len(FASHION_CLASSES)})")
    return LabelledImages(np.ascontiguousarray(images[:, None, :, :]), labels.astype(np.int64))


def _with_held_out(name: str, num_classes: int, train: LabelledImages, test: LabelledImages) -> TaskData:
    adversary = int(round(ADVERSARY_FRACTION * len(test)))
    sizes = {"query": QUERY_SIZE, "adversary": adversary, "test": len(test) - QUERY_SIZE - adversary}
    if sizes["test"] < 1:
        least = next(t for t in range(len(test), 100 * QUERY_SIZE)
                     if t - QUERY_SIZE - int(round(ADVERSARY_FRACTION * t)) >= 1)
        raise InvalidInput(f"{name}: its test set has {len(test)} images; {QUERY_SIZE} query images and "
                           f"{ADVERSARY_FRACTION:.0%} for the adversary are held out of it, so it needs at least "
                           f"{least} (add images to its test/ folders)")
    index = stratified_split(test.labels, sizes, SPLIT_SEED)
    return _task(name, num_classes, {"train": train, **{s: _subset(test, index[s]) for s in sizes}})


def _layout(name: str, root: str) -> str:
    """What ``load_task`` expects to find under ``root`` for data set ``name``."""
    if name == "imagefolder":
        return (f"expected {root}/train/CLASS/*.png and {root}/test/CLASS/*.png "
                f"(one folder per class, the same class folders in both)")
    folder, files = {
        "cifar10": ("cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta"),
        "cifar100": ("cifar-100-python", "train, test, meta"),
    }[name]
    return (f"expected {root}/{folder}/ holding {files} (the 'CIFAR python version' archive from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html, extracted there)")


def _cifar(name: str, root: Path) -> tuple[LabelledImages, LabelledImages, int]:
    from torchvision import datasets

    loader = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        parts = [loader(str(root), train=train, download=False) for train in (True, False)]
    except RuntimeError:
        # torchvision's only word for absent or altered files.
        raise InvalidInput(f"{name} not found or corrupted under {root}: {_layout(name, str(root))}") from None
    train, test = (LabelledImages(np.ascontiguousarray(p.data.transpose(0, 3, 1, 2)),
                                  np.asarray(p.targets, dtype=np.int64)) for p in parts)
    return train, test, len(parts[0].classes)


def _image_folder(root: Path, size: int) -> tuple[LabelledImages, LabelledImages, int]:
    folders = [root / "train", root / "test"]
    classes = [sorted(p.name for p in f.iterdir() if p.is_dir()) if f.is_dir() else [] for f in folders]
    if not classes[0] or classes[0] != classes[1]:
        raise InvalidInput(f"{root} is not an image folder: {_layout('imagefolder', str(root))}")
    if len(classes[0]) < 2:
        raise InvalidInput(f"{root}: an image folder needs at least 2 classes, found {classes[0]}")
    train, test = (_read_images(folder, classes[0], size) for folder in folders)
    return train, test, len(classes[0])


def _read_images(folder: Path, classes: list[str], size: int) -> LabelledImages:
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as img:
                    pixels = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            except (UnidentifiedImageError, OSError) as exc:
                raise InvalidInput(f"{path}: not a readable image ({exc})") from None
            images.append(pixels.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise InvalidInput(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return LabelledImages(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64))
