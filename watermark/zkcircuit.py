"""A suspect model as a zero-knowledge circuit, with ezkl (docs/design.md section 4c).

The statement proven for one trigger item is "this model maps the hidden input
whose Poseidon hash is ``h`` to class ``c``": the model behind its
preprocessing, with ``argmax`` inside the circuit so that only the class is
public, exported to ONNX and compiled by ezkl into a Halo2 circuit whose
weights are fixed columns (so the verification key binds the weights).  The
hidden input is the item's pixels followed by its salt (the layout of
:mod:`wmark.protocol.zk`); its visibility is ``hashed``, so the proof's first public
instance is the Poseidon hash of the quantised input and nothing else about it
leaves the prover.

Prover and verifier each build the circuit from the model they hold, with
:func:`build_circuit`, which is deterministic: fixed export options, fixed
scales, calibration on public data derived from the input shape.  The
verifier's verification key is then byte for byte the prover's, and a
challenge names it (``circuit_sha256``) so a mismatch shows before any
proving.

ezkl is an optional dependency (``pip install '.[zk]'``), imported only here
and only when a circuit is used; measured with ezkl 23.0.5, whose proof and
Poseidon encodings this module relies on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np
import torch
from torch import nn

from wmark.errors import DecodeError, InvalidInput, InvalidProof, is_library_failure
from wmark.files import open_input
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.items import ItemOpening, TriggerKind, pixel_count
from wmark.protocol.messages import ModelRef
from wmark.protocol.patterns import render
from wmark.protocol.zk import FELT_BYTES, MAX_LOGROWS, MIN_LOGROWS, SALT_BYTES, ZkStatement
from wmark.watermark.modelio import Classifier, load_model, model_file_digest
from wmark.watermark.triggers import item_image

EZKL_VERSION = "23.0.5"
INSTALL_HINT = "install the zk extra: pip install '.[zk]' (ezkl 23.0.5 and onnx)"
# Fixed-point scale 2^8 for inputs and weights alike (ezkl's calibration ties
# them): at 2^7 the preprocessing's 1/255 rounds to 1/128 and doubles every
# pixel, and the circuit's class disagrees with the model's on half the
# triggers; at 2^8 it agrees on all of them, at no extra rows.
DEFAULT_INPUT_SCALE = 8
NUM_INNER_COLS = 2
ONNX_OPSET = 13
CIRCUIT_TAG = "wmark/zk/circuit/v1"
CALIBRATION_TAG = "wmark/zk/calibration/v1"
CALIBRATION_PATTERNS = 4
# Peak memory of a process that sets up and proves with ezkl 23 (2 inner
# columns): Python, torch and ezkl, then per row of the circuit; measured
# (benchmarks/zk.py) at 1.7 GB for 2^15 rows and 5.0 GB for 2^17.
BASE_BYTES = 650 * 10**6
BYTES_PER_ROW = 33 * 1024
# CPU seconds (all threads) one proof takes per row of the circuit's height:
# least squares over circuits of 2^11, 2^13 and 2^15 rows, 690 us a row and
# no fixed part (benchmarks/zk.py --models tiny,zk4,digits-wide, in
# benchmarks/results/zk-cost.json; that fit puts the peak memory at 0.58 GB
# plus 32.7 KiB a row, beside the constants above).
CPU_SECONDS_PER_ROW = 690e-6
# Rows ezkl spends per hidden input element on its Poseidon hash (measured).
POSEIDON_ROWS_PER_ELEMENT = 41
# An SRS file: the 4-byte little-endian log2 of its size, 2^k pairs of
# uncompressed G1 points (monomial and Lagrange bases), then two G2 points.
SRS_HEADER_BYTES, SRS_BYTES_PER_ROW, SRS_TRAILER_BYTES = 4, 128, 256
# ezkl's range-check decompositions (base, legs), its default first; each covers at least 2^28.
DECOMPOSITIONS = ((1 << 14, 2), (1 << 10, 3))
SETTINGS_NAME, COMPILED_NAME = "settings.json", "model.compiled"


class UnsupportedModel(InvalidInput):
    """A suspect model that cannot be turned into a circuit (an operator ezkl lacks)."""


class CircuitTooLarge(InvalidInput):
    """A circuit whose proving would not fit in the memory allowed."""


def ezkl_module() -> ModuleType:
    """ezkl, or a clear error naming the extra to install."""
    try:
        import ezkl
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise InvalidInput(f"zero-knowledge verification needs ezkl: {INSTALL_HINT}") from None
    # ezkl logs its calibration report at WARNING through Python's logging; errors come back as exceptions.
    logging.getLogger("ezkl").setLevel(logging.ERROR)
    version = getattr(ezkl, "__version__", None)
    if version != EZKL_VERSION:
        raise InvalidInput(f"ezkl {version} is installed, but wmark's circuits and hashes are pinned to "
                           f"{EZKL_VERSION}: {INSTALL_HINT}")
    return ezkl


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence what ezkl's Rust core prints on file descriptors 1 and 2
    (calibration tables, log lines); its errors come back as exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _ezkl_error(exc: BaseException) -> str:
    """ezkl's message on one bounded line."""
    text = " ".join(str(exc).split())
    return text[:400] or type(exc).__name__


# -- the hidden input and its commitment ------------------------------------------------------------------------------

def hidden_input(pixels: np.ndarray, salt: bytes) -> list[float]:
    """The circuit's input: uint8 pixels in C, H, W order, then one element per salt byte."""
    if pixels.dtype != np.uint8:
        raise InvalidInput(f"a hidden input takes uint8 pixels, not {pixels.dtype}")
    if len(salt) != SALT_BYTES:
        raise InvalidInput(f"a salt is {SALT_BYTES} bytes, not {len(salt)}")
    return [float(v) for v in pixels.reshape(-1)] + [float(b) for b in salt]


def input_hash(pixels: np.ndarray, salt: bytes, input_scale: int) -> bytes:
    """The Poseidon hash of the quantised hidden input, as the circuit's first public instance."""
    ezkl = ezkl_module()
    felts = [ezkl.float_to_felt(v, input_scale, ezkl.PyInputType.F32) for v in hidden_input(pixels, salt)]
    return bytes.fromhex(ezkl.poseidon_hash(felts)[0])


@dataclass(frozen=True)
class InputCommitter:
    """KeyGen's hasher (:class:`wmark.protocol.zk.InputHasher`): the hidden input of an
    item is its trigger image, rendered or imported, and its salt."""

    kind: TriggerKind
    input_shape: tuple[int, int, int]
    input_scale: int = DEFAULT_INPUT_SCALE

    def __call__(self, opening: ItemOpening, salt: bytes) -> bytes:
        return input_hash(item_image(opening, self.kind, self.input_shape), salt, self.input_scale)


# -- building the circuit ---------------------------------------------------------------------------------------------

class _Statement(nn.Module):
    """Hidden input (pixels, then salt) -> class index (or, with ``classify`` false,
    the network's output: the first piece of a split model); the salt only enters the hash."""

    def __init__(self, model: Classifier, *, classify: bool = True) -> None:
        super().__init__()
        self.model, self.classify = model, classify
        self.shape = model.config.input_shape
        self.pixels = pixel_count(self.shape)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        pixels = hidden[:, :self.pixels].reshape(1, *self.shape)
        out = self.model(pixels)
        return torch.argmax(out, dim=1, keepdim=True) if self.classify else out


@dataclass(frozen=True)
class Circuit:
    """A compiled circuit in ``directory`` (settings.json, model.compiled)."""

    directory: Path
    input_shape: tuple[int, int, int]
    input_scale: int
    num_rows: int
    logrows: int

    @property
    def settings(self) -> Path:
        return self.directory / SETTINGS_NAME

    @property
    def compiled(self) -> Path:
        return self.directory / COMPILED_NAME

    @property
    def memory_needed(self) -> int:
        return memory_for(self.logrows)

    @property
    def cost(self) -> "Cost":
        return Cost(self.num_rows, self.logrows)


def memory_for(logrows: int) -> int:
    """Bytes proving a circuit of 2^logrows rows takes at its peak (ezkl 23)."""
    return BASE_BYTES + (BYTES_PER_ROW << logrows)


def cpu_seconds_for(logrows: int) -> float:
    """CPU seconds one proof of a circuit of 2^logrows rows takes (ezkl 23)."""
    return CPU_SECONDS_PER_ROW * (1 << logrows)


@dataclass(frozen=True)
class Cost:
    """What proving takes, from the circuit's exact layout (docs/design.md section 4c):
    ezkl sizes every column to 2^logrows, so memory and time follow the
    height, not the rows used.  Items are proven one at a time, so the peak
    memory of k items is one item's and the time k times one's."""

    rows: int
    logrows: int

    @property
    def memory_bytes(self) -> int:
        return memory_for(self.logrows)

    @property
    def cpu_seconds(self) -> float:
        return cpu_seconds_for(self.logrows)

    def describe(self, k: int, cores: int | None = None) -> str:
        """One line: per item and for ``k`` items, the memory and the CPU time, and
        the least wall time that is on ``cores`` cores (ezkl proves on all of them)."""
        cores = max(1, cores or os.cpu_count() or 1)

        def both(cpu: float) -> str:
            return f"{_duration(cpu)} CPU (at least {_duration(cpu / cores)} on {cores} cores)"

        return (f"2^{self.logrows} rows ({self.rows:,} used); per item about {_gb(self.memory_bytes)} of memory "
                f"and {both(self.cpu_seconds)}; {k} item{'s' if k != 1 else ''} one at a time: "
                f"{both(k * self.cpu_seconds)}, at most {_gb(self.memory_bytes)} at once")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def logrows_for(rows: int) -> int:
    return max(MIN_LOGROWS, (rows - 1).bit_length())


def available_memory() -> int:
    """Memory this machine can give a proof now (MemAvailable), or its physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB"


def _check_fits(rows: int, how: str, memory_limit: int, logrows: int | None = None) -> None:
    """Refuse a circuit of ``rows`` rows (2^``logrows`` tall, or as few as hold them) over the memory limit."""
    logrows = logrows_for(rows) if logrows is None else logrows
    need = memory_for(logrows)
    if logrows > MAX_LOGROWS or need > memory_limit:
        raise CircuitTooLarge(
            f"the model's circuit has {how}{rows:,} rows (2^{logrows}); proving one trigger image would take "
            f"about {_gb(need)} of memory and {_gb(memory_limit)} is available"
            f"{'' if logrows <= MAX_LOGROWS else f', and wmark stops at 2^{MAX_LOGROWS} rows'}: "
            f"zero-knowledge verification is for small models (the sampled-subset protocol works for any)")


def estimate_rows(model: Classifier) -> int:
    """A lower estimate of the circuit's rows from the model's multiply-accumulates,
    cheap enough to refuse a large model before ezkl spends minutes on it."""
    macs = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            macs += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * \
                module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *model.config.input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    elements = pixel_count(model.config.input_shape) + SALT_BYTES
    return macs // NUM_INNER_COLS + POSEIDON_ROWS_PER_ELEMENT * elements


def _calibration_data(shape: tuple[int, int, int]) -> list[list[float]]:
    """Public, fixed inputs for ezkl's calibration, so both sides get the same
    settings: black, white and a few trigger-like patterns from public seeds."""
    images = [np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)]
    images += [render(tagged_hash(CALIBRATION_TAG, j.to_bytes(4, "big")), shape) for j in range(CALIBRATION_PATTERNS)]
    return [hidden_input(image, bytes([255 * (j % 2)]) * SALT_BYTES) for j, image in enumerate(images)]


def build_circuit(model: Classifier, directory: str | os.PathLike[str], *, input_scale: int,
                  memory_limit: int | None = None) -> Circuit:
    """Export ``model`` and compile its circuit into ``directory``.

    Refuses, before any expensive step, a model whose proof would need more
    than ``memory_limit`` bytes (default: the memory available now), and a
    model with an operator ezkl cannot compile.
    """
    ezkl = ezkl_module()
    limit = available_memory() if memory_limit is None else memory_limit
    model = model.eval()
    _check_fits(estimate_rows(model), "at least ", limit)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    onnx_path, data_path = root / "model.onnx", root / "calibration.json"
    statement = _Statement(model).eval()
    export_onnx(statement, (torch.zeros(1, statement.pixels + SALT_BYTES),), onnx_path, "the suspect model")
    data_path.write_text(json.dumps({"input_data": _calibration_data(model.config.input_shape)}))
    settings_path, compiled_path = root / SETTINGS_NAME, root / COMPILED_NAME
    # gen_settings lays the circuit out without proving anything: the exact row count, still cheap.
    _check_fits(_lay_out(ezkl, onnx_path, settings_path, input_scale), "", limit)
    with _compiling():
        ezkl.calibrate_settings(str(data_path), str(onnx_path), str(settings_path), "resources",
                                scales=[input_scale], scale_rebase_multiplier=[1], max_logrows=MAX_LOGROWS)
    settings = _canonical_settings(settings_path)
    # Calibration fixes the height (lookup tables and blinding rows included): the memory check that counts.
    _check_fits(settings["num_rows"], "", limit, settings["run_args"]["logrows"])
    with _compiling():
        ezkl.compile_circuit(str(onnx_path), str(compiled_path), str(settings_path))
    if settings["run_args"]["input_scale"] != input_scale:
        raise UnsupportedModel(f"ezkl calibrated the input scale to {settings['run_args']['input_scale']}, but "
                               f"the commitments are at scale {input_scale}")
    return Circuit(root, model.config.input_shape, input_scale, settings["num_rows"], settings["run_args"]["logrows"])


def export_onnx(module: nn.Module, examples: tuple[torch.Tensor, ...], path: Path, what: str, *,
                input_names: tuple[str, ...] = ("hidden",), output_name: str = "class") -> None:
    """``module`` to ONNX with the fixed options both sides use."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), examples, str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=list(input_names), output_names=[output_name])
    except Exception as exc:  # the exporter raises assorted errors for operators ONNX lacks
        raise UnsupportedModel(f"{what} cannot be exported to ONNX: {_ezkl_error(exc)}") from None


def _lay_out(ezkl: ModuleType, onnx_path: Path, settings_path: Path, input_scale: int,
             visibility: tuple[str, str] = ("hashed", "public")) -> int:
    """Write ezkl's settings for the circuit and return its row count.

    A circuit is at least as tall as its range-check table, ``decomp_base``
    rows: ezkl's default base 2^14 makes a circuit of a few thousand rows
    2^15 tall.  When the model's rows are fewer than the table's, a smaller
    base with one more leg (the same 2^28 range or more) is laid out too, and
    kept when it gives fewer rows in all; the choice depends on the model
    alone, so both sides make it alike."""
    chosen: tuple[int, int] | None = None  # rows, and log2 of the height they and the table need
    candidate = settings_path.with_suffix(".candidate.json")
    for base, legs in DECOMPOSITIONS:
        args = ezkl.PyRunArgs()
        (args.input_visibility, args.output_visibility), args.param_visibility = visibility, "fixed"
        args.input_scale, args.param_scale, args.num_inner_cols = input_scale, input_scale, NUM_INNER_COLS
        args.decomp_base, args.decomp_legs = base, legs
        with _compiling():
            ezkl.gen_settings(str(onnx_path), str(candidate), py_run_args=args)
        rows = json.loads(candidate.read_text())["num_rows"]
        height = logrows_for(max(rows, base))
        if chosen is not None and height >= chosen[1]:
            candidate.unlink()
            break
        os.replace(candidate, settings_path)
        chosen = (rows, height)
        if rows >= base:  # the model, not the table, sets the height: a smaller base only adds legs
            break
    assert chosen is not None
    return chosen[0]


def _canonical_settings(path: Path) -> dict:
    """ezkl lists the range checks and lookups a circuit needs in hash-set
    order, which changes from run to run and with it the circuit's layout and
    verification key; sorted, two builds of one model agree byte for byte."""
    settings = json.loads(path.read_text())
    for name in ("required_range_checks", "required_lookups"):
        settings[name] = sorted(settings[name], key=json.dumps)
    path.write_text(json.dumps(settings))
    return settings


@contextmanager
def _compiling() -> Iterator[None]:
    try:
        with _quiet():
            yield
    except Exception as exc:  # ezkl reports every failure as a RuntimeError carrying its message
        raise UnsupportedModel(f"ezkl cannot compile the suspect model: {_ezkl_error(exc)}") from None


def checked_model(model_dir: str | os.PathLike[str], *, input_shape: tuple[int, int, int],
                  num_classes: int) -> tuple[ModelRef, Classifier]:
    """The model in ``model_dir``, checked against the trigger set's shape and classes, and the reference naming it."""
    ref = ModelRef(sha256=model_file_digest(model_dir))
    model = load_model(model_dir)
    config = model.config
    if config.input_shape != input_shape or config.num_classes != num_classes:
        raise InvalidInput(f"{model_dir}: the model takes {config.shape_text} images in {config.num_classes} "
                           f"classes, the trigger set has {'x'.join(map(str, input_shape))} images in "
                           f"{num_classes} classes")
    return ref, model


def check_unchanged(model_dir: str | os.PathLike[str], ref: ModelRef) -> None:
    """The circuit must be of the model the reference names, not of files swapped in meanwhile."""
    if model_file_digest(model_dir) != ref.sha256:
        raise InvalidInput(f"{model_dir}: the model files changed while the circuit was being built")


# -- the structured reference string ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Srs:
    """A KZG structured reference string on disk, named by its SHA-256."""

    path: Path
    logrows: int
    sha256: bytes


def srs_size(logrows: int) -> int:
    return SRS_HEADER_BYTES + SRS_BYTES_PER_ROW * (1 << logrows) + SRS_TRAILER_BYTES


def read_srs(path: str | os.PathLike[str]) -> Srs:
    """Check an SRS file's header and size, and hash it."""
    p = Path(path)
    with open_input(p, what="SRS") as fh:
        header = fh.read(SRS_HEADER_BYTES)
        size = os.fstat(fh.fileno()).st_size
        logrows = int.from_bytes(header, "little") if len(header) == SRS_HEADER_BYTES else -1
        if not MIN_LOGROWS <= logrows <= MAX_LOGROWS or size != srs_size(logrows):
            raise DecodeError(f"{p}: not a KZG SRS file of 2^{MIN_LOGROWS} to 2^{MAX_LOGROWS} rows "
                              f"({size} bytes{f', header says 2^{logrows}' if logrows >= 0 else ''}; "
                              f"truncated or another format?)")
        fh.seek(0)
        sha = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return Srs(p, logrows, sha.digest())


def generate_srs(path: str | os.PathLike[str], logrows: int) -> Srs:
    """A fresh SRS from local randomness (ezkl's gen_srs; its secret is discarded,
    so it convinces whoever ran this: a designated-verifier setup)."""
    if not MIN_LOGROWS <= logrows <= MAX_LOGROWS:
        raise InvalidInput(f"SRS size 2^{logrows} outside 2^{MIN_LOGROWS}..2^{MAX_LOGROWS}")
    ezkl = ezkl_module()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with _quiet():
            ezkl.gen_srs(tmp, logrows)
        os.chmod(tmp, 0o644)  # public: it travels with the challenge
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return read_srs(target)


def check_srs(srs: Srs, circuit: Circuit) -> None:
    if srs.logrows < circuit.logrows:
        raise InvalidInput(f"{srs.path}: an SRS of 2^{srs.logrows} rows is too small for this circuit of "
                           f"2^{circuit.logrows}")


# -- setup, proving, verifying ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keys:
    """ezkl's keys for one circuit and SRS; the proving key is temporary."""

    verification_key: Path
    proving_key: Path
    circuit_sha256: bytes


@contextmanager
def _library_panics(doing: str) -> Iterator[None]:
    """ezkl's failures as :class:`InvalidInput`: its errors (RuntimeErrors carrying
    its message) and its panics (an SRS of zeros makes setup panic: a
    BaseException that ``except Exception`` misses), on one bounded line."""
    try:
        with _quiet():
            yield
    except BaseException as exc:
        if not (isinstance(exc, Exception) or is_library_failure(exc)):
            raise
        raise InvalidInput(f"{doing} ({type(exc).__name__}: {_ezkl_error(exc)})") from None


@contextmanager
def setup(circuit: Circuit, srs: Srs, *, keep_proving_key: bool = True) -> Iterator[Keys]:
    """Run ezkl's setup (deterministic given the circuit and the SRS) in a
    temporary directory that is deleted on exit, proving key and all (it is
    hundreds of MB).  Without ``keep_proving_key`` it goes as soon as it exists:
    a verifier needs only the verification key."""
    ezkl = ezkl_module()
    check_srs(srs, circuit)
    with tempfile.TemporaryDirectory(prefix="wmark-zk-keys-", dir=circuit.directory) as tmp:
        vk_path, pk_path = Path(tmp) / "vk.key", Path(tmp) / "pk.key"
        with _library_panics(f"ezkl setup failed with SRS {srs.path}"):
            ezkl.setup(str(circuit.compiled), str(vk_path), str(pk_path), srs_path=str(srs.path))
        if not keep_proving_key:
            pk_path.unlink()
        yield Keys(vk_path, pk_path, tagged_hash(CIRCUIT_TAG, vk_path.read_bytes()))


def prove_input(circuit: Circuit, keys: Keys, srs: Srs, inputs: list[list]) -> tuple[dict, dict]:
    """ezkl's witness and proof for the circuit on ``inputs`` (one flat list per
    input of the circuit: floats, or the field elements a witness lists).  With
    the keys and the SRS, the witness carries the commitments of the tensors of
    ``polycommit`` visibility, which the proof holds too."""
    ezkl = ezkl_module()
    with tempfile.TemporaryDirectory(prefix="wmark-zk-proof-", dir=circuit.directory) as tmp:
        data, witness, proof = Path(tmp) / "input.json", Path(tmp) / "witness.json", Path(tmp) / "proof.json"
        data.write_text(json.dumps({"input_data": inputs}))
        with _library_panics("ezkl could not prove this input"):
            ezkl.gen_witness(str(data), str(circuit.compiled), str(witness),
                             vk_path=str(keys.verification_key), srs_path=str(srs.path))
            ezkl.prove(str(witness), str(circuit.compiled), str(keys.proving_key), str(proof),
                       srs_path=str(srs.path))
        return json.loads(witness.read_text()), json.loads(proof.read_text())


def prove(circuit: Circuit, keys: Keys, srs: Srs, pixels: np.ndarray, salt: bytes) -> ZkStatement:
    """One proof that the circuit maps (pixels, salt) to its class."""
    if tuple(pixels.shape) != circuit.input_shape:
        raise InvalidInput(f"a {'x'.join(map(str, pixels.shape))} image for a circuit taking "
                           f"{'x'.join(map(str, circuit.input_shape))}")
    return _statement_of(prove_input(circuit, keys, srs, [hidden_input(pixels, salt)])[1])


def _statement_of(proof: dict) -> ZkStatement:
    """The public instances and the proof bytes of an ezkl proof of our circuit."""
    instances = proof.get("instances")
    if not (isinstance(instances, list) and len(instances) == 1 and isinstance(instances[0], list)
            and len(instances[0]) == 2):
        raise InvalidInput("ezkl's proof does not have the public instances [input hash, class] of a wmark circuit")
    input_felt, class_felt = (bytes.fromhex(v) for v in instances[0])
    return ZkStatement(input_hash=input_felt, predicted=int.from_bytes(class_felt, "little"),
                       proof=bytes(proof["proof"]))


def class_felt(predicted: int) -> bytes:
    """A class as the circuit's public output instance."""
    return predicted.to_bytes(FELT_BYTES, "little")


def verify_proof(circuit: Circuit, keys: Keys, srs: Srs, instances: list[bytes], proof: bytes, *,
                 what: str = "the proof") -> None:
    """Raise :class:`InvalidProof` unless ``proof`` verifies for the circuit with these public instances."""
    ezkl = ezkl_module()
    if any(len(v) != FELT_BYTES for v in instances):
        raise InvalidProof(f"a public instance is {FELT_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="wmark-zk-verify-", dir=circuit.directory) as tmp:
        path = Path(tmp) / "proof.json"
        path.write_text(json.dumps({"instances": [[v.hex() for v in instances]], "proof": list(proof)}))
        try:
            with _quiet():
                ok = ezkl.verify(str(path), str(circuit.settings), str(keys.verification_key),
                                 srs_path=str(srs.path))
        except Exception as exc:  # ezkl raises, rather than returning False, on most failures
            raise InvalidProof(f"{what} does not verify ({_ezkl_error(exc)})") from None
    if ok is not True:
        raise InvalidProof(f"{what} does not verify")


def verify(circuit: Circuit, keys: Keys, srs: Srs, statement: ZkStatement) -> None:
    """Raise :class:`InvalidProof` unless ``statement.proof`` proves that the
    circuit maps the input hashed to ``statement.input_hash`` to ``statement.predicted``."""
    verify_proof(circuit, keys, srs, [statement.input_hash, class_felt(statement.predicted)], statement.proof)
