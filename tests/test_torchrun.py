"""`wmark embed` under torchrun: two gloo processes on the CPU train the model one process trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wmark.watermark.cli import main as wmark_main
from wmark.watermark.distributed import SOLO, World, launched
from wmark.watermark.modelio import WEIGHTS_NAME, load_model

# Three epochs of the digits recipe: enough for the two runs to drift apart if
# the ranks did not split each batch between them, short enough for the default run.
EPOCHS = "3"
# How far apart (relative L2 over all weights) the two runs may end: 1e5 times
# the rounding drift, a tenth of the nearest mistake's distance.
RELATIVE_DISTANCE = 1e-2


def _embed_args(world, out: Path) -> list[str]:
    # zk_cnn has no dropout, whose masks depend on how a batch is split.
    return ["embed", "--mk", str(world.mk), "--out", str(out), "--epochs", EPOCHS, "--device", "cpu",
            "--arch", "zk_cnn"]


def test_two_gloo_processes_take_the_steps_one_process_takes(digits_world, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert wmark_main([*_embed_args(digits_world, one), "--quiet"]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "wmark.watermark", *_embed_args(digits_world, two)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    # Only rank 0 prints and writes.
    assert run.stdout.count("wrote ") == 1 and "one of 2 torchrun processes" in run.stdout
    a, b = load_file(one / WEIGHTS_NAME), load_file(two / WEIGHTS_NAME)
    assert a.keys() == b.keys()
    # The same global batches, split: only the order of float sums differs, and
    # the weights end ~1e-7 apart (relative, over the whole model).  Not
    # elementwise: a fresh-clone CI run once ended with a weight further off
    # than 1e-4 + 1e-3 of its size, most likely rounding that turned a ReLU
    # whose input lay within it of zero.  Ranks not averaging their gradients end
    # 1.1e-1 away, an unscaled share of the loss 4.4e-1 (each measured by
    # planting the mistake in train.py).
    def flat(weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([weights[name].flatten() for name in sorted(weights)])

    distance = ((flat(b) - flat(a)).norm() / flat(a).norm()).item()
    assert distance < RELATIVE_DISTANCE, f"the two runs' weights are {distance:.1e} apart"
    assert load_model(two).config.vk_digest == load_model(one).config.vk_digest is not None


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched() == SOLO
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert launched() == World(rank=1, size=2) and not launched().leader
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(Exception, match="does not fit"):
        launched()
