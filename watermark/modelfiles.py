"""A model on disk, read without torch: ``MODEL_DIR/model.json`` plus ``MODEL_DIR/model.safetensors``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmark.errors import DecodeError, InvalidInput
from wmark.files import open_input, read_bounded
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

# A model answers a key's queries, so it takes the shapes and class counts a key may name.
from wmark.protocol.limits import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE
from wmark.text import untrusted
from wmark.watermark.archsizes import channel_problem, check_arch, state_size

CONFIG_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_TYPE = "wmark/model"
CONFIG_VERSION = 2
# Version 1 differs only in the vk digest's encoding (base64url).
READ_CONFIG_VERSIONS = (1, 2)
MAX_CONFIG_BYTES = 64 * 1024
MAX_WEIGHTS_BYTES = 4 * 1024 ** 3
MAX_CLASS_NAME = 200
# ResNet-50 has 25.6 million parameters and ViT-B/16 86.6 million; a network
# beyond this (ViT-H/14 has 632 million) is refused from its architecture
# before it is built or its weights read: loading it would need gigabytes.
MAX_PARAMETERS = 100_000_000
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
    def from_json(cls, data: bytes, *, what: str) -> ModelConfig:
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


@dataclass(frozen=True)
class ModelFiles:
    """A model directory that passed the cheap checks: its config parsed, the
    architecture's size worked out from a table, and the safetensors header read
    and its tensors counted against it.  No weight has been read yet, and torch
    has not been imported."""

    root: Path
    config: ModelConfig
    config_bytes: bytes
    weights_size: int  # what the header says the file holds, checked against the file's size
    tensors: dict[str, tuple[int, ...]]  # each tensor's shape, as the header gives it

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS_NAME


def inspect_files(model_dir: str | os.PathLike[str]) -> ModelFiles:
    """The cheap checks of a model directory (docs/design.md section 5), in order of
    cost and all before torch is imported: regular files of bounded size, the config,
    the architecture's size from :mod:`wmark.watermark.archsizes` against the limit,
    the safetensors header (8 bytes of length, then bounded JSON) against it."""
    root = Path(model_dir)
    if not root.is_dir():
        raise InvalidInput(f"{root}: not a model directory (expected {CONFIG_NAME} and {WEIGHTS_NAME} in it)")
    config_bytes = read_bounded(root / CONFIG_NAME, max_bytes=MAX_CONFIG_BYTES, what="model config")
    config = ModelConfig.from_json(config_bytes, what=str(root / CONFIG_NAME))
    if problem := channel_problem(config.arch, config.input_shape):
        raise InvalidInput(f"{root / CONFIG_NAME}: {problem}")
    numbers = state_size(config.arch, config.num_classes, config.input_shape)
    if numbers > MAX_PARAMETERS:
        raise InvalidInput(f"{root / CONFIG_NAME}: {config.describe()} has {numbers:,} parameters, more than "
                           f"the limit of {MAX_PARAMETERS:,}; refusing to load it")
    what = str(root / WEIGHTS_NAME)
    with open_input(root / WEIGHTS_NAME, what="model weights") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_WEIGHTS_BYTES:
            raise InvalidInput(f"{what}: model weights of {size} bytes exceed the limit of {MAX_WEIGHTS_BYTES}")
        head = fh.read(9)
        _check_safetensors(head, size, what=what)
        header_size = int.from_bytes(head[:8], "little")  # at most MAX_HEADER_BYTES: checked just above
        header = head[8:] + fh.read(header_size - 1)
    tensors, data_size = _read_header(header, what=what)
    if 8 + header_size + data_size != size:
        raise DecodeError(f"{what}: the header describes {8 + header_size + data_size} bytes, the file has {size}")
    held = sum(math.prod(shape) for shape in tensors.values())
    if held != numbers:
        raise DecodeError(f"{what}: holds {held:,} numbers, the config's {config.describe()} has {numbers:,}")
    return ModelFiles(root, config, config_bytes, size, tensors)


# Bytes per element of each safetensors dtype (the format's specification).
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _read_header(header: bytes, *, what: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """A safetensors header's tensors (name to shape) and the size of the data it describes,
    each tensor's extent checked against its shape and dtype."""
    obj = parse_json(header, what=f"{what}: header", max_bytes=MAX_HEADER_BYTES)
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: the safetensors header is not an object")
    obj.pop("__metadata__", None)
    tensors: dict[str, tuple[int, ...]] = {}
    end = 0
    for name, info in obj.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d <= MAX_WEIGHTS_BYTES for d in shape):
            raise DecodeError(f"{what}: tensor {untrusted(name, limit=64)} has no valid shape")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and 0 <= o <= MAX_WEIGHTS_BYTES for o in offsets)):
            raise DecodeError(f"{what}: tensor {untrusted(name, limit=64)} has no valid data offsets")
        if dtype not in _DTYPE_BYTES or offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise DecodeError(f"{what}: tensor {untrusted(name, limit=64)}'s data does not fit its shape and dtype")
        tensors[name] = tuple(shape)
        end = max(end, offsets[1])
    return tensors, end


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


