"""Greedy verifier: fresh challenge after fresh challenge against one prover,
each answered by `wmark-prover prove` in a process of its own.  The ledger
refuses exactly the challenges that would make more than the budget (50%) of
the trigger set public, and the verifier sees a signed refusal."""

from __future__ import annotations

import pytest

from wmark.harness.claims import Keys, greedy_verifier, run_main
from wmark.prover.ledger import Outcome
from wmark.verifier.cli import main as verifier_main

pytestmark = pytest.mark.adversarial


def test_a_greedy_verifier_is_refused_at_the_budget(digits_world, tmp_path):
    keys = Keys(digits_world.keys)
    # k = 30 of n = 100: the first challenge opens 30 items, the second stays
    # within the 50-item budget only if it repeats 10 of them, and the third
    # would have to repeat 30 - (50 - revealed): one of them is refused.
    greedy = greedy_verifier(keys, digits_world.marked, tmp_path, k=30, rounds=3)
    assert len(greedy.entries) == 3 and greedy.entries[0].outcome is Outcome.REVEALED
    public: set[int] = set()
    for entry in greedy.entries:
        would_be = public | set(entry.indices)
        if entry.outcome is Outcome.REVEALED:
            assert len(would_be) <= 50 and set(entry.new_indices) == would_be - public
            public = would_be
        else:
            assert len(would_be) > 50 and entry.new_indices == ()
            assert "leakage budget exceeded" in entry.reason
    assert 30 <= len(public) <= 50
    refused = [i for i, e in enumerate(greedy.entries) if e.outcome is Outcome.REFUSED]
    assert refused, "three challenges of 30 never reached the budget"

    challenge, answer = greedy.exchanges[refused[0]]
    code, out = run_main(verifier_main, "check", "--vk", keys.vk, "--challenge", challenge, "--reveal", answer,
                         "--model", digits_world.marked, "--out", tmp_path / "verdict.json",
                         "--identity", tmp_path / "verifier.pem")
    assert code == 1 and "REFUSED by the owner: leakage budget exceeded" in out, out
