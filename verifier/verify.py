"""The verifier's step between reveal and verdict: query the model itself.

Revealed trigger images are shuffled among ordinary task inputs (decoys)
before they are sent, with a permutation from the OS CSPRNG, so an endpoint
that wanted to answer trigger queries differently cannot tell which they are.
"""

from __future__ import annotations

import secrets

import numpy as np

from wmark.errors import InvalidSignature
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.keys import VerificationKey, verify_vk_envelope
from wmark.protocol.margin import QuerySplit
from wmark.protocol.patterns import item_images
from wmark.protocol.session import RevealAccepted, VerifierSession
from wmark.protocol.transcript import AuditReport, Transcript, audit
from wmark.verifier.oracle import ModelOracle

DECOYS_PER_ITEM = 3


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
    return audit(transcript, margin=query_split_for(vk, data_root))


def check_log_key(transcript: Transcript, log_key: PublicKey, *, name: str) -> None:
    """Refuse a transcript whose registry receipt comes from a log other than
    ``log_key`` (named ``name``): a receipt proves a time only to someone who
    trusts the log that signed it (docs/design.md section 4b)."""
    used = transcript.registration.log_key if transcript.registration is not None else None
    if used is not None and used != log_key:
        raise InvalidSignature(f"the transcript's receipt comes from log {used.fingerprint}, not from the log "
                               f"key in {name}")


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
