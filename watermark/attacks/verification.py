"""Would a private verification still accept an attacked model?

:func:`verify_privately` runs the real protocol (docs/design.md section 4)
in-process, as `wmark-verifier run` against `wmark-prover serve` would but
without sockets or a ledger: a verifier with a fresh identity challenges the
owner's :class:`~wmark.protocol.session.ProverSession` about the model (named by
the digest of its files as saved), checks the reveal against the
verification key, queries the model itself on the opened items and decides.

A private verification samples ``k`` of the ``n`` items afresh each time, so
its outcome is a random draw.  Beside it, the exact probability that a
verification with ``k`` accepts, over the verifier's choice of items, is
computed from the model's answers on all ``n``: ``m`` of them match, and the
``k`` sampled contain ``j`` matches with hypergeometric probability.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction

from wmark.protocol.decision import DEFAULT_LAMBDA
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keys import MarkingKey, VerificationKey
from wmark.protocol.margin import QuerySplit
from wmark.protocol.messages import ModelRef, Verdict, decode
from wmark.protocol.patterns import item_images
from wmark.protocol.session import ProverSession, RevealAccepted, VerifierSession
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import Classifier, model_file_digest, save_model
from wmark.watermark.triggers import trigger_set_from_marking_key


@dataclass(frozen=True, repr=False)
class OwnerKeys:
    """What the owner answers challenges with."""

    mk: MarkingKey
    vk: VerificationKey
    owner: SigningKey


@dataclass(frozen=True)
class Verification:
    k: int
    matches: int
    tau: int | None
    accepted: bool
    p_value: str
    # Over the verifier's choice of the k items, given the model's answers on all n.
    acceptance_probability: float


def model_digest(model: Classifier) -> bytes:
    """The digest a challenge names the model by: of its files, as ``save_model`` writes them."""
    with tempfile.TemporaryDirectory(prefix="wmark-attacked-") as tmp:
        save_model(f"{tmp}/model", model)
        return model_file_digest(f"{tmp}/model")


def acceptance_probability(matching: int, n: int, k: int, tau: int | None) -> float:
    """P[at least ``tau`` of ``k`` items drawn without replacement from ``n`` are among the ``matching``]."""
    if tau is None:
        return 0.0
    hits = sum(math.comb(matching, j) * math.comb(n - matching, k - j) for j in range(tau, k + 1))
    return float(Fraction(hits, math.comb(n, k)))


def verify_privately(model: Classifier, keys: OwnerKeys, k: int, *, digest: bytes | None = None,
                     p0: Fraction | None = None, lam: int = DEFAULT_LAMBDA,
                     margin: QuerySplit | None = None) -> Verification:
    """One private verification of ``model`` with sample size ``k`` (``k = n``: public verification).

    ``digest`` names the model in the challenge (default: :func:`model_digest`); ``margin`` is a
    margin key's query split.
    """
    vk = keys.vk
    session = VerifierSession(vk, SigningKey.generate(), ModelRef(sha256=digest or model_digest(model)), k,
                              p0=p0, lam=lam, margin=margin)
    prover = ProverSession(keys.mk, vk, keys.owner)
    prover.receive(session.challenge())
    event = session.receive(prover.reveal())
    assert isinstance(event, RevealAccepted)
    classes = predict(model, item_images(event.items, vk.input_shape)).argmax(axis=1)
    envelope = session.decide({item.index: int(c) for item, c in zip(event.items, classes)})
    prover.receive(envelope)
    verdict = decode(envelope, (Verdict,))
    assert isinstance(verdict, Verdict)
    triggers = trigger_set_from_marking_key(keys.mk, margin)
    matching = int((predict(model, triggers.images).argmax(axis=1) == triggers.labels).sum())
    return Verification(k, verdict.matches, verdict.tau, verdict.accepted, verdict.p_value,
                        acceptance_probability(matching, vk.n, k, verdict.tau))
