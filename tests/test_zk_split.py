"""A model proven in two pieces linked by a committed intermediate tensor
(docs/design.md section 4c), on the two-layer 1x2x2 network of
test_zk_cheating.py cut after its ReLU: two pieces of 2^12 rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace

import numpy as np
import pytest
import torch

from wmark.errors import InvalidProof

pytest.importorskip("ezkl")

from tests.test_zk_cheating import SHAPE, tiny_model  # after the skip: these need ezkl
from wmark.watermark import zkcircuit, zksplit

SALT = bytes(range(32))
PIXELS = np.array([0, 40, 200, 255], dtype=np.uint8).reshape(SHAPE)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("zk-split")
    model = tiny_model(0)
    circuit = zksplit.build_split(model, root, cut=3, input_scale=zkcircuit.DEFAULT_INPUT_SCALE)
    assert circuit.head.logrows == circuit.tail.logrows <= 12
    srs = zkcircuit.generate_srs(root / "srs", circuit.head.logrows)
    with ExitStack() as stack:
        keys = (stack.enter_context(zkcircuit.setup(circuit.head, srs)),
                stack.enter_context(zkcircuit.setup(circuit.tail, srs)))
        statement = zksplit.prove_split(circuit, keys, srs, PIXELS, SALT)
        yield model, circuit, keys, srs, statement, zksplit.link_size(circuit, keys[0], srs)


def test_a_two_piece_proof_verifies_end_to_end_with_torch_s_class(split):
    model, circuit, keys, srs, statement, link = split
    zksplit.verify_split(circuit, keys, srs, statement, link)
    assert statement.input_hash == zkcircuit.input_hash(PIXELS, SALT, zkcircuit.DEFAULT_INPUT_SCALE)
    assert statement.predicted == int(model(torch.from_numpy(PIXELS[None])).argmax())
    assert link > 0


def test_a_second_piece_proven_on_another_tensor_is_a_broken_link(split):
    """Both proofs verify on their own: only the link shows the tail computed on something else."""
    _, circuit, keys, srs, statement, link = split
    ezkl = zkcircuit.ezkl_module()
    other = [ezkl.float_to_felt(0.5, circuit.tail.input_scale, ezkl.PyInputType.F32) for _ in range(8)]
    _, tail_proof = zksplit.prove_piece(circuit.tail, keys[1], srs, other)
    (class_felt,) = tail_proof["instances"][0]
    forged = replace(statement, predicted=int.from_bytes(bytes.fromhex(class_felt), "little"),
                     tail_proof=bytes(tail_proof["proof"]))
    with pytest.raises(InvalidProof, match="broken link: the second piece was proven on another intermediate"):
        zksplit.verify_split(circuit, keys, srs, forged, link)


def test_a_piece_s_altered_class_does_not_verify(split):
    _, circuit, keys, srs, statement, link = split
    with pytest.raises(InvalidProof, match="the second piece's proof does not verify"):
        zksplit.verify_split(circuit, keys, srs, replace(statement, predicted=(statement.predicted + 1) % 10), link)
