"""Replay: an attacker takes the openings an earlier public verification
revealed, builds its own key from them and registers it.  The protocol alone
accepts (the stolen model does answer those items); what decides is that the
attacker's registration is later than the owner's, and `wmark-verifier
dispute` names the owner."""

from __future__ import annotations

import pytest

from wmark.harness.claims import (
    IMPORTED_P0,
    claim_with_own_prover,
    contest,
    replay_derived,
    replay_imported,
)
from wmark.protocol.session import CAVEAT_IMPORTED

pytestmark = pytest.mark.adversarial


def test_an_imported_replay_is_accepted_alone_and_loses_the_dispute(digits_world, public, tmp_path):
    record, revealed = public
    thief = replay_imported(tmp_path / "thief", revealed.transcript)
    result = contest(record, thief, digits_world.marked, tmp_path, "thief", p0=IMPORTED_P0)
    verdict = result.claim.verdict
    assert result.claim.code == 0, result.claim.output
    assert CAVEAT_IMPORTED in verdict.caveats
    assert verdict.registration.index > record.claim.verdict.registration.index
    assert result.dispute_code == 0 and result.winner(record) == "owner", result.dispute_output


def test_a_derived_replay_under_the_owners_vrf_key_is_refused(digits_world, public, tmp_path):
    """The VRF input of a derived item names the owner's key, so the revealed
    proofs verify only for a vk signed by the owner: re-signed by a thief (with
    fresh commitments that dodge the registry's transplant check), they fail."""
    record, revealed = public
    thief = replay_derived(tmp_path / "thief", revealed.transcript)
    code, out = claim_with_own_prover(thief, digits_world.marked, tmp_path, "thief")
    assert code == 2 and "VRF proof does not verify" in out, out
    assert not (tmp_path / "thief-verdict.json").exists()
