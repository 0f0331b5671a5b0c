"""False accusation: five digits models trained independently without any
watermark, each challenged with the owner's key privately (k = 20) and
publicly (k = n).  None may be accepted; the p-values are recorded (and
tabulated by benchmarks/false_claims.py).

The ``plain`` fixture is one of them: same seed, initial weights and batch
order as the marked model, only no trigger images, the hardest innocent case.
The other four have seeds of their own and train for 10 epochs instead of 30
to keep the run short; they still reach over 95% test accuracy, which is all
an innocent model has to be."""

from __future__ import annotations

import pytest

from wmark.harness.claims import Keys, claim, innocent_model, task_accuracy

pytestmark = pytest.mark.adversarial

SEEDS = (1, 2, 3, 4)
EPOCHS = 10


@pytest.fixture(scope="module")
def innocents(digits_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("innocent")
    models = [digits_world.plain, *(innocent_model(root / f"seed-{s}", seed=s, epochs=EPOCHS) for s in SEEDS)]
    assert all(task_accuracy(m) > 0.95 for m in models)
    return models


@pytest.mark.parametrize("k", [20, 100])
def test_no_innocent_model_is_accused(digits_world, innocents, tmp_path, k, record_property):
    p_values = []
    for i, model in enumerate(innocents):
        result = claim(Keys(digits_world.keys), model, tmp_path, f"innocent-{i}", k=k, budget="1")
        assert result.code == 1, result.output
        verdict = result.verdict
        assert not verdict.accepted and verdict.matches < verdict.tau
        assert float(verdict.p_value) > 2.0 ** -verdict.lam
        p_values.append(verdict.p_value)
    record_property(f"p_values_k{k}", p_values)
