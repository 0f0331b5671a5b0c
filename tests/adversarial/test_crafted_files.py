"""Unbounded work from small inputs: files a hostile party hands the verifier
or the owner must cost bounded time and memory, refused before the work.

* A transcript of n = k = 10,000 imported 1x1 items (4 MB) whose verdict names
  a p0 with a 12-digit denominator: its exact tails are integers of 400,000
  bits, and computing them with Fractions kept `audit` busy past 15 minutes.
* A model directory whose files are not regular files: a FIFO (reading it
  blocks forever) or a symlink to /dev/zero (reads without end).
* A model.json naming a huge architecture: refused from its parameter count,
  worked out on torch's meta device, before any memory is spent on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.hostile import HUGE_CONFIG, RED_TEAM_P0, crafted_transcript
from wmark.harness.programs import run_cli

pytestmark = pytest.mark.adversarial

N = 10_000


def test_a_transcript_with_a_huge_p0_denominator_is_refused_before_any_tail(tmp_path):
    path = tmp_path / "crafted.json"
    crafted_transcript(path, n=N, p0=RED_TEAM_P0)
    assert path.stat().st_size < 10 * 1024 * 1024
    # The old code ran past 15 minutes here; the timeout only stops a hang.
    result = run_cli("wmark-verifier", "audit", str(path), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "denominator" in result.stderr and "Traceback" not in result.stderr, result.stderr


def _challenge(model: Path, tmp: Path, vk: Path):
    # The timeout only stops a hang (the old code blocked forever on a FIFO).
    return run_cli("wmark-verifier", "challenge", "--vk", str(vk), "--model", str(model), "--k", "5",
                   "--out", str(tmp / "challenge.json"), "--identity", str(tmp / "v.pem"), timeout=120)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_weights_that_are_not_a_regular_file_are_refused_unread(digits_world, tmp_path, kind):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_bytes((digits_world.marked / "model.json").read_bytes())
    if kind == "fifo":
        os.mkfifo(model / "model.safetensors")
    else:
        (model / "model.safetensors").symlink_to("/dev/zero")
    result = _challenge(model, tmp_path, digits_world.vk)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a regular file" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_tiny_config_naming_a_huge_architecture_is_refused_before_it_is_built(digits_world, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_bytes(HUGE_CONFIG)
    (model / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    result = _challenge(model, tmp_path, digits_world.vk)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "632,045,800 parameters, more than the limit" in result.stderr, result.stderr


def test_weights_larger_than_their_header_says_are_refused_unread(digits_world, tmp_path):
    """A sparse file of 3 GiB behind a valid header: refused from its size."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_bytes((digits_world.marked / "model.json").read_bytes())
    weights = (digits_world.marked / "model.safetensors").read_bytes()
    with open(model / "model.safetensors", "wb") as fh:
        fh.write(weights)
        fh.truncate(3 * 1024**3)
    result = _challenge(model, tmp_path, digits_world.vk)
    assert result.returncode == 2 and "the header describes" in result.stderr, result.stdout + result.stderr
