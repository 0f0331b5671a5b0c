"""Cheating provers against real ezkl proofs, in the default run (docs/design.md section 4c).

A two-layer network on 1x2x2 images makes a circuit of 2^11 rows: its SRS,
two setups and two proofs take about 20 s on two cores, once per session.
Each case hands the verifier a reveal in which one item carries a doctored
proof and checks that the verdict counts it as a non-match and says why;
test_zk.py has the slow cases on a trained ``zk_cnn``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.items import TriggerKind
from wmark.protocol.keygen import KeyPair, keygen_derived
from wmark.protocol.messages import ModelRef, Verdict, decode
from wmark.protocol.session import ProverSession, ZkVerifierSession
from wmark.protocol.zk import SrsOrigin, ZkStatement

pytest.importorskip("ezkl")

from wmark.verifier.zk import ZkVerifier, decide_with_proofs  # after the skip: these need ezkl
from wmark.watermark import zkcircuit
from wmark.watermark.modelio import Classifier, ModelConfig, Preprocessing
from wmark.watermark.triggers import item_image
from wmark.watermark.zksplit import PieceKeys, Pieces

SHAPE = (1, 2, 2)
NUM_CLASSES = 10


def tiny_model(seed: int) -> Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, NUM_CLASSES))
    return Classifier(ModelConfig("zk_cnn", NUM_CLASSES, SHAPE, Preprocessing((0.5,), (0.25,))), net).eval()


@dataclass(frozen=True)
class Tiny:
    """A two-item --zk key, the verifier's setup for model A, and item ``x``'s
    proofs under model A (honest) and model B (another model)."""

    pair: KeyPair
    owner: SigningKey
    verifier: ZkVerifier
    x: int
    y: int
    honest: ZkStatement
    other_model: ZkStatement
    torch_class: int


def _image(pair: KeyPair, index: int) -> np.ndarray:
    mk = pair.marking_key
    return item_image(mk.openings[index], mk.kind, mk.input_shape)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Iterator[Tiny]:
    root: Path = tmp_path_factory.mktemp("zk-tiny")
    owner = SigningKey.generate()
    model_a, model_b = tiny_model(0), tiny_model(1)
    # Item x must be one model A does not classify as its label, so that
    # editing the proven class to the label changes it.
    for _ in range(20):
        pair = keygen_derived(owner=owner, n=2, num_classes=NUM_CLASSES, input_shape=SHAPE,
                              zk=zkcircuit.InputCommitter(TriggerKind.DERIVED, SHAPE))
        classes = [int(model_a(torch.from_numpy(_image(pair, i)[None])).argmax()) for i in range(2)]
        wrong = [i for i in range(2) if classes[i] != pair.marking_key.openings[i].label]
        if wrong:
            break
    else:
        raise AssertionError("model A classified every key's items as their labels 20 times running")
    x = wrong[0]
    salt = pair.marking_key.zk.salts[x]
    with ExitStack() as stack:
        circuit_a = zkcircuit.build_circuit(model_a, root / "a", input_scale=zkcircuit.DEFAULT_INPUT_SCALE)
        circuit_b = zkcircuit.build_circuit(model_b, root / "b", input_scale=zkcircuit.DEFAULT_INPUT_SCALE)
        assert circuit_a.logrows == circuit_b.logrows == 11, "the tiny circuit grew: these tests get slow"
        srs = zkcircuit.generate_srs(root / "srs", circuit_a.logrows)
        keys_a = stack.enter_context(zkcircuit.setup(circuit_a, srs))
        keys_b = stack.enter_context(zkcircuit.setup(circuit_b, srs))
        verifier = ZkVerifier(ModelRef(sha256=hashlib.sha256(b"model A").digest()), Pieces.whole(model_a, circuit_a),
                              srs, SrsOrigin.VERIFIER, PieceKeys.whole(keys_a))
        yield Tiny(pair, owner, verifier, x, 1 - x, zkcircuit.prove(circuit_a, keys_a, srs, _image(pair, x), salt),
                   zkcircuit.prove(circuit_b, keys_b, srs, _image(pair, x), salt), classes[x])


def verdict_on(tiny: Tiny, statements: dict[int, ZkStatement]) -> tuple[Verdict, dict[int, str]]:
    """The verifier's verdict on a reveal carrying ``statements``, and its failures by index."""
    vk, mk = tiny.pair.verification_key, tiny.pair.marking_key
    session = ZkVerifierSession(vk, SigningKey.generate(), tiny.verifier.model_ref, 2,
                                zk=tiny.verifier.parameters, lam=3)
    prover = ProverSession(mk, vk, tiny.owner)
    event = prover.receive(session.challenge())
    assert sorted(event.indices) == [0, 1]
    verdict = decode(decide_with_proofs(session, session.receive(prover.zk_reveal(statements)), tiny.verifier),
                     (Verdict,))
    assert isinstance(verdict, Verdict) and verdict.zk is not None
    return verdict, {f.index: f.reason for f in verdict.zk.failures}


def test_an_honest_proof_counts_and_a_proof_for_another_item_does_not(tiny):
    """Item y answered with item x's valid proof: a non-match naming the hidden
    input; x's own proof counts, with the class torch computes."""
    verdict, failed = verdict_on(tiny, {tiny.x: tiny.honest, tiny.y: tiny.honest})
    assert set(failed) == {tiny.y}
    assert "another hidden input than the one committed for item" in failed[tiny.y]
    result = {r.index: r for r in verdict.results}
    assert result[tiny.x].predicted == tiny.torch_class and result[tiny.y].predicted is None


def test_a_proof_whose_class_is_edited_to_the_label_does_not_verify(tiny):
    label = tiny.pair.marking_key.openings[tiny.x].label
    assert tiny.honest.predicted == tiny.torch_class != label
    edited = replace(tiny.honest, predicted=label)
    verdict, failed = verdict_on(tiny, {tiny.x: edited, tiny.y: tiny.honest})
    assert set(failed) == {tiny.x, tiny.y}
    assert "the proof does not verify" in failed[tiny.x] and "an altered one" in failed[tiny.x]
    assert verdict.matches == 0


def test_a_proof_under_another_model_does_not_verify(tiny):
    """Model B's proof is about item x's committed input (the hash matches), so
    only the proof check can tell."""
    assert tiny.other_model.input_hash == tiny.pair.verification_key.zk.hashes[tiny.x]
    _, failed = verdict_on(tiny, {tiny.x: tiny.other_model, tiny.y: tiny.honest})
    assert "the proof does not verify" in failed[tiny.x] and "another model" in failed[tiny.x]


@pytest.mark.parametrize("cut", [lambda p: p[:-100], lambda p: p[: len(p) // 2], lambda p: b""],
                         ids=["last-100-bytes", "half", "empty"])
def test_a_truncated_proof_does_not_verify(tiny, cut):
    truncated = replace(tiny.honest, proof=cut(tiny.honest.proof))
    _, failed = verdict_on(tiny, {tiny.x: truncated, tiny.y: tiny.honest})
    assert "the proof does not verify" in failed[tiny.x]
