"""Every check that decides, pinned where it decides (docs/design.md section 4).

Each test here fails when one check of the verifier, the auditor or the
prover's ledger is removed or weakened: the threshold exactly at ``tau``, the
label a derived item must carry, the audit of a verdict re-signed with other
parameters, a reveal with one index too many or too few, and the cumulative
leakage budget exactly at its limit.  benchmarks/mutation.py runs the mutation
tester against these tests, among others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fakes import FakeHasher
from wmark.errors import InvalidInput, InvalidOpening, LocalProtocolError, RemoteProtocolError
from wmark.protocol.beacon import LabelSource
from wmark.protocol.decision import MAX_K, MAX_LAMBDA, MAX_P0_DENOMINATOR, decide, tail, threshold
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import Scheme
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.sampling import derive_label, sample_subset
from wmark.protocol.hazmat.vrf import VrfSecretKey
from wmark.protocol.items import ItemOpening, TriggerKind, image_header, label_message, open_item, vrf_alpha
from wmark.protocol.keygen import KeyPair, _finish, _seeded_items, keygen_derived, keygen_imported, keygen_margin
from wmark.protocol.keys import VerificationKey
from wmark.protocol.margin import MarginItems, QuerySplit
from wmark.protocol.messages import Challenge, ItemResult, ModelRef, Reveal, Verdict, ZkReveal, decode
from wmark.protocol.session import (
    CAVEAT_IMPORTED,
    ProverSession,
    RevealAccepted,
    VerifierSession,
    ZkVerifierSession,
    build_verdict,
    check_zk_reveal,
    subset_of,
)
from wmark.protocol.transcript import Registration, Transcript, audit
from wmark.protocol.zk import SrsOrigin, ZkItem, ZkParameters, ZkStatement
from wmark.prover.ledger import Ledger, Outcome, VerifierPolicy
from wmark.registry import LogStore

N, K, L = 20, 8, 10
MODEL = ModelRef(sha256=bytes(32))
P0 = Fraction(1, L)
# The challenges below are small, and a challenge binds lambda: the verifier refuses to
# issue one that could never be accepted.  At lambda = 3 even k = 1 can be (p = 1/10 <= 1/8).
LAM = 3


@dataclass(frozen=True)
class World:
    pair: KeyPair
    owner: SigningKey
    verifier: SigningKey

    def run(self, k: int, correct: int | None = None,
            lam: int = LAM) -> tuple[dsse.Envelope, dsse.Envelope, dsse.Envelope]:
        """A challenge, its reveal, and a verdict on a model that answers the first
        ``correct`` challenged items with their labels (all of them by default)."""
        verifier = VerifierSession(self.pair.verification_key, self.verifier, MODEL, k, lam=lam)
        challenge = verifier.challenge()
        prover = ProverSession(self.pair.marking_key, self.pair.verification_key, self.owner)
        prover.receive(challenge)
        reveal = prover.reveal()
        event = verifier.receive(reveal)
        assert isinstance(event, RevealAccepted)
        correct = k if correct is None else correct
        predictions = {item.index: item.label if rank < correct else (item.label + 1) % L
                       for rank, item in enumerate(event.items)}
        return challenge, reveal, verifier.decide(predictions)


@pytest.fixture(scope="module")
def world() -> World:
    owner = SigningKey.generate()
    return World(keygen_derived(owner=owner, n=N, num_classes=L, input_shape=(1, 8, 8)), owner,
                 SigningKey.generate())


# ---- the threshold -------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=80)
@given(k=st.integers(1, 120), p0=st.sampled_from([Fraction(1, 2), Fraction(1, 9), Fraction(1, 10), Fraction(1, 100)]),
       lam=st.integers(1, 64))
def test_acceptance_starts_exactly_at_tau(k, p0, lam):
    tau = threshold(k, p0, lam)
    if tau is None:
        assert not decide(k, k, p0, lam).accepted
        return
    assert decide(tau, k, p0, lam).accepted
    if tau > 0:
        assert not decide(tau - 1, k, p0, lam).accepted
    assert decide(tau, k, p0, lam).p_value == tail(tau, k, p0) <= Fraction(1, 2**lam)


def test_tau_is_never_zero_for_a_sensible_lambda():
    # tau = 0 would accept a model that matches nothing; P[B >= 0] = 1 > 2^-lambda for lambda >= 1.
    assert all(threshold(k, P0, lam) != 0 for k in (1, 20, 200) for lam in (1, 40))


@pytest.mark.parametrize("offset, accepted", [(-1, False), (0, True)])
def test_a_session_verdict_accepts_from_tau_matches_on(world, offset, accepted):
    tau = threshold(N, P0)
    assert tau == 16
    challenge, reveal, verdict_env = world.run(N, correct=tau + offset, lam=40)
    verdict = decode(verdict_env, (Verdict,))
    assert verdict.matches == tau + offset and verdict.tau == tau and verdict.accepted is accepted
    assert audit(Transcript(world.pair.signed_vk, challenge, reveal, verdict_env)).verdict.accepted is accepted


# ---- labels of derived items ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pirate(world) -> KeyPair:
    """A derived key whose items are honest VRF outputs but whose committed labels are
    chosen (here: never the derived one), as a thief would choose the answers its stolen
    model already gives.  Built from keygen's own steps, with the label rule swapped."""
    owner = world.owner
    vrf_sk = VrfSecretKey.generate()
    pairs = _seeded_items(vrf_sk, owner, N, lambda seed, _: (derive_label(seed, L) + 1) % L, Scheme.HASH, None)
    return _finish(owner, Scheme.HASH, TriggerKind.DERIVED, (1, 8, 8), L, pairs, vrf_sk, None)


def test_an_opening_with_a_chosen_label_is_refused(pirate):
    vk, mk = pirate.verification_key, pirate.marking_key
    for opening in mk.openings[:3]:
        with pytest.raises(InvalidOpening, match="not the one derived from the VRF output"):
            open_item(opening, vk.commitments[opening.index], kind=vk.kind, num_classes=L,
                      input_shape=vk.input_shape, vrf_key=vk.vrf_key, owner=vk.owner)


def test_a_derived_key_with_chosen_labels_is_never_accepted(world, pirate):
    verifier = VerifierSession(pirate.verification_key, world.verifier, MODEL, K, lam=LAM)
    challenge = verifier.challenge()
    prover = ProverSession(pirate.marking_key, pirate.verification_key, world.owner)
    prover.receive(challenge)
    with pytest.raises(RemoteProtocolError, match="not the one derived from the VRF output"):
        verifier.receive(prover.reveal())


# ---- the audit of re-signed verdicts -------------------------------------------------------------------------

def resigned(world: World, challenge: dsse.Envelope, reveal: dsse.Envelope, verdict_env: dsse.Envelope, *,
             results: tuple[ItemResult, ...] | None = None, p0: Fraction | None = None,
             lam: int | None = None) -> Transcript:
    """The transcript with its verdict rebuilt by the verifier's own rule from other
    parameters and signed again: self-consistent, so only the audit's checks of those
    parameters against the key and the reveal can catch it."""
    verdict = decode(verdict_env, (Verdict,))
    rebuilt = build_verdict(world.pair.verification_key, Challenge.digest_of(challenge), Reveal.digest_of(reveal),
                            verdict.model, verdict.results if results is None else results,
                            verdict.p0 if p0 is None else p0, verdict.lam if lam is None else lam,
                            verdict.registration, verdict.decided)
    return Transcript(world.pair.signed_vk, challenge, reveal, rebuilt.sign(world.verifier))


@pytest.fixture(scope="module")
def honest(world):
    return world.run(K)


def test_the_honest_transcript_audits(world, honest):
    transcript = resigned(world, *honest)
    assert audit(transcript).verdict == decode(honest[2], (Verdict,))


@pytest.mark.parametrize("p0", [Fraction(1, 2), Fraction(1, 11), Fraction(1, 9)])
def test_a_verdict_resigned_with_another_p0_is_refused(world, honest, p0):
    with pytest.raises(InvalidOpening, match="p0="):
        audit(resigned(world, *honest, p0=p0))


@pytest.mark.parametrize("change", ["drop", "add", "other-subset", "relabel"])
def test_a_verdict_resigned_over_other_items_is_refused(world, honest, change):
    results = list(decode(honest[2], (Verdict,)).results)
    mk = world.pair.marking_key
    others = [o for o in mk.openings if o.index not in {r.index for r in results}]
    if change == "drop":  # k - 1 items
        del results[-1]
    elif change == "add":  # k + 1 items
        results.append(ItemResult(others[0].index, others[0].label, others[0].label))
    elif change == "other-subset":
        results[0] = ItemResult(others[0].index, others[0].label, others[0].label)
    else:
        results[0] = ItemResult(results[0].index, (results[0].label + 1) % L, (results[0].label + 1) % L)
    # A verdict over k - 1 or k + 1 items is refused by the cheap check on k, before
    # any opening is compared; one over k other items by the comparison itself.
    expected = ("it judges another challenge" if change in ("drop", "add")
                else "items or labels are not those of the reveal")
    with pytest.raises(InvalidOpening, match=expected):
        audit(resigned(world, *honest, results=tuple(sorted(results, key=lambda r: r.index))))


def test_a_verdict_with_another_lambda_but_the_old_decision_is_refused(world):
    # Stated lambda and decision must agree: 2 matches of 8 at p0 = 1/10 pass lambda = 1 but
    # not lambda = 3 (tau is 3), so a verdict claiming acceptance "at 3" is refused.
    challenge, reveal, verdict_env = world.run(K, correct=2)
    verdict = decode(verdict_env, (Verdict,))
    assert verdict.lam == LAM and verdict.matches == 2 and not verdict.accepted
    forged = replace(verdict, tau=threshold(K, P0, 1), accepted=True)
    with pytest.raises(InvalidOpening, match="decision, digests or caveats"):
        audit(Transcript(world.pair.signed_vk, challenge, reveal, forged.sign(world.verifier)))


def test_a_verdict_with_other_matches_than_its_results_is_refused(world):
    challenge, reveal, verdict_env = world.run(N, correct=15)
    verdict = decode(verdict_env, (Verdict,))
    forged = replace(verdict, matches=16, accepted=True)
    with pytest.raises(InvalidOpening, match="decision, digests or caveats"):
        audit(Transcript(world.pair.signed_vk, challenge, reveal, forged.sign(world.verifier)))


# ---- reveals with one index too many or too few --------------------------------------------------------------

@pytest.mark.parametrize("change", ["extra", "missing"])
def test_a_reveal_with_one_extra_or_one_missing_index_is_refused(world, change):
    session = VerifierSession(world.pair.verification_key, world.verifier, MODEL, K, lam=LAM)
    challenge = session.challenge()
    indices = list(session.subset)
    if change == "extra":
        indices = sorted([*indices, next(i for i in range(N) if i not in indices)])
    else:
        del indices[len(indices) // 2]
    mk, vk = world.pair.marking_key, world.pair.verification_key
    reveal = Reveal(Challenge.digest_of(challenge), vk.digest, vk.scheme,
                    tuple(mk.openings[i] for i in indices)).sign(world.owner)
    with pytest.raises(RemoteProtocolError, match=f"{change} \\[[0-9]"):
        session.receive(reveal)


# ---- the leakage budget, exactly at its limit ----------------------------------------------------------------

def respond(world: World, ledger: Ledger, k: int, budget: Fraction):
    verifier = VerifierSession(world.pair.verification_key, world.verifier, MODEL, k, lam=LAM)
    challenge = verifier.challenge()
    prover = ProverSession(world.pair.marking_key, world.pair.verification_key, world.owner)
    return set(verifier.subset), ledger.respond(prover, challenge, budget=budget)


def test_a_budget_is_spent_up_to_its_limit_and_no_further(world, tmp_path: Path):
    budget = Fraction(K, N)
    ledger = Ledger.open(tmp_path / "ledger.sqlite", world.pair.verification_key)
    first, response = respond(world, ledger, K, budget)
    assert response.outcome is Outcome.REVEALED and response.revealed == K  # exactly at the budget: allowed
    # Any further challenge that opens even one new item goes past it, however small it is.
    refused = 0
    for k in (1, 2, 3, 1, 2, 3):
        subset, response = respond(world, ledger, k, budget)
        assert response.outcome is (Outcome.REVEALED if subset <= first else Outcome.REFUSED)
        refused += response.outcome is Outcome.REFUSED
    assert refused  # all six inside the first subset has probability below 1e-4
    assert ledger.revealed_indices() == frozenset(first)


def test_a_budget_counts_every_challenge_so_far(world, tmp_path: Path):
    # Two challenges of 3 each under a budget of 5 of 20: each fits alone, not both together
    # (unless the second happens to open at most 2 new items).
    ledger = Ledger.open(tmp_path / "ledger.sqlite", world.pair.verification_key)
    budget = Fraction(5, N)
    first, response = respond(world, ledger, 3, budget)
    assert response.outcome is Outcome.REVEALED
    second, response = respond(world, ledger, 3, budget)
    assert response.outcome is (Outcome.REVEALED if len(first | second) <= 5 else Outcome.REFUSED)
    assert len(ledger.revealed_indices()) <= 5


# ---- the sample size, imported items and label ranges (survivors of benchmarks/mutation.py) -------------------

@pytest.mark.parametrize("k", [-1, 0, MAX_K + 1, 2 * MAX_K])
def test_sample_sizes_outside_one_to_max_k_are_refused(k):
    with pytest.raises(InvalidInput, match="sample size"):
        threshold(k, P0)


@pytest.fixture(scope="module")
def imported(world) -> KeyPair:
    # 3x16x16: canonical images longer than 256 bytes, beyond CPython's small-int cache,
    # so an identity comparison of lengths would fail on them.
    return keygen_imported(owner=world.owner, images=[bytes([i]) * 768 for i in range(4)], labels=[3, 1, 4, 1],
                           num_classes=L, input_shape=(3, 16, 16))


def open_imported(pair: KeyPair, opening: ItemOpening):
    vk = pair.verification_key
    return open_item(opening, vk.commitments[opening.index], kind=vk.kind, num_classes=L,
                     input_shape=vk.input_shape, vrf_key=None, owner=vk.owner)


def test_an_honest_imported_item_opens_to_its_pixels(imported):
    item = open_imported(imported, imported.marking_key.openings[2])
    assert (item.index, item.label, item.seed, item.pixels) == (2, 4, None, bytes([2]) * 768)


@pytest.mark.parametrize("bend, fragment", [
    ("short", "not a canonical 3x16x16 image"), ("long", "not a canonical 3x16x16 image"),
    ("other-shape", "not a canonical 3x16x16 image"), ("with-proof", "opens with its image"),
    ("no-image", "opens with its image")])
def test_an_imported_item_opens_only_with_its_canonical_image(imported, bend, fragment):
    opening = imported.marking_key.openings[2]
    image = opening.image
    assert image is not None
    bent = {"short": replace(opening, image=image[:-1]), "long": replace(opening, image=image + b"\0"),
            "other-shape": replace(opening, image=image_header((3, 8, 32)) + image[len(image_header((3, 16, 16))):]),
            "with-proof": replace(opening, vrf_proof=bytes(80)), "no-image": replace(opening, image=None)}[bend]
    with pytest.raises(InvalidOpening, match=fragment):
        open_imported(imported, bent)


@pytest.mark.parametrize("label", [-1, L, L + 1])
def test_a_label_outside_the_classes_is_refused(world, imported, label):
    for pair in (world.pair, imported):
        opening = replace(pair.marking_key.openings[0], label=label)
        with pytest.raises(InvalidOpening, match="outside"):
            vk = pair.verification_key
            open_item(opening, vk.commitments[0], kind=vk.kind, num_classes=L, input_shape=vk.input_shape,
                      vrf_key=vk.vrf_key, owner=vk.owner)


def test_derived_and_margin_items_are_seeded_and_imported_ones_are_not():
    assert TriggerKind.DERIVED.seeded and TriggerKind.MARGIN.seeded and not TriggerKind.IMPORTED.seeded


def test_the_vrf_input_of_an_item_is_tag_owner_and_a_four_byte_index(world):
    # Pinned bytes: keys made before a change of this encoding must keep verifying.
    owner = world.owner.public_key
    assert vrf_alpha(258, owner) == b"wmark/trigger/v1" + bytes.fromhex(owner.keyid) + b"\x00\x00\x01\x02"


@pytest.mark.parametrize("change", ["other-key", "other-key-ff", "fewer-items", "more-items"])
def test_an_audit_refuses_a_challenge_that_names_another_key(world, change):
    # The reveal and verdict follow the challenge faithfully, so only the audit's check of
    # the challenge against the key can refuse: another key's digest, or another n.
    vk, mk = world.pair.verification_key, world.pair.marking_key
    other = {"other-key": bytes(32), "other-key-ff": b"\xff" * 32}.get(change)
    n = {"fewer-items": N - 1, "more-items": N + 1}.get(change, N)
    for nonce in range(256):  # the first challenge whose subset has openings (with n = N + 1, none of index N)
        challenge = Challenge(other or vk.digest, MODEL, n, K, bytes([nonce]) * 32, world.verifier.public_key,
                              "2026-01-01T00:00:00+00:00").sign(world.verifier)
        digest = Challenge.digest_of(challenge)
        subset = sample_subset(digest, n, K)
        if max(subset) < N:
            break
    reveal = Reveal(digest, vk.digest, vk.scheme, tuple(mk.openings[i] for i in subset)).sign(world.owner)
    results = tuple(ItemResult(i, mk.openings[i].label, mk.openings[i].label) for i in subset)
    verdict = build_verdict(vk, digest, Reveal.digest_of(reveal), MODEL, results, P0, 40, None, "now")
    with pytest.raises(InvalidOpening, match="names another verification key"):
        audit(Transcript(world.pair.signed_vk, challenge, reveal, verdict.sign(world.verifier)))


def test_a_ledger_answers_only_for_its_own_key(world, tmp_path: Path):
    # Other keys on both sides of this key's digest, so that no ordering of digests passes for equality.
    ledger = Ledger.open(tmp_path / "ledger.sqlite", world.pair.verification_key)
    mine = world.pair.verification_key.digest
    sides: dict[bool, KeyPair] = {}
    while len(sides) < 2:
        other = keygen_derived(owner=world.owner, n=2, num_classes=L, input_shape=(1, 8, 8))
        sides.setdefault(other.verification_key.digest > mine, other)
    for other in sides.values():
        verifier = VerifierSession(other.verification_key, world.verifier, MODEL, 1, lam=LAM)
        challenge = verifier.challenge()
        session = ProverSession(other.marking_key, other.verification_key, world.owner)
        event = session.receive(challenge)
        with pytest.raises(LocalProtocolError, match="another verification key"):
            ledger.answer(session, event, challenge, budget=Fraction(1))
    assert ledger.entries() == ()


def test_a_reveal_for_another_challenge_is_refused_whichever_digest_is_larger(world):
    # Reveals answering other challenges until one digest of each order is seen, so that no
    # ordering comparison can stand in for the equality check.
    seen: set[bool] = set()
    while len(seen) < 2:
        session = VerifierSession(world.pair.verification_key, world.verifier, MODEL, K, lam=LAM)
        mine = Challenge.digest_of(session.challenge())
        other = VerifierSession(world.pair.verification_key, world.verifier, MODEL, K, lam=LAM).challenge()
        prover = ProverSession(world.pair.marking_key, world.pair.verification_key, world.owner)
        prover.receive(other)
        seen.add(Challenge.digest_of(other) > mine)
        with pytest.raises(RemoteProtocolError, match="another challenge"):
            session.receive(prover.reveal())


def test_only_verdicts_on_imported_sets_carry_the_imported_caveat(world, imported):
    derived = decode(world.run(K)[2], (Verdict,))
    verifier = VerifierSession(imported.verification_key, world.verifier, MODEL, 2, p0=P0, lam=LAM)
    prover = ProverSession(imported.marking_key, imported.verification_key, world.owner)
    prover.receive(verifier.challenge())
    event = verifier.receive(prover.reveal())
    assert isinstance(event, RevealAccepted)
    verdict = decode(verifier.decide({item.index: item.label for item in event.items}), (Verdict,))
    assert CAVEAT_IMPORTED in verdict.caveats and CAVEAT_IMPORTED not in derived.caveats


# ---- the p-value of every decision, and the matches it accepts (survivors of the full mutation run) -----------

@settings(deadline=None, max_examples=60)
@given(k=st.integers(1, 80), p0=st.sampled_from([Fraction(1, 2), Fraction(1, 10), Fraction(3, 7)]),
       lam=st.integers(1, 40), data=st.data())
def test_every_decision_reports_the_exact_tail_of_its_matches(k, p0, lam, data):
    # Matches far below tau, where the threshold's scan never reaches them, included.
    matches = data.draw(st.integers(0, k))
    d = decide(matches, k, p0, lam)
    assert d.p_value == tail(matches, k, p0)
    assert d.accepted is (d.tau is not None and matches >= d.tau)


@pytest.mark.parametrize("matches", [257, 300, 350])
def test_tails_beyond_the_small_integers_are_exact(matches):
    # Past 256 CPython's ints are distinct objects, so an identity test could not stand in for
    # the sum's stopping comparison; k = 700 sums the lower side for all three.
    k, p0 = 700, Fraction(1, 2)
    assert tail(matches, k, p0) == Fraction(sum(math.comb(k, j) for j in range(matches, k + 1)), 2**k)


@pytest.mark.parametrize("p0", [Fraction(0), Fraction(1), Fraction(3, 2), Fraction(-1, 2)])
def test_a_p0_outside_zero_to_one_is_refused(p0):
    for work in (lambda: tail(1, K, p0), lambda: threshold(K, p0), lambda: decide(1, K, p0)):
        with pytest.raises(InvalidInput, match="must be in"):
            work()


def test_a_p0_denominator_is_allowed_up_to_its_bound_and_no_further():
    assert threshold(K, Fraction(1, MAX_P0_DENOMINATOR)) is not None
    with pytest.raises(InvalidInput, match="denominator"):
        threshold(K, Fraction(1, MAX_P0_DENOMINATOR + 1))


@pytest.mark.parametrize("lam", [0, -1])
def test_a_lambda_below_one_is_refused(lam):
    # lambda = 0 would accept whatever tail is <= 1: every model.
    with pytest.raises(InvalidInput, match="lambda="):
        threshold(K, P0, lam)


def test_lambda_is_accepted_from_one_to_its_bound():
    # The bound's edges: at lambda = 1 a tail of 1/10 (one match of one at p0 = 1/10) is significant;
    # at MAX_LAMBDA one match of one is not (90 of 100 are), but the question is answered, not refused.
    assert threshold(1, Fraction(1, 10), 1) == 1
    assert decide(1, 1, Fraction(1, 10), 1).accepted and not decide(0, 1, Fraction(1, 10), 1).accepted
    assert threshold(1, Fraction(1, 10), MAX_LAMBDA) is None
    assert threshold(100, Fraction(1, 10), MAX_LAMBDA) == 90
    with pytest.raises(InvalidInput, match="lambda="):
        threshold(1, Fraction(1, 10), MAX_LAMBDA + 1)


@pytest.mark.parametrize("matches", [-1, K + 1])
def test_matches_outside_zero_to_k_are_refused(matches):
    with pytest.raises(InvalidInput, match="matches out of"):
        decide(matches, K, P0)


# ---- a verifier's share of the budget, and the allow-list (survivors of the full mutation run) ----------------

def respond_as(world: World, ledger: Ledger, verifier: SigningKey, k: int, policy: VerifierPolicy):
    session = VerifierSession(world.pair.verification_key, verifier, MODEL, k, lam=LAM)
    challenge = session.challenge()
    prover = ProverSession(world.pair.marking_key, world.pair.verification_key, world.owner)
    return set(session.subset), ledger.respond(prover, challenge, budget=Fraction(1), policy=policy)


@pytest.mark.parametrize("k, outcome", [(2, Outcome.REVEALED), (3, Outcome.REVEALED), (4, Outcome.REFUSED)])
def test_a_verifier_share_is_spent_up_to_its_limit_and_no_further(world, tmp_path: Path, k, outcome):
    # A first challenge opens k new items: below, exactly at and past a share of 3 of 20.
    ledger = Ledger.open(tmp_path / "ledger.sqlite", world.pair.verification_key)
    _, response = respond_as(world, ledger, world.verifier, k, VerifierPolicy(share=Fraction(3, N)))
    assert response.outcome is outcome
    assert len(ledger.revealed_indices()) == (k if outcome is Outcome.REVEALED else 0)


def test_a_verifier_share_counts_its_own_earlier_challenges_only(world, tmp_path: Path):
    # A share of one item: another verifier's item does not count against it, this verifier's
    # first new item spends it, and every later challenge that opens a new item is refused.
    ledger = Ledger.open(tmp_path / "ledger.sqlite", world.pair.verification_key)
    policy = VerifierPolicy(share=Fraction(1, N))
    _, response = respond_as(world, ledger, SigningKey.generate(), 1, policy)
    assert response.outcome is Outcome.REVEALED
    spent = refused = 0
    for _ in range(12):
        before = ledger.revealed_indices()
        subset, response = respond_as(world, ledger, world.verifier, 1, policy)
        new = len(subset - before)
        fits = spent + new <= 1
        assert response.outcome is (Outcome.REVEALED if fits else Outcome.REFUSED)
        spent, refused = spent + (new if fits else 0), refused + (not fits)
    assert spent == 1 and refused  # otherwise 11 of 12 draws hit revealed items: below 1e-10


def test_only_verifiers_on_the_allow_list_are_answered(world, tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.sqlite", world.pair.verification_key)
    other = SigningKey.generate()
    policy = VerifierPolicy(allowed=frozenset({world.verifier.public_key.fingerprint}))
    _, response = respond_as(world, ledger, other, 1, policy)
    assert response.outcome is Outcome.REFUSED and ledger.revealed_indices() == frozenset()
    _, response = respond_as(world, ledger, world.verifier, 1, policy)
    assert response.outcome is Outcome.REVEALED and len(ledger.revealed_indices()) == 1


# ---- zero-knowledge reveals: only for a ZK challenge on a ZK key, labels in range -----------------------------

ZK_PARAMETERS = ZkParameters(srs_sha256=b"\x01" * 32, srs_logrows=15, srs_origin=SrsOrigin.VERIFIER,
                             circuit_sha256=b"\x02" * 32)


def zk_pair(owner: SigningKey, label_of=lambda seed, _: derive_label(seed, L)) -> KeyPair:
    vrf_sk = VrfSecretKey.generate()
    pairs = _seeded_items(vrf_sk, owner, N, label_of, Scheme.HASH, None)
    return _finish(owner, Scheme.HASH, TriggerKind.DERIVED, (1, 8, 8), L, pairs, vrf_sk, FakeHasher())


def zk_reveal_for(pair: KeyPair, owner: SigningKey, vk: VerificationKey, challenge_env: dsse.Envelope):
    """An owner's zero-knowledge reveal of ``pair``'s challenged items, bound to ``vk``."""
    challenge = decode(challenge_env, (Challenge,))
    assert isinstance(challenge, Challenge)
    digest = Challenge.digest_of(challenge_env)
    mk, zk = pair.marking_key, pair.verification_key.zk
    assert zk is not None
    items = tuple(ZkItem(i, mk.openings[i].label, mk.openings[i].label_randomness,
                         ZkStatement(zk.hashes[i], mk.openings[i].label, b"proof"))
                  for i in subset_of(challenge, digest))
    return ZkReveal(digest, vk.digest, vk.scheme, items).sign(owner), challenge, digest


def test_a_zero_knowledge_reveal_is_checked_only_for_a_zk_challenge_on_a_zk_key(world):
    pair = zk_pair(world.owner)
    vk = pair.verification_key
    challenge_env = ZkVerifierSession(vk, world.verifier, MODEL, K, zk=ZK_PARAMETERS, lam=LAM).challenge()
    reveal, challenge, digest = zk_reveal_for(pair, world.owner, vk, challenge_env)
    assert [i.index for i in check_zk_reveal(reveal, vk, challenge, digest)[1]] == list(subset_of(challenge, digest))
    # The same key and items without the ZK commitments (re-signed by the owner, as an auditor
    # might be handed it): the proofs would be about hidden inputs the key never committed to.
    plain = replace(vk, zk=None)
    reveal, challenge, digest = zk_reveal_for(pair, world.owner, plain, challenge_env)
    with pytest.raises(InvalidOpening, match="zero-knowledge"):
        check_zk_reveal(reveal, plain, challenge, digest)
    # A challenge that asked for openings, not proofs.
    plain_env = VerifierSession(vk, world.verifier, MODEL, K, lam=LAM).challenge()
    reveal, challenge, digest = zk_reveal_for(pair, world.owner, vk, plain_env)
    with pytest.raises(InvalidOpening, match="zero-knowledge"):
        check_zk_reveal(reveal, vk, challenge, digest)


@pytest.mark.parametrize("label", [L, L + 1])  # a negative label cannot even be committed to
def test_a_zero_knowledge_reveal_of_a_label_outside_the_classes_is_refused(world, label):
    # A cheating owner committed every item to a label no model can output.
    pair = zk_pair(world.owner, lambda seed, _: label)
    vk = pair.verification_key
    challenge_env = ZkVerifierSession(vk, world.verifier, MODEL, K, zk=ZK_PARAMETERS, lam=LAM).challenge()
    reveal, challenge, digest = zk_reveal_for(pair, world.owner, vk, challenge_env)
    with pytest.raises(InvalidOpening, match="outside"):
        check_zk_reveal(reveal, vk, challenge, digest)


# ---- audits the lambda-and-p0 binding of a challenge cannot stand in for (survivors of the full run) ----------

def legacy_transcript(world: World, p0: Fraction) -> Transcript:
    """A transcript whose challenge binds neither lambda nor p0 (an older challenge, or
    one the verifier crafted so), with a verdict decided at ``p0``: only the audit's
    own check of p0 against the key is left to catch a wrong one."""
    honest = VerifierSession(world.pair.verification_key, world.verifier, MODEL, K, lam=LAM).challenge()
    challenge = replace(decode(honest, (Challenge,)), lam=None, p0=None).sign(world.verifier)
    prover = ProverSession(world.pair.marking_key, world.pair.verification_key, world.owner)
    prover.receive(challenge)
    reveal = prover.reveal()
    revealed = decode(reveal, (Reveal,))
    assert isinstance(revealed, Reveal)
    results = tuple(ItemResult(o.index, o.label, o.label) for o in revealed.openings)
    verdict = build_verdict(world.pair.verification_key, Challenge.digest_of(challenge), Reveal.digest_of(reveal),
                            MODEL, results, p0, LAM, None, "2026-01-01T00:00:00+00:00")
    return Transcript(world.pair.signed_vk, challenge, reveal, verdict.sign(world.verifier))


@pytest.mark.parametrize("p0", [Fraction(1, 2), Fraction(1, 9), Fraction(1, 11), Fraction(1, 100)])
def test_an_audit_checks_p0_against_the_key_when_the_challenge_binds_none(world, p0):
    assert audit(legacy_transcript(world, P0)).verdict.p0 == P0
    with pytest.raises(InvalidOpening, match="set over 10 classes has p0=1/10"):
        audit(legacy_transcript(world, p0))


def test_an_honest_transcript_on_a_key_of_more_than_256_items_audits(world):
    # n and k past CPython's small-int cache, so an identity test of either could not pass for equality.
    pair = keygen_derived(owner=world.owner, n=300, num_classes=L, input_shape=(1, 8, 8))
    big = World(pair, world.owner, world.verifier)
    challenge, reveal, verdict = big.run(260)
    assert audit(Transcript(pair.signed_vk, challenge, reveal, verdict)).verdict.matches == 260


@pytest.mark.parametrize("lam", [1, LAM + 1, 40])
def test_a_verdict_resigned_with_another_lambda_than_its_challenge_fixed_is_refused(world, honest, lam):
    with pytest.raises(InvalidOpening, match="the challenge fixed lambda=3"):
        audit(resigned(world, *honest, lam=lam))


@pytest.mark.parametrize("step", [1, -1])
def test_a_verdict_with_one_label_higher_or_lower_than_revealed_is_refused(world, honest, step):
    # Both directions, so that no ordering of the result lists can pass for their equality.
    results = list(decode(honest[2], (Verdict,)).results)
    at = next(i for i, r in enumerate(results) if 0 <= r.label + step < L)
    label = results[at].label + step
    results[at] = ItemResult(results[at].index, label, label)
    with pytest.raises(InvalidOpening, match="items or labels are not those of the reveal"):
        audit(resigned(world, *honest, results=tuple(results)))


def test_a_registry_bound_transcript_audits_only_with_its_receipt(world, tmp_path: Path):
    pair = keygen_derived(owner=world.owner, n=N, num_classes=L, input_shape=(1, 8, 8),
                          label_source=LabelSource.REGISTRY)
    vk = pair.verification_key
    with LogStore.open(tmp_path / "log") as store:
        receipt, log_key = store.register(vk), store.public_key
    registration = Registration(receipt, log_key)
    verifier = VerifierSession(vk, world.verifier, MODEL, K, lam=LAM, registration=registration.verify(vk))
    challenge = verifier.challenge()
    prover = ProverSession(pair.marking_key, vk, world.owner)
    prover.receive(challenge)
    reveal = prover.reveal()
    event = verifier.receive(reveal)
    assert isinstance(event, RevealAccepted)
    verdict = verifier.decide({item.index: item.label for item in event.items})
    report = audit(Transcript(pair.signed_vk, challenge, reveal, verdict, registration))
    assert report.verdict.accepted and report.verdict.registration == registration.verify(vk)
    with pytest.raises(InvalidOpening, match="registration receipt"):
        audit(Transcript(pair.signed_vk, challenge, reveal, verdict))


# ---- margin items: opened against the verifier's copy of the query split ----------------------------------

MARGIN_SPLIT = QuerySplit("synthetic", "test", (1, 4, 4), bytes(i % 251 for i in range(60 * 16)),
                          tuple(i % L for i in range(60)))
MARGIN_ITEMS = MarginItems(MARGIN_SPLIT, N, L)


@pytest.fixture(scope="module")
def margin_pair(world) -> KeyPair:
    return keygen_margin(owner=world.owner, n=N, num_classes=L, split=MARGIN_SPLIT)


def open_margin(pair: KeyPair, opening: ItemOpening, margin: MarginItems | None):
    vk = pair.verification_key
    return open_item(opening, vk.commitments[opening.index], kind=vk.kind, num_classes=L,
                     input_shape=vk.input_shape, vrf_key=vk.vrf_key, owner=vk.owner, margin=margin)


def test_an_honest_margin_item_opens_to_its_image_of_the_split(margin_pair):
    for opening in margin_pair.marking_key.openings[:4]:
        item = open_margin(margin_pair, opening, MARGIN_ITEMS)
        position, label = MARGIN_ITEMS.item(item.seed, opening.index)
        assert item.pixels == MARGIN_SPLIT.image(position) and item.label == label == opening.label
        assert label != MARGIN_SPLIT.labels[position]  # a margin label is never the true class


def test_a_margin_item_is_opened_only_against_a_query_split(margin_pair):
    with pytest.raises(LocalProtocolError, match="query split"):
        open_margin(margin_pair, margin_pair.marking_key.openings[0], None)


def test_a_margin_item_with_a_chosen_label_is_refused(world):
    # A pirate's margin key whose labels are the split's true ones, which any good model answers.
    vrf_sk = VrfSecretKey.generate()
    pairs = _seeded_items(vrf_sk, world.owner, N, lambda seed, i: MARGIN_SPLIT.labels[MARGIN_ITEMS.item(seed, i)[0]],
                          Scheme.HASH, None)
    pirate = _finish(world.owner, Scheme.HASH, TriggerKind.MARGIN, MARGIN_SPLIT.shape, L, pairs, vrf_sk, None,
                     margin=MARGIN_SPLIT.source)
    with pytest.raises(InvalidOpening, match="not the one derived from the VRF output"):
        open_margin(pirate, pirate.marking_key.openings[0], MARGIN_ITEMS)


def test_an_imported_item_of_a_small_shape_opens():
    # 2x2 pixels after a 20-byte header: the lengths share no bit with their sum, so no bitwise
    # operation could stand in for the addition of the two lengths.
    owner = SigningKey.generate()
    pair = keygen_imported(owner=owner, images=[bytes([7, 8, 9, 10])], labels=[1], num_classes=L,
                           input_shape=(1, 2, 2))
    vk = pair.verification_key
    item = open_item(pair.marking_key.openings[0], vk.commitments[0], kind=vk.kind, num_classes=L,
                     input_shape=vk.input_shape, vrf_key=None, owner=vk.owner)
    assert item.pixels == bytes([7, 8, 9, 10])


def test_a_zero_knowledge_transcript_audits_only_with_a_zero_knowledge_verdict(world):
    pair = zk_pair(world.owner)
    vk, mk = pair.verification_key, pair.marking_key
    assert vk.zk is not None
    verifier = ZkVerifierSession(vk, world.verifier, MODEL, K, zk=ZK_PARAMETERS, lam=LAM)
    challenge = verifier.challenge()
    prover = ProverSession(mk, vk, world.owner)
    prover.receive(challenge)
    reveal = prover.zk_reveal({i: ZkStatement(vk.zk.hashes[i], mk.openings[i].label, b"proof") for i in range(N)})
    event = verifier.receive(reveal)
    verdict_env = verifier.decide_zk({item.index: None for item in event.items})
    report = audit(Transcript(pair.signed_vk, challenge, reveal, verdict_env))
    assert report.verdict.accepted and report.verdict.zk is not None
    plain = replace(decode(verdict_env, (Verdict,)), zk=None)
    with pytest.raises(InvalidOpening, match="zero-knowledge verdict"):
        audit(Transcript(pair.signed_vk, challenge, reveal, plain.sign(world.verifier)))


def test_a_derived_label_past_256_opens():
    # Past CPython's small-int cache, so an identity test of the two labels could not pass for equality.
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=12, num_classes=1000, input_shape=(1, 8, 8))
    vk = pair.verification_key
    big = [o for o in pair.marking_key.openings if o.label > 256]
    assert big  # all 12 labels below 257 of 1000 has probability below 1e-7
    item = open_item(big[0], vk.commitments[big[0].index], kind=vk.kind, num_classes=1000,
                     input_shape=vk.input_shape, vrf_key=vk.vrf_key, owner=vk.owner)
    assert item.label == big[0].label


@pytest.mark.parametrize("bend", ["no-proof", "no-vrf-key", "with-image"])
def test_a_derived_item_opens_only_with_its_proof_and_the_key_vrf_key(world, bend):
    vk = world.pair.verification_key
    opening = world.pair.marking_key.openings[0]
    if bend == "no-proof":
        opening = replace(opening, vrf_proof=None)
    elif bend == "with-image":  # an image beside the proof: one opening, two readings of the item
        opening = replace(opening, image=image_header((1, 8, 8)) + bytes(64))
    with pytest.raises(InvalidOpening, match="opens with its VRF proof only"):
        open_item(opening, vk.commitments[0], kind=vk.kind, num_classes=L, input_shape=vk.input_shape,
                  vrf_key=None if bend == "no-vrf-key" else vk.vrf_key, owner=vk.owner)


def test_the_label_message_is_its_tag_and_a_four_byte_label():
    # The committed form of a label (a format: keys made earlier open only if it never changes).
    assert label_message(3) == b"wmark/label-value/v1\x00\x00\x00\x03"
    assert label_message(L - 1 + 256) == b"wmark/label-value/v1\x00\x00\x01\x09"
