"""The verifier's step between reveal and verdict: query the model itself.

Revealed trigger images are shuffled among ordinary task inputs (decoys)
before they are sent, with a permutation from the OS CSPRNG, so an endpoint
that wanted to answer trigger queries differently cannot tell which they are.
"""

from __future__ import annotations

import secrets

import numpy as np

from wmark.protocol.hazmat import dsse
from wmark.protocol.patterns import item_images
from wmark.protocol.session import RevealAccepted, VerifierSession
from wmark.verifier.oracle import ModelOracle

DECOYS_PER_ITEM = 3
# (data set, its input shape): where decoys come from, in order of preference.
DECOY_SOURCES = (("digits", (1, 8, 8)), ("fashion-mnist", (1, 28, 28)))


def default_decoys(input_shape: tuple[int, int, int], *, dataset: str | None = None,
                   data_root: str | None = None) -> np.ndarray:
    """Ordinary inputs to hide trigger queries among, at any input shape.

    The test split of ``dataset`` when given (a margin key's own data set),
    else of the data set with this input shape (digits at 1x8x8, Fashion-MNIST
    at 1x28x28 when installed); for other shapes, the images of whichever of
    those is at hand, resized and with their grey channel repeated.  Resized
    grey photos are not the suspect's task data: they hide trigger queries
    from a server that answers unusual inputs differently only if it cannot
    tell them from triggers either (docs/design.md section 4).
    """
    from wmark.errors import InvalidInput
    from wmark.watermark.datasets import load_task

    names = [dataset] if dataset else [name for name, shape in DECOY_SOURCES if shape == tuple(input_shape)]
    names += [name for name, _ in DECOY_SOURCES if name not in names]
    for name in names:
        try:
            images = load_task(name, data_root if name == dataset else None).test.images
        except InvalidInput:
            continue  # not installed here: the next source
        return images if images.shape[1:] == tuple(input_shape) else resized(images, input_shape)
    raise AssertionError("digits is bundled with scikit-learn")  # pragma: no cover


def resized(images: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images brought to ``input_shape``: bilinear resize, grey repeated to colour or colour averaged to grey."""
    from PIL import Image

    channels, height, width = input_shape
    out = np.empty((len(images), channels, height, width), dtype=np.uint8)
    for i, image in enumerate(images):
        grey = image.mean(axis=0).astype(np.uint8) if image.shape[0] != 1 else image[0]
        pixels = np.asarray(Image.fromarray(grey).resize((width, height), Image.Resampling.BILINEAR))
        out[i] = pixels[None]
    return out


def query_shuffled(oracle: ModelOracle, images: np.ndarray, decoys: np.ndarray | None,
                   decoys_per_item: int = DECOYS_PER_ITEM) -> np.ndarray:
    """The model's classes for ``images``, asked in a secret order among decoys."""
    rng = secrets.SystemRandom()
    batch = images
    if decoys is not None and len(decoys) and decoys_per_item > 0:
        picks = [rng.randrange(len(decoys)) for _ in range(len(images) * decoys_per_item)]
        batch = np.concatenate([images, decoys[picks]])
    order = list(range(len(batch)))
    rng.shuffle(order)
    answers = oracle.classify(np.ascontiguousarray(batch[order]))
    classes = np.empty(len(batch), dtype=np.int64)
    classes[order] = answers
    return classes[:len(images)]


def decide_with_model(session: VerifierSession, event: RevealAccepted, oracle: ModelOracle, *,
                      decoys: np.ndarray | None) -> dsse.Envelope:
    """Query the model on the opened items and sign the verdict."""
    classes = query_shuffled(oracle, item_images(event.items, session.vk.input_shape), decoys)
    return session.decide({item.index: int(c) for item, c in zip(event.items, classes)})
