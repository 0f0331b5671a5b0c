"""Moving or copying the marking key must not reset the leakage budget: the
ledger is found by the key's identity (its vk digest), not by where mk.wmk
happens to be.  A greedy verifier who gets the owner to answer from two
copies of the key still meets one budget."""

from __future__ import annotations

import shutil

import pytest

from wmark.files import atomic_write
from wmark.harness.claims import Keys, run_main
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.messages import ModelRef
from wmark.protocol.session import VerifierSession
from wmark.prover.cli import main as prover_main
from wmark.prover.ledger import Ledger, default_ledger_path

pytestmark = pytest.mark.adversarial


def _prove(keys: Keys, challenge, out) -> tuple[int, str]:
    return run_main(prover_main, "prove", "--mk", keys.mk, "--vk", keys.vk, "--owner-key", keys.owner,
                    "--challenge", challenge, "--out", out)


def test_copies_of_the_marking_key_share_one_budget(digits_world, tmp_path):
    copies = [Keys(tmp_path / f"copy-{i}") for i in range(3)]
    for keys in copies:
        shutil.copytree(digits_world.keys, keys.root)
    verifier = SigningKey.generate()
    outcomes = []
    for i, keys in enumerate(copies):  # k = 30 of n = 100, fresh each time: three cannot fit in 50%
        session = VerifierSession(digits_world.pair.verification_key, verifier, ModelRef(sha256=bytes(32)), 30)
        challenge = tmp_path / f"challenge-{i}.json"
        atomic_write(challenge, session.challenge().to_json())
        code, out = _prove(keys, challenge, tmp_path / f"answer-{i}.json")
        outcomes.append(code)
        assert "REFUSED" in out if code == 1 else code == 0, out
    assert 1 in outcomes, "three copies of the key each started a budget of their own"
    ledger = Ledger.open_existing(default_ledger_path(digits_world.pair.verification_key.digest))
    assert ledger.summary().challenges == 3 and ledger.summary().revealed <= 50


def test_a_fresh_ledger_for_a_key_answered_elsewhere_is_warned_about(digits_world, tmp_path):
    keys = Keys(tmp_path / "keys")
    shutil.copytree(digits_world.keys, keys.root)
    session = VerifierSession(digits_world.pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)),
                              5, lam=3)
    challenge = tmp_path / "challenge.json"
    atomic_write(challenge, session.challenge().to_json())
    code, out = _prove(keys, challenge, tmp_path / "a.json")
    assert code == 0 and "warning" not in out, out
    code, out = run_main(prover_main, "prove", "--mk", keys.mk, "--vk", keys.vk, "--owner-key", keys.owner,
                         "--challenge", challenge, "--out", tmp_path / "b.json", "--ledger", tmp_path / "new.sqlite")
    assert code == 0 and "is a new ledger, but this key has answered challenges through" in out, out
    assert str(default_ledger_path(digits_world.pair.verification_key.digest)) in out, out
