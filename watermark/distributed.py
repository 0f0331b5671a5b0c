"""Data-parallel training under ``torchrun`` (docs/design.md section 5).

``torchrun --nproc-per-node N`` starts N copies of a command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` in their
environment.  :func:`process_group` joins them into one torch process group
(gloo on the CPU, nccl on CUDA, one GPU per local rank) for the length of a
command; outside torchrun it does nothing and the command runs as one process.

The training loop (:func:`wmark.watermark.train.train`) asks :func:`current`
whether it runs in such a group and, if so, wraps the model in
DistributedDataParallel and trains each rank on its share of every batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from wmark.errors import InvalidInput

# torchrun's environment; WORLD_SIZE alone marks a launched process.
WORLD_ENV = "WORLD_SIZE"
RANK_ENV = "RANK"
LOCAL_RANK_ENV = "LOCAL_RANK"
# torchrun's own ceiling is far higher; a world this big on one command is a typo.
MAX_WORLD = 4096


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` ranks training one model."""

    rank: int
    size: int

    @property
    def leader(self) -> bool:
        """Rank 0: the one that prints and writes files."""
        return self.rank == 0


SOLO = World(rank=0, size=1)


def launched() -> World:
    """The world torchrun's environment describes, or :data:`SOLO` outside it."""
    if WORLD_ENV not in os.environ:
        return SOLO
    try:
        size, rank = int(os.environ[WORLD_ENV]), int(os.environ.get(RANK_ENV, "0"))
    except ValueError:
        raise InvalidInput(f"{WORLD_ENV} and {RANK_ENV} must be integers (set by torchrun)") from None
    if not 1 <= size <= MAX_WORLD or not 0 <= rank < size:
        raise InvalidInput(f"{RANK_ENV}={rank} does not fit {WORLD_ENV}={size}")
    return World(rank=rank, size=size)


def current() -> World:
    """The process group this process trains in now (:data:`SOLO` if none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SOLO
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process on a machine takes its own GPU (its local rank)."""
    if device.type != "cuda" or LOCAL_RANK_ENV not in os.environ:
        return device
    index = int(os.environ[LOCAL_RANK_ENV])
    if index >= torch.cuda.device_count():
        raise InvalidInput(f"local rank {index} but only {torch.cuda.device_count()} CUDA devices: "
                           f"start at most that many processes per node")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join torchrun's process group for the block (gloo on the CPU, nccl on
    CUDA) and leave it afterwards; a single process joins nothing."""
    world = launched()
    if world.size == 1:
        yield world
        return
    if not dist.is_available():
        raise InvalidInput("this torch build has no torch.distributed; run without torchrun")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield current()
    finally:
        dist.destroy_process_group()
