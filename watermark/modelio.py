"""Models as torch modules: built, saved and loaded (docs/design.md section 5).

The files themselves (``model.json``, ``model.safetensors``) and the cheap
checks that need no torch live in :mod:`wmark.watermark.modelfiles`; here the
network is built around them.  Loading never unpickles, and every tensor's
name, shape and dtype is checked against the architecture the config names
before any weight is used.  A model directory is written whole into a
temporary sibling and renamed into place, so an interrupted run leaves the old
model or none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from wmark.errors import DecodeError, InvalidInput, ModelOracleError
from wmark.files import atomic_write, open_input, read_bounded
from wmark.protocol.hazmat.hashing import TaggedHasher
from wmark.text import untrusted
from wmark.watermark.modelfiles import (  # re-exported: the names callers have always imported from here
    CONFIG_NAME,
    WEIGHTS_NAME,
    ModelConfig,
    ModelFiles,
    Preprocessing,
    inspect_files,
)
from wmark.watermark.models import build_model, state_shapes

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "Classifier", "ModelConfig", "ModelFiles", "Preprocessing", "check_fits",
           "check_tensors", "check_writable", "inspect_model", "load_model", "model_file_digest", "new_model",
           "save_model"]
MODEL_DIGEST_TAG = "wmark/model/v1"
DIGEST_CHUNK = 1024 * 1024


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


def inspect_model(model_dir: str | os.PathLike[str] | ModelFiles) -> ModelFiles:
    """:func:`wmark.watermark.modelfiles.inspect_files` (unless ``model_dir`` is what it
    returned already: a command's model options are inspected before torch is
    imported, and not read and parsed twice), then every tensor's name and shape in
    the header against the architecture's, built on the meta device."""
    files = model_dir if isinstance(model_dir, ModelFiles) else inspect_files(model_dir)
    expected = state_shapes(files.config.arch, files.config.num_classes, files.config.input_shape)
    if problem := _misfit(files.tensors, expected, fit=f"the config's {files.config.describe()}"):
        raise DecodeError(f"{files.weights_path}: {problem}")
    return files


def load_model(model_dir: str | os.PathLike[str] | ModelFiles) -> Classifier:
    """Rebuild a model from its directory, or from the directory's :class:`ModelFiles`
    (on the CPU, in eval mode)."""
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


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], *,
                  what: str, fit: str) -> None:
    """Refuse ``tensors`` unless they have exactly the names, shapes and kinds of
    ``expected`` (a network's ``state_dict``); the message names the first few misfits."""
    if problem := _misfit({name: tuple(t.shape) for name, t in tensors.items()},
                          {name: tuple(t.shape) for name, t in expected.items()}, fit=fit):
        raise DecodeError(f"{what}: {problem}")
    for name, want in expected.items():
        got = tensors[name]
        if got.dtype.is_floating_point != want.dtype.is_floating_point or (
                not want.dtype.is_floating_point and got.dtype != want.dtype):
            raise DecodeError(f"{what}: tensor {name} is {got.dtype}, {fit} needs {want.dtype}")


def _misfit(got: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], *, fit: str) -> str | None:
    """Why tensors of these names and shapes do not fit ``expected`` (the first few
    names missing or unexpected, else the first few shapes that differ), or None.
    The names and shapes came from a file: escaped, and cut short."""
    def first(items: list[str], sep: str = ", ") -> str:
        return sep.join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        parts = [f"{label} {first(names)}" for label, names in (("missing", missing), ("unexpected", extra)) if names]
        return f"tensors do not fit {fit}: {untrusted('; '.join(parts), limit=300)}"
    shapes = [f"{name} has shape {list(got[name][:8])}, needs {list(want)}"
              for name, want in expected.items() if got[name] != want]
    if shapes:
        return f"tensor shapes do not fit {fit}: {untrusted(first(shapes, '; '), limit=300)}"
    return None
