"""A model proven in pieces, with ezkl (docs/design.md section 4c).

A model whose one proof would not fit the memory allowed is cut into pieces
along its network (``model.net``, a Sequential), each proven on its own:

* a *stage* is a run of consecutive layers, packed greedily while the
  estimated rows (:func:`layer_rows`) stay within the challenge's
  ``piece_rows``;
* a layer too tall for a piece alone (a wide convolution or dense layer) is
  cut by output channels into *groups*: each group's piece computes the
  layers of its stage so far and its own slice of that layer's channels;
* the next stage reads its inputs' outputs concatenated along the channels.

The pieces that read the hidden input (pixels, then salt) give it ezkl's
``hashed`` visibility, so each proves the item's Poseidon hash as its public
instance; the last piece ends in ``argmax`` and makes the class public.
Every tensor between pieces stays secret: ezkl's ``polycommit`` visibility
puts it in an unblinded advice column whose KZG commitment heads the proof,
so the producing piece's output commitment and the consuming piece's input
commitment are equal exactly when both were proven on one tensor.  The
verifier checks each proof and then each link by comparing those commitment
bytes; where they sit in the proof is the place ezkl's own
``swap_proof_commitments`` writes them (inputs, then outputs, each tensor's
columns in order), which tests/test_zk_split.py pins.  All pieces share one
height so that one SRS commits alike for all.

Both sides derive the cut from the model and ``piece_rows`` alone, and the
verifier names all the pieces' verification keys and the cut in one digest
(``circuit_sha256``), so a prover cannot choose another cut.  A model that
fits one proof is the special case of one piece, built by
:func:`wmark.watermark.zkcircuit.build_circuit`.
"""

from __future__ import annotations

import copy
import hmac
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from wmark.errors import InvalidInput, InvalidProof
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.items import pixel_count
from wmark.protocol.messages import ModelRef
from wmark.protocol.zk import FELT_BYTES, MAX_LOGROWS, MAX_PIECES, MIN_LOGROWS, SALT_BYTES, ZkStatement
from wmark.watermark.modelio import Classifier
from wmark.watermark.zkcircuit import (
    COMPILED_NAME,
    NUM_INNER_COLS,
    POSEIDON_ROWS_PER_ELEMENT,
    SETTINGS_NAME,
    Circuit,
    CircuitTooLarge,
    Cost,
    Keys,
    Srs,
    UnsupportedModel,
    _calibration_data,
    _canonical_settings,
    _compiling,
    _lay_out,
    _library_panics,
    _Statement,
    available_memory,
    build_circuit,
    check_srs,
    check_unchanged,
    checked_model,
    class_felt,
    estimate_rows,
    export_onnx,
    ezkl_module,
    hidden_input,
    logrows_for,
    memory_for,
    prove_input,
    setup,
    verify_proof,
)

SPLIT_TAG = "wmark/zk/split/v1"
# A G1 point in an ezkl 23 proof and witness: two 32-byte coordinates.
POINT_BYTES = 64
# The share of a piece's height its estimated rows may fill: the estimate counts
# multiply-accumulates, activations and the hash, not ezkl's range-check and
# lookup tables or its blinding rows.
FILL = 0.75


class BrokenLink(InvalidProof):
    """Two pieces' proofs that each verify, about different tensors between them."""


# -- the cut ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PieceSpec:
    """One piece: layers ``net[start:stop]``; with ``channels``, only those output
    channels of the last layer; reading the hidden input (``inputs`` empty) or
    the outputs of earlier pieces, concatenated in order along dimension 1."""

    start: int
    stop: int
    channels: tuple[int, int] | None
    inputs: tuple[int, ...]
    classify: bool

    def to_obj(self) -> list:
        return [self.start, self.stop, list(self.channels or ()), list(self.inputs), self.classify]


def layer_rows(model: Classifier) -> list[int]:
    """Per layer of ``model.net``, a rough count of its circuit rows: its
    multiply-accumulates and its output elements, over ezkl's inner columns."""
    net = cast(nn.Sequential, model.net)
    if not isinstance(net, nn.Sequential):
        raise UnsupportedModel("only a Sequential network can be proven in pieces")
    rows: list[int] = []

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        macs = 0
        if isinstance(module, nn.Conv2d):
            macs = output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        rows.append((macs + output.numel()) // NUM_INNER_COLS)

    hooks = [layer.register_forward_hook(count) for layer in net]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *model.config.input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def piece_rows_for(memory_limit: int) -> int:
    """The estimated rows a piece may have so that proving it fits ``memory_limit``."""
    fits = [k for k in range(MIN_LOGROWS, MAX_LOGROWS + 1) if memory_for(k) <= memory_limit]
    if not fits:
        raise CircuitTooLarge(f"even the smallest circuit (2^{MIN_LOGROWS} rows) needs "
                              f"{memory_for(MIN_LOGROWS) / 1e9:.1f} GB to prove; {memory_limit / 1e9:.1f} GB allowed")
    return int(FILL * (1 << max(fits)))


def _splittable(layer: nn.Module) -> int:
    """How many output channels ``layer`` can be cut into groups by (0: none)."""
    if isinstance(layer, nn.Conv2d) and layer.groups == 1:
        return layer.out_channels
    return layer.out_features if isinstance(layer, nn.Linear) else 0


def plan(model: Classifier, piece_rows: int) -> tuple[PieceSpec, ...]:
    """The pieces of ``model`` within ``piece_rows`` estimated rows each (see the module's docstring)."""
    rows, net = layer_rows(model), cast(nn.Sequential, model.net)
    hidden = POSEIDON_ROWS_PER_ELEMENT * (pixel_count(model.config.input_shape) + SALT_BYTES)
    pieces: list[PieceSpec] = []
    inputs: tuple[int, ...] = ()
    start, used = 0, hidden  # the first stage hashes the hidden input
    layer = 0
    while layer < len(rows):
        if used + rows[layer] <= piece_rows:
            used += rows[layer]
            layer += 1
            continue
        channels = _splittable(net[layer])
        # A layer too tall alone is cut by channels, its stage's earlier layers recomputed in each group;
        # unless they would fill much of each group: then the stage ends before it.
        if channels and used <= piece_rows // 4:
            groups = -(-rows[layer] // (piece_rows - used))
            if groups > channels:
                raise CircuitTooLarge(f"layer {layer} of the model ({rows[layer]:,} rows estimated) does not fit "
                                      f"in {channels} pieces of {piece_rows:,} rows")
            if layer + 1 == len(rows):
                raise UnsupportedModel("the model's last layer is too tall for one piece")
            bounds = [round(channels * g / groups) for g in range(groups + 1)]
            first = len(pieces)
            pieces += [PieceSpec(start, layer + 1, (bounds[g], bounds[g + 1]), inputs, False) for g in range(groups)]
            inputs, start, layer = tuple(range(first, len(pieces))), layer + 1, layer + 1
        elif layer > start:
            pieces.append(PieceSpec(start, layer, None, inputs, False))
            inputs, start = (len(pieces) - 1,), layer
        else:
            raise CircuitTooLarge(f"layer {layer} of the model ({type(net[layer]).__name__}, {rows[layer]:,} rows "
                                  f"estimated) does not fit in a piece of {piece_rows:,} rows and cannot be cut")
        used = 0  # a later stage's input is a committed tensor, not a hash
        if len(pieces) > MAX_PIECES:
            raise CircuitTooLarge(f"the model would need more than {MAX_PIECES} pieces of {piece_rows:,} rows")
    if start < len(rows):
        pieces.append(PieceSpec(start, len(rows), None, inputs, True))
    if len(pieces) > MAX_PIECES:
        raise CircuitTooLarge(f"the model would need more than {MAX_PIECES} pieces of {piece_rows:,} rows")
    return tuple(pieces)


# -- the pieces as modules --------------------------------------------------------------------------------------------

def _group(layer: nn.Conv2d | nn.Linear, channels: tuple[int, int]) -> nn.Module:
    """The output channels ``channels`` of a convolution or dense layer, as a layer of its own."""
    lo, hi = channels
    part = copy.deepcopy(layer)  # same kernel, stride, padding: only the output channels differ
    with torch.no_grad():
        part.weight = nn.Parameter(layer.weight[lo:hi].clone())
        if layer.bias is not None:
            part.bias = nn.Parameter(layer.bias[lo:hi].clone())
    if isinstance(part, nn.Conv2d):
        part.out_channels = hi - lo
    elif isinstance(part, nn.Linear):
        part.out_features = hi - lo
    return part.eval()


class _Inner(nn.Module):
    """A piece after the first stage: its inputs concatenated, its layers, and the class if it is the last."""

    def __init__(self, layers: nn.Sequential, classify: bool) -> None:
        super().__init__()
        self.layers, self.classify = layers, classify

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        out = self.layers(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        return torch.argmax(out, dim=1, keepdim=True) if self.classify else out


def piece_module(model: Classifier, spec: PieceSpec) -> nn.Module:
    layers = list(cast(nn.Sequential, model.net)[spec.start:spec.stop])
    if spec.channels is not None:
        last = layers[-1]
        assert isinstance(last, (nn.Conv2d, nn.Linear))  # plan() cuts only these
        layers[-1] = _group(last, spec.channels)
    net = nn.Sequential(*layers).eval()
    if not spec.inputs:  # behind the model's own preprocessing, as the whole circuit is
        return _Statement(Classifier(model.config, net), classify=spec.classify).eval()
    return _Inner(net, spec.classify).eval()


# -- building, setting up, proving, verifying -------------------------------------------------------------------------

@dataclass(frozen=True)
class Pieces:
    """A model's circuits, one per piece (one piece: the model proven whole), all of one height."""

    specs: tuple[PieceSpec, ...]
    circuits: tuple[Circuit, ...]
    piece_rows: int | None

    @classmethod
    def whole(cls, model: Classifier, circuit: Circuit) -> "Pieces":
        """The model proven whole: one piece, ``circuit``."""
        stop = len(model.net) if isinstance(model.net, nn.Sequential) else 0
        return cls((PieceSpec(0, stop, None, (), True),), (circuit,), None)

    @property
    def split(self) -> bool:
        return self.piece_rows is not None

    @property
    def cost(self) -> Cost:
        """What one piece's proof takes; an item takes ``len(self.circuits)`` of them."""
        widest = max(self.circuits, key=lambda c: c.num_rows)
        return Cost(widest.num_rows, widest.logrows)

    @property
    def input_scale(self) -> int:
        return self.circuits[0].input_scale

    @property
    def logrows(self) -> int:
        return self.circuits[0].logrows

    def describe(self, k: int) -> str:
        """The cost line, with the pieces' rows when there are several."""
        n = len(self.circuits)
        if n == 1:
            return self.cost.describe(k)
        each = ", ".join(f"{c.num_rows:,}" for c in self.circuits)
        return (f"{n} pieces of 2^{self.logrows} rows ({each} used), each one proof per item: "
                f"{self.cost.describe(k * n).replace(f'{k * n} items', f'{k} items ({k * n} proofs)')}")


def build_pieces(model: Classifier, directory: str | os.PathLike[str], *, input_scale: int,
                 piece_rows: int | None, memory_limit: int) -> Pieces:
    """The circuits of ``model`` cut for ``piece_rows`` (None: whole), compiled under ``directory``.

    Refuses a piece whose proof would need more than ``memory_limit`` bytes."""
    model = model.eval()
    if piece_rows is None:
        return Pieces.whole(model, build_circuit(model, directory, input_scale=input_scale,
                                                 memory_limit=memory_limit))
    ezkl = ezkl_module()
    specs = plan(model, piece_rows)
    modules = [piece_module(model, spec) for spec in specs]
    root = Path(directory)
    # Calibration data for each piece: the public calibration inputs through the pieces before it.
    hidden = torch.tensor(_calibration_data(model.config.input_shape), dtype=torch.float32)
    outputs: list[torch.Tensor] = []
    compiled: list[tuple[Path, Path, dict]] = []
    scales: list[int] = []
    with torch.no_grad():  # not inference_mode: the ONNX exporter traces these tensors
        for j, (spec, module) in enumerate(zip(specs, modules)):
            ins = [hidden] if not spec.inputs else [outputs[p] for p in spec.inputs]
            outputs.append(torch.cat([module(*(x[s:s + 1] for x in ins)) for s in range(len(hidden))]))
            scale = input_scale if not spec.inputs else scales[spec.inputs[0]]
            if any(scales[p] != scale for p in spec.inputs):
                raise UnsupportedModel(f"piece {j + 1}'s inputs come at different scales")
            piece = root / f"piece{j}"
            piece.mkdir(parents=True, exist_ok=True)
            onnx_path, data_path = piece / "model.onnx", piece / "calibration.json"
            settings_path = piece / SETTINGS_NAME
            names = ("hidden",) if not spec.inputs else tuple(f"t{p}" for p in spec.inputs)
            export_onnx(module, tuple(x[:1] for x in ins), onnx_path, f"piece {j + 1} of the suspect model",
                        input_names=names, output_name="class" if spec.classify else f"t{j}")
            # One flat list per input, all the calibration samples in a row (ezkl cuts it into batches).
            data_path.write_text(json.dumps({"input_data": [x.reshape(-1).tolist() for x in ins]}))
            visibility = ("hashed" if not spec.inputs else "polycommit", "public" if spec.classify else "polycommit")
            _lay_out(ezkl, onnx_path, settings_path, scale, visibility)
            with _compiling():
                ezkl.calibrate_settings(str(data_path), str(onnx_path), str(settings_path), "resources",
                                        scales=[scale], scale_rebase_multiplier=[1], max_logrows=MAX_LOGROWS)
            settings = _canonical_settings(settings_path)
            if settings["run_args"]["input_scale"] != scale:
                raise UnsupportedModel(f"ezkl calibrated piece {j + 1}'s input scale to "
                                       f"{settings['run_args']['input_scale']}, not {scale}")
            scales.append(settings["model_output_scales"][0])
            compiled.append((piece, onnx_path, settings))
    logrows = max(settings["run_args"]["logrows"] for *_, settings in compiled)
    if memory_for(logrows) > memory_limit:
        raise CircuitTooLarge(f"the model's largest piece is 2^{logrows} rows: proving it would take about "
                              f"{memory_for(logrows) / 1e9:.1f} GB, and {memory_limit / 1e9:.1f} GB is allowed")
    circuits = []
    for piece, onnx_path, settings in compiled:
        settings["run_args"]["logrows"] = logrows  # one height: one SRS commits alike in every piece
        (piece / SETTINGS_NAME).write_text(json.dumps(settings))
        with _compiling():
            ezkl.compile_circuit(str(onnx_path), str(piece / COMPILED_NAME), str(piece / SETTINGS_NAME))
        circuits.append(Circuit(piece, model.config.input_shape, settings["run_args"]["input_scale"],
                                settings["num_rows"], logrows))
    return Pieces(specs, tuple(circuits), piece_rows)


def fits_whole(model: Classifier, memory_limit: int) -> bool:
    """Whether the model's estimated rows let one proof of it fit ``memory_limit`` (cheap: no ezkl)."""
    return memory_for(logrows_for(estimate_rows(model))) <= memory_limit


AUTO = "auto"


@contextmanager
def model_pieces(model_dir: str | os.PathLike[str], *, input_shape: tuple[int, int, int], num_classes: int,
                 input_scale: int, piece_rows: int | None | str = AUTO, workdir: str | os.PathLike[str] | None = None,
                 memory_limit: int | None = None) -> Iterator[tuple[ModelRef, Pieces]]:
    """The pieces of the model in ``model_dir`` (checked against the trigger set's
    shape and classes), cut for ``piece_rows`` (None: whole; ``AUTO``: whole if its
    estimate fits ``memory_limit``, else in pieces that do), compiled in a temporary
    directory under ``workdir`` that is deleted on exit, with the reference naming
    the model's files."""
    limit = available_memory() if memory_limit is None else memory_limit
    ref, model = checked_model(model_dir, input_shape=input_shape, num_classes=num_classes)
    rows = (None if fits_whole(model, limit) else piece_rows_for(limit)) if piece_rows == AUTO else piece_rows
    assert rows is None or isinstance(rows, int)
    with tempfile.TemporaryDirectory(prefix="wmark-zk-", dir=workdir) as tmp:
        pieces = build_pieces(model, tmp, input_scale=input_scale, piece_rows=rows, memory_limit=limit)
        check_unchanged(model_dir, ref)
        yield ref, pieces


@dataclass(frozen=True)
class PieceKeys:
    """The pieces' ezkl keys, how many commitments each piece's inputs and output
    take in its proof (counted in a witness of the verifier's own), and the
    digest naming them all with the cut."""

    keys: tuple[Keys, ...]
    input_points: tuple[tuple[int, ...], ...]
    output_points: tuple[int, ...]
    circuit_sha256: bytes

    @classmethod
    def whole(cls, keys: Keys) -> "PieceKeys":
        """The keys of a model proven whole: its digest is its one verification key's, as before pieces."""
        return cls((keys,), ((),), (0,), keys.circuit_sha256)


@contextmanager
def setup_pieces(pieces: Pieces, srs: Srs, *, keep_proving_key: bool = True) -> Iterator[PieceKeys]:
    """ezkl's setup for every piece (see :func:`wmark.watermark.zkcircuit.setup`)."""
    for circuit in pieces.circuits:
        check_srs(srs, circuit)
    with ExitStack() as stack:
        keys = tuple(stack.enter_context(setup(c, srs, keep_proving_key=keep_proving_key)) for c in pieces.circuits)
        if not pieces.split:
            yield PieceKeys.whole(keys[0])
            return
        input_points, output_points = [], []
        for spec, circuit, key in zip(pieces.specs, pieces.circuits, keys):
            ins, out = _points(circuit, key, srs, spec)
            input_points.append(ins)
            output_points.append(out)
        for j, spec in enumerate(pieces.specs):
            if any(output_points[p] != input_points[j][n] for n, p in enumerate(spec.inputs)):
                raise UnsupportedModel(f"piece {j + 1} commits to its inputs in another number of columns than "
                                       f"the pieces before it commit to their outputs")
        digest = tagged_hash(SPLIT_TAG, json.dumps({"piece_rows": pieces.piece_rows,
                                                    "pieces": [s.to_obj() for s in pieces.specs],
                                                    "keys": [k.circuit_sha256.hex() for k in keys]},
                                                   sort_keys=True).encode())
        yield PieceKeys(keys, tuple(input_points), tuple(output_points), digest)


def _points(circuit: Circuit, keys: Keys, srs: Srs, spec: PieceSpec) -> tuple[tuple[int, ...], int]:
    """Per input of a piece, and for its output, the polycommit commitments a
    proof of it holds: counted in a witness of public zeros, never taken from a prover."""
    ezkl = ezkl_module()
    with tempfile.TemporaryDirectory(prefix="wmark-zk-points-", dir=circuit.directory) as tmp:
        data, witness = Path(tmp) / "input.json", Path(tmp) / "witness.json"
        data.write_text(json.dumps({"input_data": _zeros_for(circuit)}))
        with _library_panics("ezkl could not lay out a piece's commitments"):
            ezkl.gen_witness(str(data), str(circuit.compiled), str(witness),
                             vk_path=str(keys.verification_key), srs_path=str(srs.path))
        made = json.loads(witness.read_text())
    ins = (made.get("processed_inputs") or {}).get("polycommit") or []
    outs = (made.get("processed_outputs") or {}).get("polycommit") or []
    if spec.inputs and len(ins) != len(spec.inputs) or (not spec.classify) != bool(outs):
        raise UnsupportedModel("ezkl did not commit to a piece's inputs and output as laid out")
    return tuple(len(group) for group in ins), sum(len(group) for group in outs)


def _zeros_for(circuit: Circuit) -> list[list[float]]:
    """Zeros for every input of a compiled piece, by the ONNX model's input shapes."""
    import onnx

    graph = onnx.load(str(circuit.directory / "model.onnx")).graph
    return [[0.0] * math.prod(d.dim_value for d in i.type.tensor_type.shape.dim) for i in graph.input]


def prove_pieces(pieces: Pieces, keys: PieceKeys, srs: Srs, pixels: np.ndarray, salt: bytes) -> ZkStatement:
    """An item's proofs, one per piece, each later piece proven on the outputs the pieces before it computed."""
    if tuple(pixels.shape) != pieces.circuits[0].input_shape:
        raise InvalidInput(f"a {'x'.join(map(str, pixels.shape))} image for a circuit taking "
                           f"{'x'.join(map(str, pieces.circuits[0].input_shape))}")
    hidden = hidden_input(pixels, salt)
    outputs: list[list] = []
    proofs: list[dict] = []
    for spec, circuit, key in zip(pieces.specs, pieces.circuits, keys.keys):
        ins = [hidden] if not spec.inputs else [outputs[p] for p in spec.inputs]
        witness, proof = prove_input(circuit, key, srs, ins)
        outputs.append(witness["outputs"][0])
        proofs.append(proof)
    hashes = {tuple(p["instances"][0][:1]) for spec, p in zip(pieces.specs, proofs) if not spec.inputs}
    if len(hashes) != 1:
        raise InvalidInput("the pieces that read the hidden input proved different hashes of it")
    ((input_hex,),) = hashes
    class_hex = proofs[-1]["instances"][0][-1]
    first, *more = (bytes(p["proof"]) for p in proofs)
    return ZkStatement(bytes.fromhex(input_hex), int.from_bytes(bytes.fromhex(class_hex), "little"), first,
                       tuple(more))


def verify_pieces(pieces: Pieces, keys: PieceKeys, srs: Srs, statement: ZkStatement) -> None:
    """Raise :class:`InvalidProof` unless every piece's proof verifies, those that
    read the hidden input for ``statement.input_hash``, the last for
    ``statement.predicted``, and every tensor between two pieces is one tensor
    in both (the link)."""
    proofs = statement.proofs
    if len(proofs) != len(pieces.circuits):
        raise InvalidProof(f"{len(proofs)} proofs for a model proven here in {len(pieces.circuits)} pieces")
    if len(statement.input_hash) != FELT_BYTES:
        raise InvalidProof(f"an input hash is {FELT_BYTES} bytes")
    n = len(proofs)
    for j, (spec, circuit, key, proof) in enumerate(zip(pieces.specs, pieces.circuits, keys.keys, proofs)):
        instances = ([] if spec.inputs else [statement.input_hash]) + \
            ([class_felt(statement.predicted)] if spec.classify else [])
        verify_proof(circuit, key, srs, instances, proof,
                     what="the proof" if n == 1 else f"the proof of piece {j + 1} of {n}")
    for j, spec in enumerate(pieces.specs):
        offset = 0
        for n_in, p in enumerate(spec.inputs):
            size = POINT_BYTES * keys.input_points[j][n_in]
            produced_at = POINT_BYTES * sum(keys.input_points[p])
            produced = proofs[p][produced_at:produced_at + POINT_BYTES * keys.output_points[p]]
            if not hmac.compare_digest(proofs[j][offset:offset + size], produced) or size == 0:
                raise BrokenLink(f"broken link between pieces {p + 1} and {j + 1}: piece {j + 1} was proven on "
                                   f"another intermediate tensor than the one piece {p + 1} computed")
            offset += size
