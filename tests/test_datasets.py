"""Task data: fixed, disjoint, stratified splits; clear refusals when files are absent."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wmark.errors import InvalidInput
from wmark.watermark.datasets import (DIGITS_SIZES, FASHION_FILES, FASHION_ROOT, SPLITS, LabelledImages, load_task,
                                     stratified_split)


# The digits' splits, pinned: a change to the split (seed, order, scaling) must be
# deliberate, since it changes every published number.
DIGITS_FINGERPRINT = "00f73fe81993e34e"


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


def _fingerprint(task) -> str:
    h = hashlib.sha256()
    for name in SPLITS:
        split = task.split(name)
        h.update(split.images.tobytes())
        h.update(split.labels.astype("<i8").tobytes())
    return h.hexdigest()


def test_digits_split_is_deterministic(digits):
    again = load_task("digits")
    for name in SPLITS:
        assert np.array_equal(digits.split(name).images, again.split(name).images)
        assert np.array_equal(digits.split(name).labels, again.split(name).labels)
    assert _fingerprint(digits)[:16] == DIGITS_FINGERPRINT


def test_digits_are_read_as_scikit_learn_gives_them(monkeypatch):
    from importlib import util

    from sklearn.datasets import load_digits

    import wmark.watermark.datasets as datasets

    bunch = load_digits()

    def read_as_scikit_learn_gives_them(where: str) -> None:
        pixels, classes = datasets._digits_table()
        assert np.array_equal(pixels, bunch.images) and pixels.dtype == bunch.images.dtype, where
        assert np.array_equal(classes, bunch.target), where

    read_as_scikit_learn_gives_them("its file")
    # A scikit-learn that keeps the file elsewhere.
    monkeypatch.setattr(util, "find_spec", lambda name: None)
    read_as_scikit_learn_gives_them("scikit-learn")
    assert _fingerprint(load_task("digits"))[:16] == DIGITS_FINGERPRINT


def test_digits_splits_have_documented_sizes_and_shape(digits):
    assert {name: len(digits.split(name)) for name in SPLITS} == DIGITS_SIZES
    assert sum(DIGITS_SIZES.values()) == 1797
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.train.images.dtype == np.uint8 and digits.train.images.max() == 255
    assert len(digits.mean) == len(digits.std) == 1


def test_digits_splits_are_disjoint(digits):
    rows = {name: {img.tobytes() + bytes([lab]) for img, lab in zip(s.images, s.labels)}
            for name, s in ((n, digits.split(n)) for n in SPLITS)}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not rows[a] & rows[b], (a, b)


def test_stratified_split_is_disjoint_sized_and_balanced():
    labels = np.repeat(np.arange(5), 40)
    parts = stratified_split(labels, {"a": 50, "b": 100, "c": 30}, seed=7)
    assert [len(p) for p in parts.values()] == [50, 100, 30]
    union = np.concatenate(list(parts.values()))
    assert len(np.unique(union)) == len(union)
    assert np.all(np.bincount(labels[parts["a"]], minlength=5) == 10)
    again = stratified_split(labels, {"a": 50, "b": 100, "c": 30}, seed=7)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = stratified_split(labels, {"a": 50, "b": 100, "c": 30}, seed=8)
    assert not np.array_equal(parts["a"], other["a"])


def test_stratified_split_refuses_oversized_request():
    with pytest.raises(InvalidInput, match="exceed"):
        stratified_split(np.zeros(10, dtype=np.int64), {"a": 8, "b": 3}, seed=0)


@pytest.mark.parametrize("name, layout", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                          ("imagefolder", "train/CLASS")])
def test_missing_data_names_expected_layout(tmp_path, name, layout):
    with pytest.raises(InvalidInput, match=layout):
        load_task(name, tmp_path)
    with pytest.raises(InvalidInput, match="--data-root"):
        load_task(name, None)
    with pytest.raises(InvalidInput, match="not a directory"):
        load_task(name, tmp_path / "absent")


def test_unknown_dataset_is_refused():
    with pytest.raises(InvalidInput, match="unknown data set"):
        load_task("mnist")


def test_imagefolder_reads_resizes_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    for part, count in (("train", 6), ("test", 110)):
        for cls in ("cat", "dog"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / part / cls / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    task = load_task("imagefolder", tmp_path, image_size=16)
    assert task.input_shape == (3, 16, 16) and task.num_classes == 2
    assert len(task.train) == 12 and len(task.query) == 100
    assert len(task.test) + len(task.adversary) + len(task.query) == 220
    assert set(np.unique(task.train.labels)) == {0, 1}


def test_labelled_images_checks_its_arrays():
    with pytest.raises(InvalidInput, match="uint8"):
        LabelledImages(np.zeros((2, 1, 8, 8), dtype=np.float32), np.zeros(2, dtype=np.int64))
    with pytest.raises(InvalidInput, match="labels"):
        LabelledImages(np.zeros((2, 1, 8, 8), dtype=np.uint8), np.zeros(3, dtype=np.int64))
    soft = LabelledImages(np.zeros((2, 1, 8, 8), dtype=np.uint8), np.full((2, 10), 0.1, dtype=np.float32))
    assert soft.soft


# --- Fashion-MNIST: small IDX files written here, and the real ones when installed ---

FASHION_NAMES = [name for names in FASHION_FILES.values() for name in names]


def _idx(array: np.ndarray) -> bytes:
    """An IDX (SN3) file: 0, 0, type 0x08 (uint8), the rank, big-endian dimensions, the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_fashion(root, n_train=1200, n_test=50, *, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    parts = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        parts[part] = (images, labels)
        for name, array in zip(FASHION_FILES[part], (images, labels)):
            data = _idx(array)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
    return parts


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_reads_idx_files_into_documented_splits(tmp_path, gz):
    written = _write_fashion(tmp_path, gz=gz)
    task = load_task("fashion-mnist", tmp_path)
    assert task.input_shape == (1, 28, 28) and task.num_classes == 10
    # The official test set, untouched and in order.
    assert np.array_equal(task.test.images[:, 0], written["test"][0])
    assert np.array_equal(task.test.labels, written["test"][1])
    # The training set: 5/6 the owner's, 100 queries, the adversary the rest.
    assert (len(task.train), len(task.query), len(task.adversary)) == (1000, 100, 100)
    train_rows = {img.tobytes() for img in written["train"][0]}
    seen = []
    for name in ("train", "query", "adversary"):
        split = task.split(name)
        rows = [img.tobytes() for img in split.images]
        assert set(rows) <= train_rows
        seen += rows
        assert np.all(np.bincount(split.labels, minlength=10) == len(split) // 10), name
    assert len(set(seen)) == len(seen) == 1200
    again = load_task("fashion-mnist", tmp_path)
    assert all(np.array_equal(task.split(s).images, again.split(s).images) for s in SPLITS)


def test_fashion_missing_files_name_the_package_and_the_files(tmp_path):
    for root in (tmp_path, tmp_path / "absent"):
        with pytest.raises(InvalidInput) as caught:
            load_task("fashion-mnist", root)
        message = str(caught.value)
        assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message
        assert all(name in message for name in FASHION_NAMES)
    _write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InvalidInput, match="t10k-labels-idx1-ubyte.gz not found"):
        load_task("fashion-mnist", tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not-idx", "wrong-side", "label-count", "label-range", "not-gzip"])
def test_fashion_refuses_damaged_files(tmp_path, damage):
    _write_fashion(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    if damage == "truncated":
        images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:1000]))
    elif damage == "not-idx":
        images.write_bytes(gzip.compress(b"\xff" * 64))
    elif damage == "wrong-side":
        images.write_bytes(gzip.compress(_idx(np.zeros((1200, 32, 32), dtype=np.uint8))))
    elif damage == "label-count":
        labels.write_bytes(gzip.compress(_idx(np.zeros(1199, dtype=np.uint8))))
    elif damage == "label-range":
        labels.write_bytes(gzip.compress(_idx(np.full(1200, 10, dtype=np.uint8))))
    else:
        images.write_bytes(b"plain bytes, not gzip")
    with pytest.raises(InvalidInput, match="train-(images|labels)"):
        load_task("fashion-mnist", tmp_path)


def test_fashion_refuses_an_oversized_file(tmp_path, monkeypatch):
    import wmark.watermark.datasets as datasets

    _write_fashion(tmp_path)
    monkeypatch.setattr(datasets, "MAX_IDX_BYTES", 1000)
    with pytest.raises(InvalidInput, match="larger than 1000 bytes"):
        load_task("fashion-mnist", tmp_path)


@pytest.mark.skipif(not all((Path(FASHION_ROOT) / f"{n}.gz").is_file() for n in FASHION_NAMES),
                    reason=f"Fashion-MNIST is not installed under {FASHION_ROOT} (apt-get install dataset-fashion-mnist)")
def test_fashion_real_files_split_as_documented():
    task = load_task("fashion-mnist")
    assert {s: len(task.split(s)) for s in SPLITS} == {"train": 50_000, "test": 10_000, "adversary": 9_900,
                                                       "query": 100}
    assert all(np.all(np.bincount(task.split(s).labels, minlength=10) == len(task.split(s)) // 10)
               for s in ("test", "query"))
    # Pinned as the digits split is: changing it changes every Fashion-MNIST result.
    assert _fingerprint(task)[:16] == "1d7b8036be7f0de4"
