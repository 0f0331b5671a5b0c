"""One inference proven in two pieces, with ezkl (docs/design.md section 4c).

A model too tall for one proof is cut between two layers of its network: the
head maps the hidden input (pixels, then salt; its Poseidon hash public, as
in :mod:`wmark.watermark.zkcircuit`) to the activations at the cut, the tail
maps those activations to the class.  The activations stay secret: both
pieces give them ezkl's ``polycommit`` visibility, an unblinded advice
column whose KZG commitment is written into the proof, so the head's output
commitment and the tail's input commitment are equal exactly when the tail
was proven on the tensor the head computed.  ezkl's own check swaps the
head's commitment into the tail's proof (``swap_proof_commitments``) and
verifies; with both proofs verified separately, comparing the commitment
bytes is the same check without a witness.  Both pieces share one height so
that one SRS commits alike for both.

This module is the proof system only; the protocol does not carry split
proofs yet.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wmark.errors import InvalidInput, InvalidProof
from wmark.protocol.items import pixel_count
from wmark.protocol.zk import FELT_BYTES, MAX_LOGROWS
from wmark.watermark.modelio import Classifier
from wmark.watermark.zkcircuit import (
    COMPILED_NAME,
    ONNX_OPSET,
    SETTINGS_NAME,
    Circuit,
    Keys,
    Srs,
    UnsupportedModel,
    _calibration_data,
    _canonical_settings,
    _compiling,
    _ezkl_error,
    _lay_out,
    _quiet,
    ezkl_module,
    hidden_input,
)

# A G1 point in an ezkl 23 proof: two 32-byte coordinates.
POINT_BYTES = 64


class _Head(nn.Module):
    """Hidden input -> the network's activations after its first layers."""

    def __init__(self, model: Classifier, layers: nn.Sequential) -> None:
        super().__init__()
        self.model, self.layers = model, layers
        self.shape, self.pixels = model.config.input_shape, pixel_count(model.config.input_shape)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        pixels = hidden[:, :self.pixels].reshape(1, *self.shape)
        return self.layers((pixels / 255.0 - self.model.mean) / self.model.std)


class _Tail(nn.Module):
    """Activations at the cut -> class index."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return torch.argmax(self.layers(activations), dim=1, keepdim=True)


@dataclass(frozen=True)
class SplitCircuit:
    """The two pieces' circuits (each in a directory of its own), of one height."""

    head: Circuit
    tail: Circuit
    cut: int


@dataclass(frozen=True)
class SplitStatement:
    """The two proofs of one item and the public instances they claim."""

    input_hash: bytes
    predicted: int
    head_proof: bytes
    tail_proof: bytes


def _export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["x"], output_names=["y"])
    except Exception as exc:  # the exporter raises assorted errors for operators ONNX lacks
        raise UnsupportedModel(f"a piece of the suspect model cannot be exported to ONNX: {_ezkl_error(exc)}") from None


def build_split(model: Classifier, directory: str | Path, *, cut: int, input_scale: int) -> SplitCircuit:
    """Cut ``model.net`` (a Sequential) before layer ``cut`` and compile both pieces into ``directory``."""
    ezkl = ezkl_module()
    model = model.eval()
    net = model.net
    if not isinstance(net, nn.Sequential) or not 0 < cut < len(net):
        raise InvalidInput(f"a split needs a Sequential network and a cut between its layers, not at {cut}")
    root = Path(directory)
    head, tail = _Head(model, net[:cut]).eval(), _Tail(net[cut:]).eval()
    calibration = _calibration_data(model.config.input_shape)
    with torch.no_grad():  # not inference_mode: the ONNX exporter traces these tensors
        hidden = torch.tensor(calibration, dtype=torch.float32)
        activations = torch.cat([head(h[None]) for h in hidden])
    pieces = []
    scale = input_scale
    for name, module, example, data, visibility in (
            ("head", head, hidden[:1], calibration, ("hashed", "polycommit")),
            ("tail", tail, activations[:1], [a.reshape(-1).tolist() for a in activations], ("polycommit", "public"))):
        piece = root / name
        piece.mkdir(parents=True, exist_ok=True)
        onnx_path, data_path, settings_path = piece / "model.onnx", piece / "calibration.json", piece / SETTINGS_NAME
        _export(module, example, onnx_path)
        data_path.write_text(json.dumps({"input_data": data}))
        _lay_out(ezkl, onnx_path, settings_path, scale, visibility)
        with _compiling():
            ezkl.calibrate_settings(str(data_path), str(onnx_path), str(settings_path), "resources",
                                    scales=[scale], scale_rebase_multiplier=[1], max_logrows=MAX_LOGROWS)
        settings = _canonical_settings(settings_path)
        if settings["run_args"]["input_scale"] != scale:
            raise UnsupportedModel(f"ezkl calibrated the {name}'s input scale to {settings['run_args']['input_scale']}"
                                   f", not {scale}")
        # The tail reads the head's output at the scale the head wrote it.
        scale = settings["model_output_scales"][0]
        pieces.append((piece, onnx_path, settings_path, settings))
    logrows = max(settings["run_args"]["logrows"] for *_, settings in pieces)
    circuits = []
    for piece, onnx_path, settings_path, settings in pieces:
        settings["run_args"]["logrows"] = logrows
        settings_path.write_text(json.dumps(settings))
        with _compiling():
            ezkl.compile_circuit(str(onnx_path), str(piece / COMPILED_NAME), str(settings_path))
        # Both name the item's image shape: the tail's own input is the activations at the cut.
        circuits.append(Circuit(piece, model.config.input_shape, settings["run_args"]["input_scale"],
                                settings["num_rows"], logrows))
    return SplitCircuit(circuits[0], circuits[1], cut)


def prove_piece(circuit: Circuit, keys: Keys, srs: Srs, input_data: list) -> tuple[dict, dict]:
    """One piece's witness and proof for ``input_data`` (floats, or the field elements a witness lists)."""
    ezkl = ezkl_module()
    with tempfile.TemporaryDirectory(prefix="wmark-zk-piece-", dir=circuit.directory) as tmp:
        data, witness, proof = Path(tmp) / "input.json", Path(tmp) / "witness.json", Path(tmp) / "proof.json"
        data.write_text(json.dumps({"input_data": [input_data]}))
        try:
            with _quiet():
                # With the keys and SRS, the witness carries the polycommit commitments the proof will hold.
                ezkl.gen_witness(str(data), str(circuit.compiled), str(witness),
                                 vk_path=str(keys.verification_key), srs_path=str(srs.path))
                ezkl.prove(str(witness), str(circuit.compiled), str(keys.proving_key), str(proof),
                           srs_path=str(srs.path))
        except Exception as exc:
            raise InvalidInput(f"ezkl could not prove this piece: {_ezkl_error(exc)}") from None
        return json.loads(witness.read_text()), json.loads(proof.read_text())


def prove_split(split: SplitCircuit, keys: tuple[Keys, Keys], srs: Srs, pixels: np.ndarray,
                salt: bytes) -> SplitStatement:
    """Both pieces' proofs for one item: the tail proven on the head's output."""
    head_witness, head_proof = prove_piece(split.head, keys[0], srs, hidden_input(pixels, salt))
    _, tail_proof = prove_piece(split.tail, keys[1], srs, head_witness["outputs"][0])
    (input_felt,), (class_felt,) = head_proof["instances"][0], tail_proof["instances"][0]
    return SplitStatement(bytes.fromhex(input_felt), int.from_bytes(bytes.fromhex(class_felt), "little"),
                          bytes(head_proof["proof"]), bytes(tail_proof["proof"]))


def link_size(split: SplitCircuit, keys: Keys, srs: Srs) -> int:
    """Bytes of commitments at the start of the head's proof that carry its
    output (and of the tail's that carry its input): the verifier counts them
    in a witness of its own head on public data, never from the prover."""
    ezkl = ezkl_module()
    with tempfile.TemporaryDirectory(prefix="wmark-zk-link-", dir=split.head.directory) as tmp:
        data, witness = Path(tmp) / "input.json", Path(tmp) / "witness.json"
        data.write_text(json.dumps({"input_data": [_calibration_data(split.head.input_shape)[0]]}))
        with _quiet():
            ezkl.gen_witness(str(data), str(split.head.compiled), str(witness),
                             vk_path=str(keys.verification_key), srs_path=str(srs.path))
        commitments = json.loads(witness.read_text())["processed_outputs"]["polycommit"]
    return POINT_BYTES * sum(len(group) for group in commitments)


def _verify_piece(circuit: Circuit, keys: Keys, srs: Srs, instance: str, proof: bytes, name: str) -> None:
    ezkl = ezkl_module()
    with tempfile.TemporaryDirectory(prefix="wmark-zk-verify-", dir=circuit.directory) as tmp:
        path = Path(tmp) / "proof.json"
        path.write_text(json.dumps({"instances": [[instance]], "proof": list(proof)}))
        try:
            with _quiet():
                ok = ezkl.verify(str(path), str(circuit.settings), str(keys.verification_key), srs_path=str(srs.path))
        except Exception as exc:  # ezkl raises, rather than returning False, on most failures
            raise InvalidProof(f"the {name} proof does not verify ({_ezkl_error(exc)})") from None
    if ok is not True:
        raise InvalidProof(f"the {name} proof does not verify")


def verify_split(split: SplitCircuit, keys: tuple[Keys, Keys], srs: Srs, statement: SplitStatement,
                 link: int) -> None:
    """Raise :class:`InvalidProof` unless the head proves the hidden input hashed to
    ``statement.input_hash`` goes to some activations, the tail proves those
    activations go to ``statement.predicted``, and the two are one tensor."""
    if len(statement.input_hash) != FELT_BYTES or link <= 0:
        raise InvalidProof(f"an input hash is {FELT_BYTES} bytes, and a link at least one commitment")
    _verify_piece(split.head, keys[0], srs, statement.input_hash.hex(), statement.head_proof, "first piece's")
    _verify_piece(split.tail, keys[1], srs, statement.predicted.to_bytes(FELT_BYTES, "little").hex(),
                  statement.tail_proof, "second piece's")
    if statement.head_proof[:link] != statement.tail_proof[:link]:
        raise InvalidProof("broken link: the second piece was proven on another intermediate tensor than the "
                           "one the first piece computed")

