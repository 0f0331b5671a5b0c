"""The zero-knowledge cost model up front (docs/design.md section 4c): both
commands print what the proofs will take before any proving, and refuse a
circuit over --memory-limit with one line, exit 2 and nothing written.

The model is ``zk_cnn`` on 8x8 digits with random weights: 16,002 rows, which
ezkl's calibration makes 2^15 tall (about 1.8 GB to prove); laying it out
takes seconds, and nothing here proves."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.zkworld import ZkWorld, zk_world
from wmark.files import atomic_write
from wmark.harness.programs import run_cli
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.messages import ModelRef
from wmark.protocol.session import ZkVerifierSession
from wmark.protocol.zk import SrsOrigin, ZkParameters

pytest.importorskip("ezkl")

from wmark.watermark import zkcircuit  # after the skip: needs ezkl
from wmark.watermark.modelio import model_file_digest

ROWS, LOGROWS = 16_002, 15
# Between what the rows alone need (2^14 tall: 1.2 GB) and what the calibrated 2^15 needs (1.8 GB).
BETWEEN_GB = "1.5"
REFUSAL = f"about {zkcircuit.memory_for(LOGROWS) / 1e9:.1f} GB of memory and 1.5 GB is available"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> ZkWorld:
    return zk_world(tmp_path_factory.mktemp("zk-cost"), n=4, std=0.3)


def test_the_cost_follows_the_height_and_k():
    cost = zkcircuit.Cost(ROWS, LOGROWS)
    assert cost.memory_bytes == zkcircuit.BASE_BYTES + zkcircuit.BYTES_PER_ROW * 2**LOGROWS
    assert cost.cpu_seconds == zkcircuit.CPU_SECONDS_PER_ROW * 2**LOGROWS
    line = cost.describe(10, cores=2)
    assert f"2^15 rows (16,002 used); per item about {cost.memory_bytes / 1e9:.1f} GB of memory" in line
    assert f"{cost.cpu_seconds:.0f} s CPU (at least {cost.cpu_seconds / 2:.0f} s on 2 cores)" in line
    assert f"10 items one at a time: {10 * cost.cpu_seconds / 60:.0f} min CPU" in line


def test_zkchallenge_refuses_a_circuit_over_the_memory_limit_and_writes_nothing(world, tmp_path):
    """The rows alone would fit: only the calibrated height is over the limit."""
    out = tmp_path / "challenge.json"
    r = run_cli("wmark-verifier", "zkchallenge", "--vk", str(world.vk), "--model", str(world.model), "--k", "4",
                "--out", str(out), "--identity", str(tmp_path / "verifier.pem"), "--workdir", str(tmp_path),
                "--lambda", "3", "--memory-limit", BETWEEN_GB)
    assert r.returncode == 2, r.stdout + r.stderr
    (error,) = [line for line in r.stderr.splitlines() if line.startswith("wmark-verifier: error")]
    assert f"{ROWS:,} rows (2^{LOGROWS}); proving one trigger image would take {REFUSAL}" in error
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["verifier.pem", "verifier.pub"], "a challenge, SRS or circuit was left"


def _challenge(world: ZkWorld, tmp: Path, srs_logrows: int) -> Path:
    """A ZK challenge naming the model and a real (small) SRS beside it."""
    srs = zkcircuit.generate_srs(tmp / "challenge.srs", srs_logrows)
    parameters = ZkParameters(srs.sha256, srs.logrows, SrsOrigin.VERIFIER, hashlib.sha256(b"circuit").digest())
    session = ZkVerifierSession(world.pair.verification_key, SigningKey.generate(),
                                ModelRef(sha256=model_file_digest(world.model)), 2, zk=parameters, lam=3)
    path = tmp / "challenge.json"
    atomic_write(path, session.challenge().to_json())
    return path


def zkprove(world: ZkWorld, challenge: Path, out: Path, *extra: str):
    return run_cli("wmark-prover", "zkprove", "--mk", str(world.mk), "--vk", str(world.vk), "--model",
                   str(world.model), "--challenge", str(challenge), "--out", str(out), "--ledger",
                   str(challenge.parent / "ledger.db"), "--workdir", str(challenge.parent), *extra)


def test_zkprove_refuses_a_circuit_over_the_memory_limit_and_writes_nothing(world, tmp_path):
    out = tmp_path / "zkreveal.json"
    r = zkprove(world, _challenge(world, tmp_path, 10), out, "--memory-limit", BETWEEN_GB)
    assert r.returncode == 2, r.stdout + r.stderr
    assert REFUSAL in r.stderr and "Traceback" not in r.stderr
    assert "cost" not in r.stdout, "the cost of a refused circuit is in the refusal"
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("wmark-zk-")], "a circuit was left behind"


def test_zkprove_prints_the_cost_before_it_sets_up_or_proves(world, tmp_path):
    """The SRS is too small for the circuit, so zkprove stops at setup: the cost line came before."""
    out = tmp_path / "zkreveal.json"
    r = zkprove(world, _challenge(world, tmp_path, 10), out)
    assert r.returncode == 2, r.stdout + r.stderr
    cost = zkcircuit.Cost(ROWS, LOGROWS)
    assert f"cost      2^15 rows (16,002 used); per item about {cost.memory_bytes / 1e9:.1f} GB" in r.stdout
    assert "2 items one at a time" in r.stdout
    assert "an SRS of 2^10 rows is too small for this circuit of 2^15" in r.stderr
    assert not out.exists()
