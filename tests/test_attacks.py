"""Removal attacks (wmark.watermark.attacks) and `wmark attack`.

Every attack must leave the victim and its directory alone and hand back a
new model; each does what it says (pruning zeroes the share of weights asked,
quantisation leaves few values, FTLL moves only the output layer, extraction
learns from answers only); and the private verification run against an
attacked model is the real protocol.  The long sweeps are in
benchmarks/robustness.py; here training runs are cut to a few epochs.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import hypergeom

import wmark.watermark.attacks.distill as distill_module
from tests.support.schemas import assert_valid_report
from wmark.errors import InvalidInput
from wmark.watermark.attacks import ATTACKS, run_attack
from wmark.watermark.attacks.finetune import output_layer
from wmark.watermark.attacks.prune import prunable
from wmark.watermark.attacks.verification import OwnerKeys, acceptance_probability, verify_privately
from wmark.watermark.cli import main as wmark_main
from wmark.watermark.datasets import load_task
from wmark.watermark.evaluate import evaluate, predict
from wmark.watermark.modelio import load_model, model_file_digest
from wmark.watermark.triggers import trigger_set_from_marking_key

pytestmark = pytest.mark.adversarial

# Enough to exercise every attack, quick to run.
FAST = {
    "ftll": {"epochs": 1}, "ftal": {"epochs": 1}, "rtll": {"epochs": 1}, "rtal": {"epochs": 1},
    "distill": {"epochs": 1, "copies": 0}, "extract-soft": {"epochs": 1, "copies": 0},
    "extract-hard": {"epochs": 1, "copies": 0},
}


@dataclass(frozen=True)
class Victim:
    model: torch.nn.Module
    directory: Path
    digest: bytes
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def task():
    return load_task("digits")


@pytest.fixture(scope="module")
def triggers(digits_world):
    return trigger_set_from_marking_key(digits_world.pair.marking_key)


@pytest.fixture(scope="module")
def keys(digits_world):
    return OwnerKeys(digits_world.pair.marking_key, digits_world.pair.verification_key, digits_world.owner)


@pytest.fixture(scope="module")
def victim(digits_world):
    model = load_model(digits_world.marked)
    return Victim(model, digits_world.marked, model_file_digest(digits_world.marked),
                  {k: v.clone() for k, v in model.state_dict().items()})


def assert_untouched(victim: Victim) -> None:
    assert all(torch.equal(v, victim.weights[k]) for k, v in victim.model.state_dict().items())
    assert all(p.requires_grad for p in victim.model.parameters())
    assert model_file_digest(victim.directory) == victim.digest


@pytest.mark.parametrize("kind", list(ATTACKS))
def test_every_attack_returns_a_new_model_and_leaves_the_victim_alone(kind, victim, task):
    result = run_attack(victim.model, kind, task, seed=0, **FAST.get(kind, {}))
    assert_untouched(victim)
    assert result.attacked is not victim.model and result.checked is not victim.model
    victim_storage = {p.data_ptr() for p in victim.model.parameters()}
    assert not victim_storage & {p.data_ptr() for p in result.attacked.parameters()}
    assert result.attacked.config.vk_digest is None
    assert all(p.requires_grad for p in result.attacked.parameters())
    assert result.plugged_back == (kind in ("rtll", "rtal"))
    changed = not np.array_equal(predict(result.attacked, task.test.images), predict(victim.model, task.test.images))
    assert changed, f"{kind} left the model's answers exactly as they were"


def test_attacks_are_seeded(victim, task):
    def weights(kind: str, seed: int) -> list[torch.Tensor]:
        result = run_attack(victim.model, kind, task, seed=seed, **FAST.get(kind, {}))
        return list(result.attacked.state_dict().values())

    for kind in ("rtal", "extract-soft", "weight-noise"):
        assert all(torch.equal(a, b) for a, b in zip(weights(kind, 3), weights(kind, 3))), kind
        assert not all(torch.equal(a, b) for a, b in zip(weights(kind, 3), weights(kind, 4))), kind


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.8, 0.95])
def test_pruning_zeroes_the_rate_asked_of_the_prunable_weights(rate, victim, task):
    pruned = run_attack(victim.model, "prune", task, seed=0, rate=rate).attacked
    weights = torch.cat([w.detach().flatten() for w in prunable(pruned)])
    assert abs(float((weights == 0).float().mean()) - rate) < 1e-3
    # The weights that stay are the largest ones, unchanged.
    original = torch.cat([w.detach().flatten() for w in prunable(victim.model)])
    kept = weights != 0
    assert torch.equal(weights[kept], original[kept])
    if rate:
        assert original[kept].abs().min() >= original[~kept].abs().max()
    biases = [p for p in pruned.parameters() if p.dim() < 2]
    assert all(torch.equal(a, b) for a, b in zip(biases, [p for p in victim.model.parameters() if p.dim() < 2]))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantisation_leaves_at_most_2_to_the_bits_values_per_tensor(bits, victim, task):
    quantised = run_attack(victim.model, "quantise", task, seed=0, bits=bits).attacked
    for before, after in zip(victim.model.parameters(), quantised.parameters()):
        assert len(torch.unique(after)) <= 2 ** bits - 1
        step = before.detach().abs().max() / (2 ** (bits - 1) - 1)
        assert float((after - before).detach().abs().max()) <= float(step) / 2 + 1e-6


def test_ftll_trains_only_the_output_layer_and_keeps_the_watermark(victim, task, triggers):
    result = run_attack(victim.model, "ftll", task, seed=0)
    head = {id(p) for p in output_layer(result.attacked).parameters()}
    for (name, before), after in zip(victim.model.named_parameters(), result.attacked.parameters()):
        assert torch.equal(before, after) != (id(after) in head), name
    scores = evaluate(result.attacked, task.test, triggers)
    assert scores.triggers.accuracy >= 0.9 and scores.test.accuracy >= 0.9


def test_retraining_is_checked_with_the_original_output_layer_plugged_back(victim, task, triggers):
    result = run_attack(victim.model, "rtal", task, seed=0)
    plugged, retrained, original = (output_layer(m) for m in (result.checked, result.attacked, victim.model))
    assert torch.equal(plugged.weight, original.weight) and not torch.equal(retrained.weight, original.weight)
    head = {id(p) for p in plugged.parameters()}
    assert all(torch.equal(a, b) for a, b in zip(result.checked.parameters(), result.attacked.parameters())
               if id(a) not in head)
    # A re-initialised output layer answers the triggers far worse than the
    # owner's; the paper's plugged-back check still finds the watermark on digits.
    marked, deployed, plugged_back = (evaluate(m, task.test, triggers)
                                      for m in (victim.model, result.attacked, result.checked))
    assert deployed.triggers.accuracy <= marked.triggers.accuracy - 0.2
    assert plugged_back.triggers.accuracy >= 0.9
    assert deployed.test.accuracy >= 0.9


def test_extraction_learns_from_the_answers_only(victim, task, monkeypatch):
    """A victim whose every weight is NaN, answering through predict() as the
    real one does, yields the very same student: nothing but the answers is used."""
    fast = {"epochs": 2, "copies": 1}
    real = run_attack(victim.model, "extract-soft", task, seed=0, **fast).attacked

    poisoned = copy.deepcopy(victim.model)
    with torch.no_grad():
        for p in poisoned.parameters():
            p.fill_(math.nan)
    honest_predict = distill_module.predict

    def answers(model, images):
        return honest_predict(victim.model if model is poisoned else model, images)

    monkeypatch.setattr(distill_module, "predict", answers)
    stolen = run_attack(poisoned, "extract-soft", task, seed=0, **fast).attacked
    assert all(torch.equal(a, b) for a, b in zip(real.state_dict().values(), stolen.state_dict().values()))
    assert all(torch.isfinite(p).all() for p in stolen.parameters())


def test_extraction_removes_the_watermark_and_keeps_the_task(victim, task, triggers, keys):
    stolen = run_attack(victim.model, "extract-hard", task, seed=0, epochs=15, copies=1).attacked
    scores = evaluate(stolen, task.test, triggers)
    assert scores.test.accuracy >= 0.9
    assert scores.triggers.accuracy <= 0.4
    assert not verify_privately(stolen, keys, 20).accepted


def test_distillation_into_another_architecture(victim, task):
    student = run_attack(victim.model, "distill", task, seed=0, arch="zk_cnn", epochs=1, copies=0).attacked
    assert student.config.arch == "zk_cnn" and victim.model.config.arch == "small_cnn"


@pytest.mark.parametrize("kind, params, fragment", [
    ("nonsense", {}, "unknown attack kind"),
    ("ftll", {"rate": 0.5}, "takes no rate"),
    ("prune", {"rate": 1.0}, "outside [0, 1)"),
    ("quantise", {"bits": 1}, "bits"),
    ("distill", {"temperature": 0.0}, "temperature"),
    ("distill", {"arch": "no-such-net"}, "unknown architecture"),
    ("ftal", {"epochs": 0}, "epochs"),
])
def test_bad_attack_parameters_are_refused(kind, params, fragment, victim, task):
    with pytest.raises(InvalidInput, match=re.escape(fragment)):
        run_attack(victim.model, kind, task, seed=0, **params)


def test_private_verification_accepts_the_marked_model_and_rejects_the_plain_one(digits_world, keys):
    marked, plain = load_model(digits_world.marked), load_model(digits_world.plain)
    for k in (20, keys.vk.n):
        accepted = verify_privately(marked, keys, k)
        assert accepted.accepted and accepted.acceptance_probability == 1.0 and accepted.k == k
        rejected = verify_privately(plain, keys, k)
        assert not rejected.accepted and rejected.acceptance_probability < 1e-6


@pytest.mark.parametrize("matching, k, tau", [(100, 20, 16), (60, 20, 16), (80, 20, 16), (15, 20, 16), (40, 100, 37),
                                              (36, 100, 37), (50, 20, None)])
def test_acceptance_probability_is_the_hypergeometric_tail(matching, k, tau):
    expected = 0.0 if tau is None else hypergeom.sf(tau - 1, 100, matching, k)
    assert acceptance_probability(matching, 100, k, tau) == pytest.approx(expected, abs=1e-12)


# ---- wmark attack ---------------------------------------------------------------------------------------------

def wmark(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = wmark_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_attacks_a_copy_and_verifies_it(digits_world, victim, tmp_path, capsys):
    out_dir = tmp_path / "pruned"
    code, out, err = wmark(capsys, "attack", "--model", str(digits_world.marked), "--kind", "prune", "--rate", "0.9",
                           "--out", str(out_dir), "--mk", str(digits_world.mk), "--vk", str(digits_world.vk),
                           "--json", str(tmp_path / "attack.json"))
    assert code == 0, err
    assert_untouched(victim)
    report = json.loads((tmp_path / "attack.json").read_text())
    assert_valid_report(report, "wmark/attack-report")
    assert report["parameters"]["rate"] == 0.9 and [v["accepted"] for v in report["verifications"]] == [True, True]
    pruned = load_model(out_dir)
    weights = torch.cat([w.detach().flatten() for w in prunable(pruned)])
    assert abs(float((weights == 0).float().mean()) - 0.9) < 1e-3
    lines = out.splitlines()
    assert any(line.startswith("before") for line in lines) and any(line.startswith("after") for line in lines)
    assert [line.split()[2] for line in lines if line.startswith("verify")] == ["accepted:", "accepted:"]


def test_cli_reports_both_views_of_a_retrained_model(digits_world, tmp_path, capsys):
    code, out, err = wmark(capsys, "attack", "--model", str(digits_world.marked), "--kind", "rtll", "--epochs", "1",
                           "--out", str(tmp_path / "rtll"), "--mk", str(digits_world.mk), "--seed", "5")
    assert code == 0, err
    assert "after as attacked" in out and "after original layer" in out and "verify" not in out
    assert load_model(tmp_path / "rtll").config.vk_digest is None


def test_cli_input_noise_writes_nothing(digits_world, tmp_path, capsys):
    code, out, err = wmark(capsys, "attack", "--model", str(digits_world.marked), "--kind", "input-noise",
                           "--sigma", "0.2", "--mk", str(digits_world.mk))
    assert code == 0, err
    assert "after" in out and "wrote" not in out


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("wmark: error:"), err
    assert all(fragment in lines[0] for fragment in fragments), err


@pytest.mark.parametrize("argv, fragment", [
    (["--model", "{root}/nowhere", "--kind", "ftll", "--out", "{tmp}/o"], "not a model directory"),
    (["--model", "{marked}", "--kind", "erase-watermark", "--out", "{tmp}/o"], "unknown attack kind"),
    (["--model", "{marked}", "--kind", "ftll", "--rate", "0.5", "--out", "{tmp}/o"], "takes no rate"),
    (["--model", "{marked}", "--kind", "ftll"], "needs --out"),
    (["--model", "{marked}", "--kind", "ftll", "--out", "{marked}", "--force"], "must differ from --model"),
    (["--model", "{marked}", "--kind", "input-noise", "--out", "{tmp}/o"], "nothing to write"),
    (["--model", "{marked}", "--kind", "ftll", "--out", "{tmp}/o", "--vk", "{vk}"], "--vk needs --mk"),
])
def test_cli_refuses_bad_input_with_one_line(argv, fragment, digits_world, victim, tmp_path, capsys):
    fill = {"root": digits_world.root, "tmp": tmp_path, "marked": digits_world.marked, "vk": digits_world.vk}
    code, out, err = wmark(capsys, "attack", *(a.format(**fill) for a in argv))
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not (tmp_path / "o").exists()
    assert_untouched(victim)
