"""Random claim: a fresh derived key whose trigger set was never embedded,
claimed against the marked model, privately (k = 20) and publicly (k = n)."""

from __future__ import annotations

import pytest

from wmark.harness.claims import claim, fresh_derived

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("k", [20, 100])
def test_a_key_never_embedded_is_rejected(digits_world, tmp_path, k):
    result = claim(fresh_derived(tmp_path / "keys", n=100), digits_world.marked, tmp_path, "random", k=k, budget="1")
    assert result.code == 1, result.output
    verdict = result.verdict
    assert not verdict.accepted and verdict.k == k and verdict.matches < verdict.tau
    assert float(verdict.p_value) > 2.0 ** -verdict.lam
