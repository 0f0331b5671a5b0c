"""Where tensors go: CUDA when present, else the CPU (``--device`` on every command that runs a model)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from wmark.errors import InvalidInput

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_HELP = "where to run the model: auto (CUDA when a GPU is visible, else the CPU), cpu, cuda or cuda:N"
_CUDA_INDEX = re.compile(r"cuda:(\d{1,3})")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is ``cuda`` when a GPU is visible; asking for a GPU torch cannot see is an error."""
    import torch  # here, not above: the option alone must not load torch (lazy commands)

    indexed = _CUDA_INDEX.fullmatch(name)
    if name not in ("auto", "cpu", "cuda") and indexed is None:
        raise InvalidInput(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput(f"--device {name} asked for, but torch sees no CUDA GPU")
        count = torch.cuda.device_count()
        if indexed is not None and int(indexed.group(1)) >= count:
            raise InvalidInput(f"--device {name} asked for, but torch sees {count} GPU{'s' if count != 1 else ''} "
                               f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    return torch.device(name)


def device_name(text: str) -> str:
    """An argparse ``type=``: refuse a malformed name at parse time; whether the GPU exists is
    asked only when a model is about to run (``pick_device``), so ``--help`` never touches CUDA."""
    if text in ("auto", "cpu", "cuda") or _CUDA_INDEX.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"unknown device {text!r} (choose from {', '.join(DEVICE_CHOICES)})")


def add_device_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--device", type=device_name, default="auto", metavar="DEVICE", help=DEVICE_HELP)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU operations on ``count`` intra-op threads inside the block, restoring the
    caller's count after: small models run faster on one thread than on threads that wait for
    cores other processes hold."""
    import torch  # here, not above: importing this module must not load torch (lazy commands)

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
