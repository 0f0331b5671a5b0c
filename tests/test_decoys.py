"""The verifier's decoys: task images at the key's input shape, for every input shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wmark.verifier.verify import default_decoys, query_shuffled
from wmark.watermark.datasets import FASHION_ROOT, load_task

FASHION = Path(FASHION_ROOT, "t10k-images-idx3-ubyte.gz").is_file()


def test_digits_shape_gets_the_digits_test_split():
    assert np.array_equal(default_decoys((1, 8, 8)), load_task("digits").test.images)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 16, 16), (3, 8, 8), (1, 28, 28)])
def test_every_shape_gets_decoys_of_that_shape(shape):
    decoys = default_decoys(shape)
    assert decoys.dtype == np.uint8 and decoys.shape[1:] == shape and len(decoys) >= 300
    # Images, not noise or blanks: most decoys differ from each other and have contrast.
    assert len({d.tobytes() for d in decoys[:200]}) > 150 and decoys.std() > 20
    if shape[0] == 3:
        assert np.array_equal(decoys[:, 0], decoys[:, 2])  # grey repeated


@pytest.mark.skipif(not FASHION, reason=f"Fashion-MNIST is not installed under {FASHION_ROOT}")
def test_fashion_shape_gets_the_fashion_test_split():
    assert np.array_equal(default_decoys((1, 28, 28)), load_task("fashion-mnist").test.images)
    assert np.array_equal(default_decoys((1, 8, 8), dataset="fashion-mnist")[:3].shape, (3, 1, 8, 8))


def test_decoys_are_sent_mixed_with_the_items():
    seen = []

    class Recorder:
        model_ref = None

        def classify(self, images):
            seen.append(images.copy())
            return np.arange(len(images)) % 10

    items = np.full((5, 3, 32, 32), 7, dtype=np.uint8)
    query_shuffled(Recorder(), items, default_decoys((3, 32, 32)), decoys_per_item=3)
    [batch] = seen
    assert batch.shape == (20, 3, 32, 32)
    assert sum(np.array_equal(b, items[0]) for b in batch) == 5
