"""A model on disk: ``MODEL_DIR/model.json`` plus ``MODEL_DIR/model.safetensors``.

``model.json`` is the :class:`ModelConfig` as canonical JSON (RFC 8785)::

    {"arch":"small_cnn","input_shape":[1,8,8],"num_classes":10,
     "preprocessing":{"mean":[0.3052],"std":[0.3758]},
     "type":"wmark/model","version":2,"vk_digest":"<64 hex digits>" or null}

Version 1 wrote the digest in base64url; it is still read (docs/design.md
section 6: digests are hex wherever people or pipelines read them).

plus ``"class_names": ["cat", ...]`` when the model's classes have names
(``wmark import-model --class-names``); without names the field is absent, so
the files, and with them every model digest, are as before it existed.

``model.safetensors`` holds the network's tensors under the names of its
``state_dict``.  Loading never unpickles: a pickle or ``torch.save`` zip is
recognised by its first bytes and refused, and every tensor's name, shape and
dtype is checked against the architecture the config names before any weight
is used.  A model directory is written whole into a temporary sibling and
renamed into place, so an interrupted run leaves the old model or none.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from wmark.errors import DecodeError, InvalidInput, ModelOracleError
from wmark.files import atomic_write, open_input, read_bounded
from wmark.protocol.hazmat.encoding import (
    b64u_decode,
    canonical_json,
    expect_header,
    field,
    hex_decode,
    int_field,
    only_fields,
    parse_json,
)
from wmark.protocol.hazmat.hashing import TaggedHasher

# A model answers a key's queries, so it takes the shapes and class counts a key may name.
from wmark.protocol.keys import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE
from wmark.watermark.models import build_model, check_arch

CONFIG_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_TYPE = "wmark/model"
CONFIG_VERSION = 2
# Version 1 differs only in the vk digest's encoding (base64url).
READ_CONFIG_VERSIONS = (1, 2)
MODEL_DIGEST_TAG = "wmark/model/v1"
MAX_CONFIG_BYTES = 64 * 1024
MAX_WEIGHTS_BYTES = 4 * 1024 ** 3
MAX_CLASS_NAME = 200
# ResNet-50 has 25.6 million parameters and ViT-B/16 86.6 million; a network
# beyond this (ViT-H/14 has 632 million) is refused from its architecture
# before it is built or its weights read: loading it would need gigabytes.
MAX_PARAMETERS = 100_000_000
DIGEST_CHUNK = 1024 * 1024
# A safetensors file opens with the 8-byte little-endian length of its JSON
# header; more than this is not a header but a file of some other kind.
MAX_HEADER_BYTES = 16 * 1024 * 1024
_PICKLE_MAGIC = (
    (b"PK\x03\x04", "a zip archive (the format of torch.save) holding a pickle"),
    *((bytes([0x80, protocol]), f"a Python pickle (protocol {protocol})") for protocol in range(2, 6)),
)


@dataclass(frozen=True)
class Preprocessing:
    """uint8 pixels ``p`` become ``(p / 255 - mean[c]) / std[c]`` per channel ``c``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise InvalidInput(f"preprocessing has {len(self.mean)} means but {len(self.std)} standard deviations")
        if not all(math.isfinite(m) for m in self.mean) or not all(math.isfinite(s) and s > 0 for s in self.std):
            raise InvalidInput("preprocessing needs finite means and positive finite standard deviations")


@dataclass(frozen=True)
class ModelConfig:
    """What a model is: everything needed to rebuild it around its weights."""

    arch: str
    num_classes: int
    input_shape: tuple[int, int, int]
    preprocessing: Preprocessing
    # The digest of the verification key whose trigger set was embedded, if any.
    vk_digest: bytes | None = None
    # Class i's name, when the owner gave names (import-model --class-names).
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        c, h, w = self.input_shape
        if not (1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise InvalidInput(f"input shape {self.shape_text} outside [1..{MAX_CHANNELS}]x[1..{MAX_SIDE}]^2")
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise InvalidInput(f"number of classes {self.num_classes} outside [2, {MAX_CLASSES}]")
        if len(self.preprocessing.mean) != c:
            raise InvalidInput(f"preprocessing is for {len(self.preprocessing.mean)} channels, the input has {c}")
        if self.vk_digest is not None and len(self.vk_digest) != 32:
            raise InvalidInput("a vk digest is 32 bytes")
        if self.class_names is not None:
            check_class_names(self.class_names, self.num_classes)

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.input_shape))

    def describe(self) -> str:
        return f"{self.arch}, {self.num_classes} classes, {self.shape_text} input"

    def to_json(self) -> bytes:
        names = {} if self.class_names is None else {"class_names": list(self.class_names)}
        return canonical_json({
            **names,
            "type": CONFIG_TYPE,
            "version": CONFIG_VERSION,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "preprocessing": {"mean": list(self.preprocessing.mean), "std": list(self.preprocessing.std)},
            "vk_digest": self.vk_digest.hex() if self.vk_digest is not None else None,
        })

    @classmethod
    def from_json(cls, data: bytes, *, what: str) -> "ModelConfig":
        obj = parse_json(data, what=what, max_bytes=MAX_CONFIG_BYTES)
        version = obj.get("version") if isinstance(obj, dict) else None
        obj = expect_header(obj, type_=CONFIG_TYPE, what=what,
                            version=version if version in READ_CONFIG_VERSIONS else CONFIG_VERSION)
        only_fields(obj, {"type", "version", "arch", "num_classes", "input_shape", "preprocessing", "vk_digest",
                          "class_names"},
                    what=what)
        arch = field(obj, "arch", str, what=what)
        check_arch(arch)
        shape = field(obj, "input_shape", list, what=what)
        if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise DecodeError(f"{what}: input_shape must be [C, H, W]")
        pre = field(obj, "preprocessing", dict, what=what)
        only_fields(pre, {"mean", "std"}, what=f"{what}: preprocessing")
        digest = obj.get("vk_digest")
        names = obj.get("class_names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise DecodeError(f"{what}: class_names must be a list of strings")
        try:
            return cls(
                arch=arch,
                num_classes=int_field(obj, "num_classes", what=what, low=2, high=MAX_CLASSES),
                input_shape=(shape[0], shape[1], shape[2]),
                preprocessing=Preprocessing(_floats(pre, "mean", what=what), _floats(pre, "std", what=what)),
                vk_digest=None if digest is None else (
                    b64u_decode(digest, what=f"{what}: vk_digest", size=32) if version == 1
                    else hex_decode(digest, what=f"{what}: vk_digest", size=32)),
                class_names=None if names is None else tuple(names),
            )
        except DecodeError:
            raise
        except InvalidInput as exc:
            raise DecodeError(f"{what}: {exc}") from None


def check_class_names(names: tuple[str, ...], num_classes: int) -> None:
    """One short, printable, distinct name per class."""
    if len(names) != num_classes:
        raise InvalidInput(f"{len(names)} class names for {num_classes} classes")
    for i, name in enumerate(names):
        if not name or len(name) > MAX_CLASS_NAME or not name.isprintable() or name != name.strip():
            raise InvalidInput(f"class name {i} ({name[:40]!r}) must be 1 to {MAX_CLASS_NAME} printable characters "
                               f"without surrounding spaces")
    if len(set(names)) != len(names):
        raise InvalidInput(f"class names repeat: {sorted({n for n in names if names.count(n) > 1})[:3]}")


def _floats(obj: dict[str, Any], name: str, *, what: str) -> tuple[float, ...]:
    values = field(obj, name, list, what=f"{what}: preprocessing")
    if not 1 <= len(values) <= MAX_CHANNELS or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise DecodeError(f"{what}: preprocessing {name} must be 1 to {MAX_CHANNELS} numbers")
    return tuple(float(v) for v in values)


class Classifier(nn.Module):
    """A network behind its preprocessing: pixels in, logits out.

    ``forward`` takes pixels on the 0..255 scale, N x C x H x W, as uint8 or
    as float (float lets attacks and the margin scheme take gradients with
    respect to the input).  Training, evaluation and the verifier's queries
    all go through it, so trigger images and task images are preprocessed
    alike.
    """

    # Buffers registered in __init__; declared so that they read as tensors, not as
    # whatever nn.Module.__getattr__ may return.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: ModelConfig, net: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.net = net
        shape = (1, len(config.preprocessing.mean), 1, 1)
        # Not persistent: the preprocessing lives in model.json, not among the weights.
        self.register_buffer("mean", torch.tensor(config.preprocessing.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(config.preprocessing.std).view(shape), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net((pixels.float() / 255.0 - self.mean) / self.std)


def new_model(config: ModelConfig) -> Classifier:
    """A freshly initialised :class:`Classifier` (seed torch's RNG first for a repeatable one)."""
    return Classifier(config, build_model(config.arch, config.num_classes, config.input_shape))


def check_writable(model_dir: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Raise unless :func:`save_model` may write ``model_dir`` (checked before a long training run too)."""
    target = Path(model_dir)
    if not target.exists():
        return
    if not target.is_dir():
        raise InvalidInput(f"{target}: exists and is not a directory")
    contents = {p.name for p in target.iterdir()}
    if contents and not overwrite:
        raise InvalidInput(f"{target}: already exists; choose another directory or replace it (--force)")
    if contents - {CONFIG_NAME, WEIGHTS_NAME}:
        raise InvalidInput(f"{target}: holds files other than a model; refusing to replace it")


def save_model(model_dir: str | os.PathLike[str], model: Classifier, *, overwrite: bool = False) -> None:
    """Write ``model`` as a model directory, all at once.

    An existing directory is replaced only with ``overwrite`` and only if it
    holds nothing but a model, so a mistyped path cannot delete other files.
    """
    target = Path(model_dir)
    check_writable(target, overwrite=overwrite)
    weights = save_tensors({k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    retired = staging.with_suffix(".old")
    try:
        atomic_write(staging / WEIGHTS_NAME, weights)
        atomic_write(staging / CONFIG_NAME, model.config.to_json())
        staging.chmod(0o755)
        replacing = target.exists() and any(target.iterdir())
        if replacing:
            os.replace(target, retired)
        try:
            os.replace(staging, target)
        except BaseException:
            if replacing:
                os.replace(retired, target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


@dataclass(frozen=True)
class ModelFiles:
    """A model directory that passed the cheap checks: its config parsed, the
    architecture's size worked out without building it, and the safetensors
    header read and matched against the architecture's tensors.  No weight
    has been read yet."""

    root: Path
    config: ModelConfig
    config_bytes: bytes
    weights_size: int  # what the header says the file holds, checked against the file's size

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS_NAME


def inspect_model(model_dir: str | os.PathLike[str]) -> ModelFiles:
    """The cheap checks of a model directory (docs/design.md section 5), in order of cost:
    regular files of bounded size, the config, the architecture's parameter count
    (on torch's meta device: no memory), the safetensors header against it."""
    root = Path(model_dir)
    if not root.is_dir():
        raise InvalidInput(f"{root}: not a model directory (expected {CONFIG_NAME} and {WEIGHTS_NAME} in it)")
    config_bytes = read_bounded(root / CONFIG_NAME, max_bytes=MAX_CONFIG_BYTES, what="model config")
    config = ModelConfig.from_json(config_bytes, what=str(root / CONFIG_NAME))
    expected = architecture_shapes(config)
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise InvalidInput(f"{root / CONFIG_NAME}: {config.describe()} has {parameters:,} parameters, more than "
                           f"the limit of {MAX_PARAMETERS:,}; refusing to load it")
    what = str(root / WEIGHTS_NAME)
    with open_input(root / WEIGHTS_NAME, what="model weights") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_WEIGHTS_BYTES:
            raise InvalidInput(f"{what}: model weights of {size} bytes exceed the limit of {MAX_WEIGHTS_BYTES}")
        head = fh.read(9)
        _check_safetensors(head, size, what=what)
        header_size = int.from_bytes(head[:8], "little")
        header = head[8:] + fh.read(header_size - 1)
    data_size = _check_header(header, expected, what=what, config=config)
    if 8 + header_size + data_size != size:
        raise DecodeError(f"{what}: the header describes {8 + header_size + data_size} bytes, the file has {size}")
    return ModelFiles(root, config, config_bytes, size)


def architecture_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor the config's network has, worked out on torch's
    meta device: no memory and no initialisation, whatever the architecture's size."""
    with torch.device("meta"):
        net = build_model(config.arch, config.num_classes, config.input_shape)
    return {name: tuple(t.shape) for name, t in net.state_dict().items()}


def _check_header(header: bytes, expected: dict[str, tuple[int, ...]], *, what: str, config: ModelConfig) -> int:
    """Check a safetensors header against the architecture's tensors; the size of the data it describes."""
    obj = parse_json(header, what=f"{what}: header", max_bytes=MAX_HEADER_BYTES)
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: the safetensors header is not an object")
    obj.pop("__metadata__", None)
    fit = f"the config's {config.describe()}"
    missing, extra = sorted(set(expected) - set(obj)), sorted(set(obj) - set(expected))
    if missing or extra:
        parts = [f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", extra)) if names]
        raise DecodeError(f"{what}: tensors do not fit {fit}: {'; '.join(parts)}")
    end = 0
    for name, want in expected.items():
        info = obj[name]
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or tuple(shape) != want:
            raise DecodeError(f"{what}: tensor {name} has shape {str(shape)[:64]}, {fit} needs {list(want)}")
        offsets = info.get("data_offsets")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and 0 <= o <= MAX_WEIGHTS_BYTES for o in offsets)):
            raise DecodeError(f"{what}: tensor {name} has no valid data offsets")
        end = max(end, offsets[1])
    return end


def load_model(model_dir: str | os.PathLike[str]) -> Classifier:
    """Rebuild a model from its directory (on the CPU, in eval mode)."""
    files = inspect_model(model_dir)
    weights = read_bounded(files.weights_path, max_bytes=files.weights_size, what="model weights")
    # The random initial weights are about to be overwritten: draw them
    # without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        model = new_model(files.config)
    try:
        tensors = load_tensors(weights)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise DecodeError(f"{files.weights_path}: not a valid safetensors file ({exc})") from None
    check_tensors(tensors, model.net.state_dict(), what=str(files.weights_path),
                  fit=f"the config's {files.config.describe()}")
    model.net.load_state_dict(tensors, strict=True)
    return model.eval()


def check_fits(config: ModelConfig, data: Any, *, what: str) -> None:
    """Refuse ``data`` (a task or trigger set: anything with ``input_shape`` and
    ``num_classes``) unless it has the model's input shape and class count."""
    shape = "x".join(map(str, data.input_shape))
    if tuple(data.input_shape) != config.input_shape or data.num_classes != config.num_classes:
        raise InvalidInput(f"{what} has {shape} images in {data.num_classes} classes, but the model takes "
                           f"{config.shape_text} images in {config.num_classes} classes")


def model_file_digest(model_dir: str | os.PathLike[str]) -> bytes:
    """SHA-256 naming a model in a challenge: over model.json and model.safetensors, as stored.

    Only a directory that passes :func:`inspect_model` is digested, and the
    weights are hashed as they stream from the file, never held whole.
    """
    files = inspect_model(model_dir)
    hasher = TaggedHasher(MODEL_DIGEST_TAG)
    hasher.part(len(files.config_bytes), (files.config_bytes,))
    with open_input(files.weights_path, what="model weights") as fh:
        if os.fstat(fh.fileno()).st_size != files.weights_size:
            raise ModelOracleError(f"{files.weights_path}: changed while it was being read")
        try:
            hasher.part(files.weights_size, iter(lambda: fh.read(DIGEST_CHUNK), b""))
        except ValueError:
            raise ModelOracleError(f"{files.weights_path}: changed while it was being read") from None
    return hasher.digest()


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes whose first 9 bytes are ``head`` opens like
    a safetensors file: a plausible header length, then JSON."""
    if len(head) < 9:
        return False
    header = int.from_bytes(head[:8], "little")
    return 1 <= header <= min(MAX_HEADER_BYTES, size - 8) and head[8:9] == b"{"


def _check_safetensors(head: bytes, size: int, *, what: str) -> None:
    """``head``: the file's first 9 bytes; ``size``: its length."""
    if looks_like_safetensors(head, size):
        return
    for magic, kind in _PICKLE_MAGIC:
        if head.startswith(magic):
            raise DecodeError(
                f"{what}: is {kind}; wmark never unpickles a model, since unpickling runs code. Convert it "
                f"where you trust it: safetensors.torch.save_file(net.state_dict(), '{WEIGHTS_NAME}')")
    raise DecodeError(f"{what}: not a safetensors file")


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], *,
                  what: str, fit: str) -> None:
    """Refuse ``tensors`` unless they have exactly the names, shapes and kinds of
    ``expected`` (a network's ``state_dict``); the message names the first few misfits."""
    def first(names: list[str], sep: str = ", ") -> str:
        return sep.join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = [f"{label} {first(names)}" for label, names in (("missing", missing), ("unexpected", extra)) if names]
        raise DecodeError(f"{what}: tensors do not fit {fit}: {'; '.join(parts)}")
    shapes = [f"{name} has shape {list(tensors[name].shape)}, needs {list(want.shape)}"
              for name, want in expected.items() if tensors[name].shape != want.shape]
    if shapes:
        raise DecodeError(f"{what}: tensor shapes do not fit {fit}: {first(shapes, '; ')}")
    for name, want in expected.items():
        got = tensors[name]
        if got.dtype.is_floating_point != want.dtype.is_floating_point or (
                not want.dtype.is_floating_point and got.dtype != want.dtype):
            raise DecodeError(f"{what}: tensor {name} is {got.dtype}, {fit} needs {want.dtype}")
