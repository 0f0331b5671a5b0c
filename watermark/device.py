"""Where tensors go: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from wmark.errors import InvalidInput

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is ``cuda`` when a GPU is visible; asking for ``cuda`` without one is an error."""
    if name not in DEVICE_CHOICES:
        raise InvalidInput(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("--device cuda asked for, but torch sees no CUDA GPU")
    return torch.device(name)
