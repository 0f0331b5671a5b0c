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


def default_decoys(input_shape: tuple[int, int, int]) -> np.ndarray | None:
    """Ordinary inputs to hide trigger queries among: the digits test split when it fits."""
    if input_shape != (1, 8, 8):
        return None
    from wmark.watermark.datasets import load_task

    return load_task("digits").test.images


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
