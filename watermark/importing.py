"""Bring your own model (docs/design.md section 5, "Bringing your own model"):
a trained network's weights, checked against an architecture, become a model
directory like the ones ``wmark embed`` writes.

Two weight formats are read:

* safetensors (``safetensors.torch.save_file(net.state_dict(), ...)``);
* a PyTorch ``state_dict`` saved with ``torch.save``, read with
  ``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which
  builds tensors and plain containers and refuses every other object, so a
  file holding a pickled module or a code-running payload is refused, never
  run.  This is the only place wmark reads a ``torch.save`` file; model
  directories hold safetensors only.

Checkpoints often wrap the ``state_dict`` (``{"state_dict": ...}``,
``{"model_state_dict": ...}``, ``{"model": ...}``) or carry the ``module.``
prefix of ``nn.DataParallel``; both are unwrapped, and said so.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from wmark.errors import DecodeError, InvalidInput
from wmark.files import read_bounded
from wmark.watermark.modelfiles import MAX_WEIGHTS_BYTES, ModelConfig, looks_like_safetensors
from wmark.watermark.modelio import Classifier, check_tensors, new_model

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
PARALLEL_PREFIX = "module."
MAX_CLASS_NAMES_BYTES = 4 * 1024 * 1024
# torch.save writes a zip archive; PyTorch before 1.6 wrote a bare pickle.
_TORCH_MAGIC = (b"PK\x03\x04", *(bytes([0x80, protocol]) for protocol in range(2, 6)))


@dataclass(frozen=True)
class Imported:
    model: Classifier
    # What was done to the file's tensors to fit them, in words (unwrapping, prefixes).
    notes: tuple[str, ...]


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """The tensors in a safetensors or ``torch.save`` file, and notes on any unwrapping."""
    what = str(path)
    data = read_bounded(path, max_bytes=MAX_WEIGHTS_BYTES, what="weights")
    if looks_like_safetensors(data[:9], len(data)):
        try:
            return load_tensors(data), ()
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise DecodeError(f"{what}: not a valid safetensors file ({exc})") from None
    if not data.startswith(_TORCH_MAGIC):
        raise DecodeError(f"{what}: neither a safetensors file nor a torch.save file")
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DecodeError(f"{what}: holds objects other than tensors, which torch.load(weights_only=True) refuses "
                          f"to build; save the network's weights instead: torch.save(net.state_dict(), FILE)") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise DecodeError(f"{what}: not a readable torch.save file ({str(exc).splitlines()[0][:200]})") from None
    return _state_dict(loaded, what=what)


def _state_dict(loaded: object, *, what: str) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    notes: list[str] = []
    if isinstance(loaded, Mapping) and not _all_tensors(loaded):
        key = next((k for k in WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if key is None:
            keys = ", ".join(repr(k) for k in list(loaded)[:5])
            raise DecodeError(f"{what}: a dictionary ({keys}) that is not a state_dict and holds none under "
                              f"{', '.join(map(repr, WRAPPER_KEYS))}")
        notes.append(f"took the state_dict under {key!r}")
        loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded or not _all_tensors(loaded):
        raise DecodeError(f"{what}: holds {type(loaded).__name__}, not a state_dict (names mapped to tensors); "
                          f"save one with torch.save(net.state_dict(), FILE)")
    tensors = {str(k): v for k, v in loaded.items()}
    if all(k.startswith(PARALLEL_PREFIX) for k in tensors):
        tensors = {k[len(PARALLEL_PREFIX):]: v for k, v in tensors.items()}
        notes.append(f"removed the {PARALLEL_PREFIX!r} prefix of nn.DataParallel")
    return tensors, tuple(notes)


def _all_tensors(obj: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def import_weights(path: str | os.PathLike[str], config: ModelConfig) -> Imported:
    """A :class:`Classifier` of ``config``'s architecture holding the weights at ``path``.

    Every name, shape and kind is checked against the architecture first (the
    message names the first few misfits), and every float weight must be finite.
    """
    tensors, notes = read_weights(path)
    # The random initial weights are about to be replaced: leave the caller's random stream alone.
    with torch.random.fork_rng(devices=[]):
        model = new_model(config)
    check_tensors(tensors, model.net.state_dict(), what=str(path), fit=config.describe())
    bad = [name for name, t in tensors.items() if t.dtype.is_floating_point and not bool(torch.isfinite(t).all())]
    if bad:
        raise DecodeError(f"{path}: tensor{'s' if len(bad) > 1 else ''} {', '.join(bad[:3])} hold NaN or infinite "
                          f"values")
    model.net.load_state_dict(tensors, strict=True)
    return Imported(model.eval(), notes)


def read_class_names(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names from a UTF-8 text file, one a line in class order (blank lines at the end ignored)."""
    data = read_bounded(path, max_bytes=MAX_CLASS_NAMES_BYTES, what="class names")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: class names must be UTF-8 text, one name a line") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(lines)


def parse_channel_values(text: str, channels: int, *, what: str) -> tuple[float, ...]:
    """``0.5`` (every channel) or ``0.485,0.456,0.406`` (one per channel)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"{what} {text!r}: give one number, or {channels} separated by commas") from None
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise InvalidInput(f"{what} {text!r}: {len(values)} values for a {channels}-channel input")
    return values

