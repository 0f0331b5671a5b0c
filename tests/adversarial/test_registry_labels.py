"""Cheating owners against registry-bound labels (docs/design.md section 2).

The owner knows nothing of its labels when it chooses the inputs: they are its
committed labels shifted by the log's beacon, drawn at registration.  So:

(a) a ZK owner who Poseidon-commits ordinary digits with their true classes,
(b) an imported set of ordinary digits with their true classes,
(c) piracy, forging and replay with imported images,
(d) an owner re-registering again and again for a lucky beta,

are all rejected by the protocol alone, where (a) and (b) were accepted
against every innocent model under committed labels.  (e) and (f), edited and
swapped beacons, are in tests/test_beacon.py.  The ZK scenario takes every
proof as verified, proving the class the model gives the hidden input: what
changed is which label that class is compared with, not the proofs.
"""

from __future__ import annotations

import numpy as np
import pytest

from wmark.harness.claims import (
    IMPORTED_P0,
    NUM_CLASSES,
    Keys,
    bound_replay,
    claim,
    classify,
    commit_bound,
    embed_after_registration,
    forge_imported,
    innocent_model,
    natural_images,
    public_claim,
    registered,
    regrind,
    zk_claim,
)
from wmark.protocol.beacon import LabelSource
from wmark.protocol.decision import tail, threshold
from wmark.protocol.keyfile import load_marking_key
from wmark.protocol.session import CAVEAT_IMPORTED
from wmark.watermark.modelio import load_model
from wmark.watermark.triggers import trigger_set_from_marking_key

pytestmark = pytest.mark.adversarial

N = 100


@pytest.fixture(scope="module")
def innocents(digits_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("bound-innocent")
    return [digits_world.plain, *(innocent_model(root / f"seed-{s}", seed=s, epochs=10) for s in (1, 2))]


@pytest.fixture(scope="module")
def natural():
    return natural_images(N, seed=0)


@pytest.fixture(scope="module")
def cheater(natural, tmp_path_factory):
    """The cheating owner's registry-bound key: ordinary digits, their true classes, Poseidon-committed."""
    from wmark.protocol.items import TriggerKind
    from wmark.watermark.zkcircuit import InputCommitter

    root = tmp_path_factory.mktemp("cheater")
    keys, pair = commit_bound(root / "keys", *natural, zk=InputCommitter(TriggerKind.IMPORTED, (1, 8, 8)))
    return keys, pair, registered(keys, root / "log"), root / "log"


def test_a_a_cheating_zk_owner_is_rejected_by_every_innocent_model(innocents, natural, cheater, tmp_path,
                                                                   record_property):
    keys, pair, registration, _ = cheater
    identity = load_identity(keys)
    bound = [zk_claim(pair, identity, m, natural[0], registration, k=N) for m in innocents]
    assert not any(d.accepted for d in bound), [d.p_value_text for d in bound]
    assert all(d.p_value > 2 ** -40 for d in bound)
    record_property("zk_bound_p_values", [d.p_value_text for d in bound])
    # The same images and labels with committed labels: accepted against every innocent model.
    old_keys, old_pair = commit_bound(tmp_path / "old", *natural, zk=_poseidon(),
                                      label_source=LabelSource.COMMITTED)
    old = [zk_claim(old_pair, load_identity(old_keys), m, natural[0], None, k=N, p0=IMPORTED_P0)
           for m in innocents]
    assert all(d.accepted for d in old), [d.p_value_text for d in old]
    record_property("zk_committed_p_values", [d.p_value_text for d in old])


def test_a_the_honest_owner_who_embeds_after_registering_is_accepted(cheater, natural, tmp_path):
    keys, pair, registration, _ = cheater
    model = embed_after_registration(keys, registration.beta, tmp_path / "marked")
    decision = zk_claim(pair, load_identity(keys), model, natural[0], registration, k=N)
    assert decision.accepted, decision.p_value_text


def test_b_natural_images_with_their_true_classes_are_rejected_without_p0(innocents, natural, tmp_path,
                                                                           record_property):
    keys, _ = commit_bound(tmp_path / "keys", *natural)
    registration = registered(keys, tmp_path / "log")
    p_values = []
    for i, model in enumerate(innocents):
        result = claim(keys, model, tmp_path, f"innocent-{i}", k=20, log=tmp_path / "log")
        assert result.code == 1, result.output
        verdict = result.verdict
        assert verdict.p0 == _p0() and CAVEAT_IMPORTED not in verdict.caveats
        p_values.append(verdict.p_value)
    record_property("imported_bound_p_values", p_values)
    # Before this change the same images and labels (committed, --p0 1/10) were accepted.
    old, _ = commit_bound(tmp_path / "old", *natural, label_source=LabelSource.COMMITTED)
    assert claim(old, innocents[0], tmp_path, "old", k=20, p0=IMPORTED_P0).code == 0
    # The same key embedded into a model after registration: accepted.
    model = embed_after_registration(keys, registration.beta, tmp_path / "marked")
    honest = claim(keys, model, tmp_path, "honest", k=20, log=tmp_path / "log")
    assert honest.code == 0, honest.output


def test_c_imported_piracy_is_rejected_by_check(digits_world, tmp_path):
    from wmark.harness.claims import attacker_images

    images = attacker_images(N, np.random.default_rng(1))
    answers = classify(load_model(digits_world.marked), images)
    pirate, _ = commit_bound(tmp_path / "pirate", images, answers)
    registered(pirate, tmp_path / "log")
    result = claim(pirate, digits_world.marked, tmp_path, "pirate", k=20, log=tmp_path / "log")
    assert result.code == 1 and not result.verdict.accepted, result.output


def test_c_imported_forging_is_rejected_by_check(digits_world, tmp_path):
    forgery = forge_imported(tmp_path / "plain-forgery", digits_world.marked, n=N, seed=2)
    forger, _ = commit_bound(tmp_path / "forger", forgery.images, forgery.labels)
    registered(forger, tmp_path / "log")
    result = claim(forger, digits_world.marked, tmp_path, "forger", k=20, log=tmp_path / "log")
    assert result.code == 1 and not result.verdict.accepted, result.output


def test_c_imported_replay_is_rejected_by_check(cheater, tmp_path):
    keys, _, registration, log = cheater
    model = embed_after_registration(keys, registration.beta, tmp_path / "owner-model")
    public = public_claim(keys, model, tmp_path, log=log)
    thief = bound_replay(tmp_path / "thief", public.transcript)
    registered(thief, tmp_path / "thief-log")
    result = claim(thief, model, tmp_path, "replay", k=20, log=tmp_path / "thief-log")
    assert result.code == 1 and not result.verdict.accepted, result.output


def test_d_re_registering_for_a_lucky_beta_costs_a_registration_per_try(digits_world, tmp_path,
                                                                        record_property):
    n, attempts = 20, 40
    grind = regrind(digits_world.plain, tmp_path / "log", tmp_path, attempts=attempts, n=n)
    assert grind.accepted == 0 and grind.matches.max() < threshold(n, _p0())
    # Each try is a public registration; one succeeds with probability tail(tau) <= 2^-40.
    per_try = tail(threshold(n, _p0()), n, _p0())
    assert per_try <= 2 ** -40
    record_property("regrind", {"attempts": attempts, "best": int(grind.matches.max()),
                                "expected_registrations": float(1 / per_try)})


def _p0():
    from fractions import Fraction
    return Fraction(1, NUM_CLASSES)


def _poseidon():
    from wmark.protocol.items import TriggerKind
    from wmark.watermark.zkcircuit import InputCommitter
    return InputCommitter(TriggerKind.IMPORTED, (1, 8, 8))


def load_identity(keys: Keys):
    from wmark.protocol.hazmat.identity import load_signing_key
    return load_signing_key(keys.owner)


def test_bound_trigger_labels_are_not_the_committed_ones(cheater):
    keys, _, registration, _ = cheater
    mk = load_marking_key(keys.mk, None)
    committed = np.array([o.label for o in mk.openings])
    trained = trigger_set_from_marking_key(mk, beta=registration.beta).labels
    # Uniform shifts leave about 1/L of them in place.
    assert (trained == committed).mean() < 0.3
