"""Unbounded work from small inputs: files a hostile party hands the verifier
or the owner must cost bounded time and memory, refused before the work.

* A transcript of n = k = 10,000 imported 1x1 items (4 MB) whose verdict names
  a p0 with a 12-digit denominator: its exact tails are integers of 400,000
  bits, and computing them with Fractions kept `audit` busy past 15 minutes.
* A model directory whose files are not regular files: a FIFO (reading it
  blocks forever) or a symlink to /dev/zero (reads without end).
* A model.json naming a huge architecture: refused from its parameter count,
  read from the committed table of architecture sizes, before torch is
  imported (importing it alone takes seconds), by every command that loads a
  model directory; and weights whose header holds another number of values
  than the architecture, refused from the header alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# Every command that loads a model directory, with the option that names it.
MODEL_COMMANDS = [
    ("wmark.watermark.cli", ["eval", "--model", "{model}", "--mk", "mk.wmk"]),
    ("wmark.watermark.cli", ["serve-model", "--model={model}"]),
    ("wmark.watermark.cli", ["attack", "--model", "{model}", "--out", "o"]),
    ("wmark.watermark.cli", ["embed", "--mk", "mk.wmk", "--pretrained", "{model}", "--out", "o"]),
    ("wmark.verifier.cli", ["challenge", "--vk", "vk.json", "--model", "{model}"]),
    ("wmark.verifier.cli", ["check", "c.json", "--model", "{model}"]),
    ("wmark.verifier.cli", ["run", "--connect", "x:1", "--model", "{model}"]),
    ("wmark.verifier.cli", ["audit", "t.json", "--model", "{model}"]),
    ("wmark.verifier.cli", ["zkcheck", "--model", "{model}"]),
    ("wmark.prover.cli", ["serve", "--model", "{model}"]),
    ("wmark.prover.cli", ["zkprove", "--model", "{model}"]),
]
_WITHOUT_TORCH = ("import sys; from {package} import main; code = main(sys.argv[1:]); "
                  "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)")


def _refusal_without_torch(package: str, argv: list[str], model: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT_TORCH.format(package=package),
                           *(a.format(model=model) for a in argv)],
                          capture_output=True, text=True, check=False, timeout=120, cwd=model.parent)


@pytest.mark.parametrize(("package", "argv"), MODEL_COMMANDS, ids=[a[0] for _, a in MODEL_COMMANDS])
def test_every_model_command_refuses_a_huge_architecture_before_importing_torch(tmp_path, package, argv):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_bytes(HUGE_CONFIG)
    (model / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    result = _refusal_without_torch(package, argv, model)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "632,045,800 parameters, more than the limit" in result.stderr, result.stderr
    assert "torch not imported" in result.stdout, result.stdout


def test_a_header_holding_other_than_the_architectures_count_is_refused_before_torch(digits_world, tmp_path):
    """A valid safetensors file of the right size but not the network's tensors: refused
    from the header's count, before torch and before any weight is read."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_bytes((digits_world.marked / "model.json").read_bytes())
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    with open(model / "model.safetensors", "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + 4_000_000)
    result = _refusal_without_torch("wmark.verifier.cli", ["challenge", "--vk", str(digits_world.vk),
                                                           "--model", "{model}"], model)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "holds 1,000,000 numbers, the config's small_cnn" in result.stderr, result.stderr
    assert "torch not imported" in result.stdout, result.stdout
