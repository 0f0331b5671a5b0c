"""The verifier's step between reveal and verdict: query the model itself.

Revealed trigger images are shuffled among ordinary task inputs (decoys)
before they are sent, with a permutation from the OS CSPRNG, so an endpoint
that wanted to answer trigger queries differently cannot tell which they are.
"""

from __future__ import annotations

import secrets
from typing import Sequence

import numpy as np

from wmark.protocol.hazmat import dsse
from wmark.protocol.items import OpenedItem
from wmark.protocol.keys import VerificationKey, verify_vk_envelope
from wmark.protocol.margin import QuerySplit
from wmark.protocol.session import RevealAccepted, VerifierSession
from wmark.protocol.transcript import AuditReport, Transcript, audit_with_key
from wmark.verifier.oracle import ModelOracle

DECOYS_PER_ITEM = 3


def item_images(items: Sequence[OpenedItem], vk: VerificationKey) -> np.ndarray:
    """The uint8 images to query: as imported or selected from a margin key's split,
    else rendered from the VRF output."""
    from wmark.protocol.patterns import render_many

    rendered = iter(render_many([item.seed for item in items if item.pixels is None],  # type: ignore[misc]
                                vk.input_shape))
    return np.stack([np.frombuffer(item.pixels, dtype=np.uint8).reshape(vk.input_shape) if item.pixels is not None
                     else next(rendered) for item in items])


def query_split_for(vk: VerificationKey, data_root: str | None) -> QuerySplit | None:
    """A margin key's query split, from the verifier's own copy of the data set
    (refused unless it is the data the key was made on); None for other keys."""
    if vk.margin is None:
        return None
    from wmark.watermark.margin import load_split_for_key

    return load_split_for_key(vk.margin, vk.input_shape, data_root)


def audit_transcript(transcript: Transcript, data_root: str | None = None) -> AuditReport:
    """:func:`~wmark.protocol.transcript.audit`, with a margin key's query split from ``data_root``."""
    vk = verify_vk_envelope(transcript.vk, what="verification key")
    return audit_with_key(transcript, vk, margin=query_split_for(vk, data_root))


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
    classes = query_shuffled(oracle, item_images(event.items, session.vk), decoys)
    return session.decide({item.index: int(c) for item, c in zip(event.items, classes)})
