"""Trigger sets: derived items as pure functions of (trigger key, index), unbiased labels and
subsets, and imported image folders (wmark.watermark.triggers, wmark.protocol.patterns, wmark.protocol.hazmat.sampling)."""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import replace
from pathlib import Path

import ecdsa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.stats import chisquare

from tests.support.helpers import REPO
from wmark.errors import InvalidInput
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.sampling import LABEL_TAG, SUBSET_TAG, DigestStream, derive_label, sample_subset
from wmark.protocol.hazmat.vrf import VrfSecretKey, proof_to_hash
from wmark.protocol.items import OpenedItem, TriggerKind, vrf_alpha
from wmark.protocol.keygen import keygen_derived, keygen_imported
from wmark.protocol.patterns import item_images, render, render_many
from wmark.watermark.triggers import (
    Fit,
    import_images,
    item_image,
    random_labels,
    read_labels_file,
    trigger_set_from_marking_key,
)

SETTINGS = settings(deadline=None, max_examples=200)
SHAPES = [(1, 8, 8), (3, 32, 32), (3, 64, 64)]
# The paper's trigger set, in the shared folder beside the repository (tests skip without it).
WATERMARKNN = Path(os.environ.get("WMARK_WATERMARKNN", REPO.parent / "shared" / "data" / "watermarknn-trigger-set"))
P_MIN = 0.001


def seeds(count: int, label: bytes = b"wmark-test/seed") -> list[bytes]:
    """Deterministic stand-ins for VRF outputs: a SHA-256 counter."""
    return [hashlib.sha256(label + i.to_bytes(8, "big")).digest() for i in range(count)]


# --- derived items are a pure function of (trigger key, index) --------------------------

TRIGGER_KEY_BYTES = bytes(range(1, 33))


# A fixed owner, so that items derived from TRIGGER_KEY_BYTES are the same in every run.
FIXED_OWNER = SigningKey(ecdsa.SigningKey.from_secret_exponent(12345, curve=ecdsa.NIST256p,
                                                               hashfunc=hashlib.sha256)).public_key


def derive(sk: VrfSecretKey, index: int, shape=(1, 8, 8), num_classes=10, owner=FIXED_OWNER):
    seed = proof_to_hash(sk.prove(vrf_alpha(index, owner)))
    return seed, render(seed, shape), derive_label(seed, num_classes)


@pytest.mark.parametrize("shape", SHAPES)
def test_same_trigger_key_yields_the_same_items(shape):
    a, b = VrfSecretKey.from_bytes(TRIGGER_KEY_BYTES), VrfSecretKey.from_bytes(TRIGGER_KEY_BYTES)
    for index in (0, 1, 99):
        seed_a, image_a, label_a = derive(a, index, shape)
        seed_b, image_b, label_b = derive(b, index, shape)
        assert seed_a == seed_b and label_a == label_b
        assert np.array_equal(image_a, image_b)


def test_items_differ_between_indices_and_between_keys():
    key, other = VrfSecretKey.from_bytes(TRIGGER_KEY_BYTES), VrfSecretKey.from_bytes(bytes(range(2, 34)))
    items = [derive(key, i) for i in range(6)]
    assert len({seed for seed, _, _ in items}) == 6
    assert len({image.tobytes() for _, image, _ in items}) == 6
    assert derive(other, 0)[0] != items[0][0]
    assert not np.array_equal(derive(other, 0)[1], items[0][1])


def test_trigger_set_of_a_marking_key_is_rederived_from_its_trigger_key():
    pair = keygen_derived(owner=SigningKey.generate(), n=4, num_classes=7, input_shape=(3, 32, 32))
    mk = pair.marking_key
    tset = trigger_set_from_marking_key(mk)
    assert tset.images.shape == (4, 3, 32, 32) and tset.images.dtype == np.uint8
    assert tset.input_shape == (3, 32, 32) and len(tset) == 4 and tset.num_classes == 7
    for i in range(4):
        seed, image, label = derive(mk.vrf_secret_key, i, (3, 32, 32), 7, pair.verification_key.owner)
        assert np.array_equal(tset.images[i], image)
        assert tset.labels[i] == label == mk.openings[i].label
    # ... and what a verifier holding only vk re-derives from an opening is the same item.
    seed = pair.verification_key.vrf_key.verify(vrf_alpha(2, pair.verification_key.owner), mk.openings[2].vrf_proof)
    assert np.array_equal(render(seed, (3, 32, 32)), tset.images[2])



def test_an_opening_without_what_its_kind_draws_from_is_invalid_input():
    derived = keygen_derived(owner=SigningKey.generate(), n=1, num_classes=2, input_shape=(1, 8, 8)).marking_key
    imported = keygen_imported(owner=SigningKey.generate(), images=[bytes(64)], labels=[1], num_classes=2,
                               input_shape=(1, 8, 8)).marking_key
    with pytest.raises(InvalidInput, match="no VRF proof"):
        item_image(replace(derived.openings[0], vrf_proof=None), TriggerKind.DERIVED, (1, 8, 8))
    with pytest.raises(InvalidInput, match="no image"):
        item_image(replace(imported.openings[0], image=None), TriggerKind.IMPORTED, (1, 8, 8))
    with pytest.raises(InvalidInput, match="neither pixels nor a seed"):
        item_images([OpenedItem(index=0, label=1, seed=None, pixels=None)], (1, 8, 8))


# --- render -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_render_is_deterministic_with_the_right_shape_and_dtype(shape):
    for seed in seeds(5):
        image = render(seed, shape)
        assert image.shape == shape and image.dtype == np.uint8
        assert np.array_equal(image, render(bytes(seed), shape))
        assert image.std() > 5  # a picture, not a flat fill
    assert len({render(seed, shape).tobytes() for seed in seeds(20)}) == 20


# Pinned: a verifier must redraw the items of keys made by any earlier version, so a change
# here is a format break (bump PATTERN_TAG), never a refactor.
GOLDEN = {
    (1, 8, 8): "9a3296fcd488ec7cde12422ffd3be637b86b6d845bf70e1777fee21a6a03b276",
    (3, 32, 32): "078e199f041d53f1bdb8e9e4f915d2d51a42775bd8b797752ae1b0849d0fca81",
    (3, 64, 64): "4effc6bed3a51dc57eb39ad985d8574231871e609946c030d12a9c78dab12750",
}


# 64 seeds a shape, so that every kind of stroke and ellipse, and every number of them, is pinned.
GOLDEN_64 = {
    (1, 8, 8): "ea3b99919f9620d64328f0078dc5c0bf7368da21262ad12ec7c2d810471122c9",
    (3, 32, 32): "557c085091e5838ae271864dd2a2861423662052d6b098dbc5cacc7612fead03",
    (3, 64, 64): "8f4871563434a0847a96d086ab46afa48de6fdaab5a5465f52bcdd120b085912",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_render_matches_the_pinned_images(shape):
    assert hashlib.sha256(render(bytes(32), shape).tobytes()).hexdigest() == GOLDEN[shape]
    golden = seeds(64, b"wmark-test/golden")
    one_by_one = b"".join(render(seed, shape).tobytes() for seed in golden)
    assert hashlib.sha256(one_by_one).hexdigest() == GOLDEN_64[shape]
    # A batch draws each image exactly as it is drawn alone, however the batch is cut.
    assert render_many(golden, shape).tobytes() == one_by_one
    assert b"".join(render_many(golden[i:i + 7], shape).tobytes() for i in range(0, 64, 7)) == one_by_one
    assert render_many([], shape).shape == (0, *shape)


def test_render_uses_the_whole_range_across_seeds():
    pixels = np.concatenate([render(seed, (3, 32, 32)).ravel() for seed in seeds(30)])
    assert pixels.min() < 40 and pixels.max() > 215
    means = [render(seed, (1, 8, 8)).mean() for seed in seeds(50)]
    assert np.std(means) > 5  # images are not all alike


# --- labels are uniform over L ------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [10, 7, 100])
def test_derived_labels_are_uniform(num_classes):
    labels = [derive_label(seed, num_classes) for seed in seeds(20_000)]
    counts = np.bincount(labels, minlength=num_classes)
    assert len(counts) == num_classes  # nothing outside [0, L)
    assert chisquare(counts).pvalue > P_MIN


def test_derived_labels_are_deterministic_and_in_range():
    for seed in seeds(200):
        for num_classes in (2, 3, 10, 1000):
            label = derive_label(seed, num_classes)
            assert 0 <= label < num_classes and label == derive_label(seed, num_classes)


@SETTINGS
@given(st.binary(max_size=40), st.integers(min_value=1, max_value=2**300))
def test_randbelow_never_reaches_its_bound(seed, bound):
    stream = DigestStream(LABEL_TAG, seed)
    for _ in range(5):
        assert 0 <= stream.randbelow(bound) < bound


@pytest.mark.parametrize("bound", [171, 129, 3])
def test_randbelow_has_no_modulo_bias(bound):
    # A byte reduced mod 171 would give 0..84 twice the weight of 85..170; mod 129, 0..126 twice.
    stream = DigestStream(LABEL_TAG, b"bias test")
    counts = np.bincount([stream.randbelow(bound) for _ in range(200 * bound)], minlength=bound)
    assert chisquare(counts).pvalue > P_MIN


def test_randbelow_rejects_empty_ranges_and_is_deterministic():
    for bad in (0, -1):
        with pytest.raises(ValueError):
            DigestStream(LABEL_TAG, b"x").randbelow(bad)
    assert DigestStream(LABEL_TAG, b"x").randbelow(1) == 0
    a, b = DigestStream(LABEL_TAG, b"x"), DigestStream(LABEL_TAG, b"x")
    assert [a.randbelow(1000) for _ in range(50)] == [b.randbelow(1000) for _ in range(50)]
    c, d = DigestStream(SUBSET_TAG, b"x"), DigestStream(LABEL_TAG, b"y")
    e = DigestStream(LABEL_TAG, b"x")
    first = [e.randbelow(2**64) for _ in range(3)]
    assert first != [c.randbelow(2**64) for _ in range(3)]
    assert first != [d.randbelow(2**64) for _ in range(3)]


# --- sample_subset --------------------------------------------------------------------------

def test_subset_inclusion_is_uniform():
    n, k = 10, 3
    counts = np.zeros(n, dtype=np.int64)
    for digest in seeds(20_000, b"wmark-test/challenge"):
        counts[list(sample_subset(digest, n, k))] += 1
    assert counts.sum() == 20_000 * k
    assert chisquare(counts).pvalue > P_MIN


def test_every_subset_is_equally_likely():
    n, k = 8, 3
    index = {s: i for i, s in enumerate(itertools.combinations(range(n), k))}
    counts = np.zeros(len(index), dtype=np.int64)
    for digest in seeds(20_000, b"wmark-test/subsets"):
        counts[index[sample_subset(digest, n, k)]] += 1
    assert (counts > 0).all()
    assert chisquare(counts).pvalue > P_MIN


@SETTINGS
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=1, max_value=300), st.data())
def test_subset_is_k_distinct_sorted_indices_in_range(digest, n, data):
    k = data.draw(st.integers(min_value=1, max_value=n))
    subset = sample_subset(digest, n, k)
    assert len(subset) == k == len(set(subset))
    assert list(subset) == sorted(subset)
    assert all(0 <= i < n for i in subset)
    assert sample_subset(digest, n, k) == subset


def test_subset_depends_on_the_digest():
    subsets = {sample_subset(digest, 100, 5) for digest in seeds(200, b"wmark-test/digests")}
    assert len(subsets) >= 199
    assert sample_subset(b"\x00" * 32, 10, 10) == tuple(range(10))


@pytest.mark.parametrize("n,k", [(10, 0), (10, 11), (10, -1), (0, 0), (0, 1)])
def test_subset_rejects_bad_k(n, k):
    with pytest.raises(ValueError, match="sample size"):
        sample_subset(b"\x00" * 32, n, k)


# --- imported trigger sets ------------------------------------------------------------------

@pytest.mark.skipif(not WATERMARKNN.is_dir(), reason="no WatermarkNN trigger set in ../shared/data")
@pytest.mark.parametrize("fit", list(Fit))
def test_watermarknn_trigger_set_imports(fit):
    expected_labels = tuple(int(float(line)) for line in
                            (WATERMARKNN / "labels-cifar.txt").read_text().split())
    assert len(expected_labels) == 100
    imported = import_images(WATERMARKNN, (3, 32, 32), fit=fit, labels_file=None, num_classes=10)
    assert len(imported.pixels) == 100 and all(len(p) == 3 * 32 * 32 for p in imported.pixels)
    assert imported.labels == expected_labels
    assert imported.labels_file == WATERMARKNN / "labels-cifar.txt"
    assert [p.name for p in imported.sources] == [f"{i}.jpg" for i in range(1, 101)]
    with Image.open(WATERMARKNN / "pics" / "7.jpg") as img:
        rgb = np.asarray(img.convert("RGB"))
    if fit is Fit.CENTER_CROP:  # what the paper's code does: transforms.CenterCrop(32)
        top, left = (rgb.shape[0] - 32) // 2, (rgb.shape[1] - 32) // 2
        expected = rgb[top:top + 32, left:left + 32].transpose(2, 0, 1)
        assert imported.pixels[6] == np.ascontiguousarray(expected).tobytes()
        pair = keygen_imported(owner=SigningKey.generate(), images=imported.pixels, labels=imported.labels,
                               num_classes=10, input_shape=(3, 32, 32))
        assert pair.verification_key.n == 100
        tset = trigger_set_from_marking_key(pair.marking_key)
        assert tuple(tset.labels) == expected_labels
        assert tset.images[6].tobytes() == imported.pixels[6]


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def solid(value: int, size=(12, 10)) -> np.ndarray:
    return np.full((size[1], size[0], 3), value, dtype=np.uint8)


@pytest.fixture
def pics_folder(tmp_path):
    """The WatermarkNN layout in small: pics/1.png, 2.png, 10.png and a label file."""
    root = tmp_path / "set"
    for name, value in (("1", 10), ("2", 20), ("10", 100)):
        save(root / "pics" / f"{name}.png", solid(value))
    (root / "labels.txt").write_text("1\n2.0\n0.000000000000000000e+00\n")
    return root


def test_numeric_file_order_keeps_images_and_labels_aligned(pics_folder):
    imported = import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)
    assert [p.name for p in imported.sources] == ["1.png", "2.png", "10.png"]  # not 1, 10, 2
    assert [p[0] for p in imported.pixels] == [10, 20, 100]
    assert imported.labels == (1, 2, 0)
    assert all(len(set(p)) == 1 for p in imported.pixels)  # a solid image stays solid when resized


def test_center_crop_takes_the_centre(tmp_path):
    height, width = 36, 41
    ys, xs = np.mgrid[0:height, 0:width]
    array = np.stack([xs * 5, ys * 7, xs + ys], axis=-1) % 256
    save(tmp_path / "imgs" / "a.png", array)
    imported = import_images(tmp_path / "imgs", (3, 32, 32), fit=Fit.CENTER_CROP, labels_file=None,
                             num_classes=10)
    top, left = (height - 32) // 2, (width - 32) // 2
    expected = array[top:top + 32, left:left + 32].transpose(2, 0, 1).astype(np.uint8)
    assert imported.pixels[0] == np.ascontiguousarray(expected).tobytes()
    assert imported.labels is None


def test_grayscale_import(tmp_path):
    save(tmp_path / "imgs" / "a.png", solid(200, (20, 20)))
    imported = import_images(tmp_path / "imgs", (1, 8, 8), fit=Fit.RESIZE, labels_file=None, num_classes=10)
    assert imported.pixels == (bytes([200]) * 64,)


@pytest.mark.parametrize("text", ["1\n2\n", "1\n2\n0\n1\n", ""])
def test_label_file_of_wrong_length_is_invalid_input(pics_folder, text):
    (pics_folder / "labels.txt").write_text(text)
    with pytest.raises(InvalidInput, match=r"labels\.txt.*labels for 3 images"):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


@pytest.mark.parametrize("bad", ["2.5", "3", "-1", "cat", "nan", "inf", "1e400"])
def test_label_file_with_a_bad_value_is_invalid_input(pics_folder, bad):
    (pics_folder / "labels.txt").write_text(f"1\n{bad}\n0\n")
    with pytest.raises(InvalidInput, match=r"labels\.txt:2: "):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


def test_label_file_not_utf8_or_missing_is_invalid_input(pics_folder, tmp_path):
    (pics_folder / "labels.txt").write_bytes(b"1\n\xff\n0\n")
    with pytest.raises(InvalidInput, match=r"labels\.txt: cannot read"):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)
    with pytest.raises(InvalidInput, match=r"nolabels\.txt: label file not found"):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=tmp_path / "nolabels.txt",
                      num_classes=3)


def test_explicit_label_file_wins(pics_folder, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("0\n0\n2\n")
    imported = import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=other, num_classes=3)
    assert imported.labels == (0, 0, 2) and imported.labels_file == other
    assert read_labels_file(other, count=3, num_classes=3) == (0, 0, 2)


def test_several_label_files_are_ambiguous(pics_folder):
    (pics_folder / "more.txt").write_text("0\n0\n0\n")
    with pytest.raises(InvalidInput, match="several label files"):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


def test_missing_folder_file_instead_of_folder_and_empty_folder(tmp_path):
    with pytest.raises(InvalidInput, match=r"absent: image folder not found"):
        import_images(tmp_path / "absent", (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"file\.png: expected a folder"):
        import_images(tmp_path / "file.png", (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    with pytest.raises(InvalidInput, match=r"empty: no images found"):
        import_images(tmp_path / "empty", (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


@pytest.mark.parametrize("content", [b"not an image at all", b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_unreadable_image_is_invalid_input_naming_the_file(pics_folder, content):
    (pics_folder / "pics" / "2.png").write_bytes(content)
    with pytest.raises(InvalidInput, match=r"2\.png: not a readable image"):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


def test_truncated_image_is_invalid_input_naming_the_file(pics_folder):
    path = pics_folder / "pics" / "10.png"
    save(path, np.random.default_rng(0).integers(0, 256, (64, 64, 3)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InvalidInput, match=r"10\.png: not a readable image"):
        import_images(pics_folder, (3, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


def test_image_too_small_for_the_centre_crop_is_invalid_input(pics_folder):
    for name in ("1", "10"):
        save(pics_folder / "pics" / f"{name}.png", solid(9, (40, 32)))
    save(pics_folder / "pics" / "2.png", solid(7, (31, 40)))
    with pytest.raises(InvalidInput, match=r"2\.png: 31x40 image is smaller than the 32x32 centre crop"):
        import_images(pics_folder, (3, 32, 32), fit=Fit.CENTER_CROP, labels_file=None, num_classes=3)
    # Resizing copes with it.
    imported = import_images(pics_folder, (3, 32, 32), fit=Fit.RESIZE, labels_file=None, num_classes=3)
    assert len(imported.pixels[1]) == 3 * 32 * 32


def test_imported_images_need_one_or_three_channels(pics_folder):
    with pytest.raises(InvalidInput, match="1 or 3 channels"):
        import_images(pics_folder, (4, 4, 4), fit=Fit.RESIZE, labels_file=None, num_classes=3)


def test_random_labels_are_in_range_and_vary():
    labels = random_labels(2000, 10)
    assert len(labels) == 2000 and set(labels) == set(range(10))


@pytest.mark.skipif(not WATERMARKNN.is_dir(), reason="no WatermarkNN trigger set in ../shared/data")
def test_watermarknn_trigger_set_imports_grey_at_fashion_mnist_shape():
    """The paper's 100 colour images, as a Fashion-MNIST key takes them: grey (PIL's L) and resized to 28x28."""
    imported = import_images(WATERMARKNN, (1, 28, 28), fit=Fit.RESIZE, labels_file=None, num_classes=10)
    assert len(imported.pixels) == 100 and all(len(p) == 28 * 28 for p in imported.pixels)
    with Image.open(WATERMARKNN / "pics" / "7.jpg") as img:
        expected = np.asarray(img.convert("L").resize((28, 28), Image.Resampling.BILINEAR))
    assert imported.pixels[6] == expected.tobytes()
    pair = keygen_imported(owner=SigningKey.generate(), images=imported.pixels, labels=imported.labels,
                           num_classes=10, input_shape=(1, 28, 28))
    tset = trigger_set_from_marking_key(pair.marking_key)
    assert tset.images.shape == (100, 1, 28, 28) and np.array_equal(tset.images[6, 0], expected)
    # Distinct images, not one grey square a hundred times.
    assert len({image.tobytes() for image in tset.images}) == 100
