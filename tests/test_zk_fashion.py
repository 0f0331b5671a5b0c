"""Fashion-MNIST proven in zero knowledge: ``fashion_zk`` (docs/design.md section 4c).

The default run lays out the circuit of an untrained ``fashion_zk`` (seconds):
it must stay within one proof of at most 8 GB.  Slow: the model marked with
a ``--zk`` key and its NO-WM twin, each challenged for k = 20 items at
lambda 40 through zkchallenge, zkprove and zkcheck (about 20 proofs of 2^17
rows each: an hour on two shared cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import DigitsWorld, build_digits_world
from wmark.harness.programs import run_cli
from wmark.protocol.items import TriggerKind
from wmark.protocol.transcript import audit, load_transcript
from wmark.watermark.datasets import FASHION_ROOT
from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model

ezkl = pytest.importorskip("ezkl")

from wmark.watermark import zkcircuit  # after the skip: needs ezkl

SHAPE = (1, 28, 28)
K, LAMBDA = 20, 40
HAVE_FASHION = any((Path(FASHION_ROOT) / "train-images-idx3-ubyte").with_suffix(suffix).is_file()
                   for suffix in ("", ".gz"))


def test_the_fashion_zk_circuit_is_2_17_rows_and_one_proof_fits_in_8_gb(tmp_path):
    """The architecture's reason to exist: a 28x28 network whose proof fits the
    acceptance bound (a wider first layer or a pooling layer makes it 2^18)."""
    model = new_model(ModelConfig("fashion_zk", 10, SHAPE, Preprocessing((0.286,), (0.353,)))).eval()
    circuit = zkcircuit.build_circuit(model, tmp_path, input_scale=zkcircuit.DEFAULT_INPUT_SCALE,
                                      memory_limit=8 * 10**9)
    assert circuit.logrows == 17 and circuit.num_rows > 1 << 16
    assert circuit.cost.memory_bytes <= 8 * 10**9


@pytest.fixture(scope="module")
def fashion_world(tmp_path_factory) -> DigitsWorld:
    if not HAVE_FASHION:
        pytest.skip(f"Fashion-MNIST is not installed under {FASHION_ROOT} (apt-get install dataset-fashion-mnist)")
    return build_digits_world(tmp_path_factory.mktemp("zk-fashion"), arch="fashion_zk", dataset="fashion-mnist",
                              zk=zkcircuit.InputCommitter(TriggerKind.DERIVED, SHAPE))


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # 20 proofs of 2^17 rows: about 90 s of CPU each, far more wall on a loaded machine
@pytest.mark.parametrize("which, expected", [("marked", 0), ("plain", 1)])
def test_k_20_at_lambda_40_accepts_the_marked_fashion_model_and_rejects_no_wm(fashion_world, tmp_path, which,
                                                                             expected):
    model = str(getattr(fashion_world, which))
    challenge, reveal, verdict = tmp_path / "challenge.json", tmp_path / "zkreveal.json", tmp_path / "verdict.json"
    ident, common = str(tmp_path / "verifier.pem"), ["--vk", str(fashion_world.vk), "--model", model]
    r = run_cli("wmark-verifier", "zkchallenge", *common, "--k", str(K), "--lambda", str(LAMBDA), "--out",
                str(challenge), "--identity", ident, "--workdir", str(tmp_path), "--memory-limit", "8", timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2^17 rows" in r.stdout + r.stderr, "the cost is printed before proving"
    r = run_cli("wmark-prover", "zkprove", "--mk", str(fashion_world.mk), *common, "--challenge", str(challenge),
                "--out", str(reveal), "--workdir", str(tmp_path), "--memory-limit", "8", timeout=3 * 3600)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("wmark-verifier", "zkcheck", *common, "--challenge", str(challenge), "--reveal", str(reveal),
                "--out", str(verdict), "--identity", ident, "--lambda", str(LAMBDA), "--workdir", str(tmp_path),
                timeout=1800)
    assert r.returncode == expected, r.stdout + r.stderr
    report = audit(load_transcript(verdict))
    assert report.verdict.zk.failures == (), "every proof verifies, whether or not its class is the label"
    assert report.verdict.k == K and report.verdict.accepted == (expected == 0)
    if expected == 0:
        assert f"ACCEPTED: {K} of {K} hidden" in r.stdout
