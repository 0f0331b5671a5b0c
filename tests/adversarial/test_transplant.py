"""Transplanted key: the owner's verification key, commitments and all,
re-signed by another identity that holds the openings a public verification
revealed.  The registry refuses to register it; a verifier given it without a
receipt rejects the reveal, since a derived item's VRF input names the owner's
key, and one given the owner's receipt finds it registers another key."""

from __future__ import annotations

import shutil

import pytest

from wmark.harness.claims import (
    claim_with_own_prover,
    on_record,
    public_claim,
    register,
    run_main,
    transplant,
    verifier_main,
)
from wmark.protocol.transparency import default_receipt_path

pytestmark = pytest.mark.adversarial


def test_a_transplanted_key_is_refused_by_the_registry_and_unproven_without_it(digits_world, tmp_path):
    record = on_record(digits_world.keys, digits_world.marked, tmp_path / "owner")
    public = public_claim(record.keys, digits_world.marked, tmp_path)
    thief = transplant(tmp_path / "thief", public.transcript)

    code, out = register(thief, record.log)
    assert code == 2 and "already registered by another owner" in out, out

    code, out = claim_with_own_prover(thief, digits_world.marked, tmp_path, "thief")
    assert code == 2 and "VRF proof does not verify" in out, out

    shutil.copy(default_receipt_path(record.keys.vk), default_receipt_path(thief.vk))
    code, out = run_main(verifier_main, "registration", "--vk", thief.vk, "--log-key", record.log / "log-key.pub")
    assert code == 1 and "not this one" in out, out
