"""Forging with adversarial examples: the attacker perturbs images (targeted
PGD) until the stolen model gives labels of its choosing, commits them and
claims the model.  With an imported set the protocol alone accepts and the
registry decides; with a derived set the verifier renders the images itself
from the VRF outputs, so the attacker's perturbations never reach the model."""

from __future__ import annotations

import pytest

from wmark.errors import RemoteProtocolError
from wmark.harness.claims import (
    IMPORTED_P0,
    claim,
    contest,
    forge_derived,
    forge_imported,
    on_record,
    smuggle_images,
)
from wmark.protocol.session import CAVEAT_IMPORTED

pytestmark = pytest.mark.adversarial


@pytest.fixture(scope="module")
def record(digits_world, tmp_path_factory):
    return on_record(digits_world.keys, digits_world.marked, tmp_path_factory.mktemp("forging"))


def test_imported_forgery_passes_the_protocol_but_the_owner_registered_first(digits_world, record, tmp_path):
    forgery = forge_imported(tmp_path / "forger", digits_world.marked, n=100, seed=2)
    assert forgery.hit_rate >= 0.9
    result = contest(record, forgery.keys, digits_world.marked, tmp_path, "forger", p0=IMPORTED_P0)
    verdict = result.claim.verdict
    assert result.claim.code == 0, result.claim.output
    assert CAVEAT_IMPORTED in verdict.caveats
    assert result.dispute_code == 0 and result.winner(record) == "owner", result.dispute_output


def test_a_derived_forger_cannot_choose_its_images(digits_world, tmp_path):
    forgery, pair, identity = forge_derived(tmp_path / "forger", digits_world.marked, n=20)
    # The perturbed images would carry the VRF's labels...
    assert forgery.hit_rate >= 0.9
    # ...but the verifier queries the images the VRF outputs render to.
    result = claim(forgery.keys, digits_world.marked, tmp_path, "forger", k=20, budget="1")
    assert result.code == 1, result.output
    assert result.verdict.matches < result.verdict.tau
    # And a reveal that ships the perturbed images along is refused outright.
    with pytest.raises(RemoteProtocolError, match="a derived item opens with its VRF proof only"):
        smuggle_images(pair, identity, forgery.images, digits_world.marked)
