"""Budget drain and CPU drain: any verifier key could spend the whole leakage
budget, start zero-knowledge sessions without limit, and have the owner's
ledger record whatever verdict it claimed.  The owner's policy bounds who
may spend how much (docs/design.md section 4), every ZK session is recorded,
and a verdict that does not follow from its own results is recorded as such."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wmark.files import atomic_write
from wmark.harness.claims import run_main
from wmark.protocol.beacon import LabelSource
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.messages import ItemResult, ModelRef, Verdict, decode
from wmark.protocol.session import ChallengeReceived, ProverSession, VerifierSession, ZkVerifierSession, build_verdict
from wmark.protocol.transparency import verify_receipt
from wmark.prover.cli import main as prover_main
from wmark.prover.ledger import Ledger, VerifierPolicy
from wmark.registry import LogStore

pytestmark = pytest.mark.adversarial


def _challenge(world, verifier: SigningKey, k: int, path):
    # lambda 3: challenges bind lambda, and one that could never accept is refused (small k here).
    session = VerifierSession(world.pair.verification_key, verifier, ModelRef(sha256=bytes(32)), k, lam=3)
    atomic_write(path, session.challenge().to_json())
    return session


def _prove(world, challenge, out, ledger, *extra) -> tuple[int, str]:
    return run_main(prover_main, "prove", "--mk", world.mk, "--vk", world.vk, "--challenge", challenge,
                    "--out", out, "--ledger", ledger, *extra)


def test_a_verifier_not_on_the_allow_list_is_refused_and_recorded(digits_world, tmp_path):
    allowed, stranger = SigningKey.generate(), SigningKey.generate()
    save_signing_key(tmp_path / "allowed.pem", allowed)
    _challenge(digits_world, stranger, 5, tmp_path / "c.json")
    code, out = _prove(digits_world, tmp_path / "c.json", tmp_path / "r.json", tmp_path / "l.sqlite",
                       "--allow-verifier", tmp_path / "allowed.pub")
    assert code == 1 and "not one this prover answers" in out, out
    [entry] = Ledger.open_existing(tmp_path / "l.sqlite").entries()
    assert entry.outcome.value == "refused" and entry.new_indices == ()
    _challenge(digits_world, allowed, 5, tmp_path / "c2.json")
    code, out = _prove(digits_world, tmp_path / "c2.json", tmp_path / "r2.json", tmp_path / "l.sqlite",
                       "--allow-verifier", tmp_path / "allowed.pub")
    assert code == 0, out


def test_one_verifier_cannot_spend_more_than_its_share(digits_world, tmp_path):
    """Three fresh challenges of k = 20 from one key drained a 50% budget; with a
    share of 25% the second is refused and another verifier can still be answered."""
    greedy, other = SigningKey.generate(), SigningKey.generate()
    codes = []
    for i in range(3):
        _challenge(digits_world, greedy, 20, tmp_path / f"c{i}.json")
        codes.append(_prove(digits_world, tmp_path / f"c{i}.json", tmp_path / f"r{i}.json", tmp_path / "l.sqlite",
                            "--verifier-share", "0.25")[0])
    assert codes[0] == 0 and 1 in codes[1:], codes
    _challenge(digits_world, other, 20, tmp_path / "other.json")
    code, out = _prove(digits_world, tmp_path / "other.json", tmp_path / "ro.json", tmp_path / "l.sqlite",
                       "--verifier-share", "0.25")
    assert code == 0, out


def test_zero_knowledge_sessions_are_recorded_and_rate_limited(tmp_path):
    from tests.test_zk_protocol import PARAMETERS, FakeHasher  # the protocol's ZK fixtures, no ezkl
    from wmark.protocol.keygen import keygen_derived

    owner, verifier = SigningKey.generate(), SigningKey.generate()
    pair = keygen_derived(owner=owner, n=30, num_classes=10, input_shape=(1, 8, 8), zk=FakeHasher())
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    policy = VerifierPolicy(zk_per_hour=2)
    reasons = []
    for _ in range(3):
        session = ZkVerifierSession(pair.verification_key, verifier, ModelRef(sha256=bytes(32)), 3, zk=PARAMETERS,
                                    lam=8)
        prover = ProverSession(pair.marking_key, pair.verification_key, owner)
        event = prover.receive(session.challenge())
        assert isinstance(event, ChallengeReceived)
        reasons.append(ledger.admit_zk(event, policy=policy))
    assert reasons[:2] == [None, None] and "in the last hour" in reasons[2]
    sessions = ledger.zk_sessions()
    assert [s.outcome for s in sessions] == ["proving", "proving", "refused"]
    assert ledger.summary().revealed == 0


def test_a_verdict_that_does_not_follow_from_its_results_is_recorded_as_a_mismatch(digits_world, tmp_path):
    pair, verifier = digits_world.pair, SigningKey.generate()
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    session = VerifierSession(pair.verification_key, verifier, ModelRef(sha256=bytes(32)), 20)
    prover = ProverSession(pair.marking_key, pair.verification_key, digits_world.owner)
    response = ledger.respond(prover, session.challenge())
    event = session.receive(response.envelope)
    wrong = {item.index: (item.label + 1) % 10 for item in event.items}  # the model matched nothing
    honest = decode(session.decide(wrong), (Verdict,))
    assert not honest.accepted
    claimed = replace(honest, accepted=True, matches=20, tau=16).sign(verifier)  # "ACCEPTED 20/20"
    note = ledger.record_verdict(prover.receive(claimed), pair.verification_key)
    assert note is not None and "its results give 0 matches" in note, note
    [entry] = ledger.entries()
    assert entry.verdicts[0].mismatch == note
    code, out = run_main(prover_main, "ledger", "--ledger", tmp_path / "l.sqlite")
    assert code == 0 and "MISMATCH" in out, out


K = 20  # of 40 items: within the default budget of half


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A registry-bound key pair, registered in a log: its receipt's checked beacon output."""
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=40, num_classes=10, input_shape=(1, 8, 8), label_source=LabelSource.REGISTRY)
    with LogStore.open(tmp_path_factory.mktemp("bound-log")) as store:
        info = verify_receipt(store.register(pair.verification_key), pair.verification_key, store.public_key)
    return owner, pair, info


@pytest.mark.parametrize("lie", ["matches", "labels"])
def test_a_registry_bound_verdict_is_recomputed_from_the_owners_bound_labels(registered, tmp_path, lie):
    """A verifier whose model matched nothing claims ACCEPTED 20/20: by editing the
    verdict's count, or by rewriting each item's label to the model's answer (a verdict
    consistent with its own results, which comparing indices alone let through)."""
    owner, pair, info = registered
    verifier = SigningKey.generate()
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    session = VerifierSession(pair.verification_key, verifier, ModelRef(sha256=bytes(32)), K, registration=info)
    prover = ProverSession(pair.marking_key, pair.verification_key, owner)
    response = ledger.respond(prover, session.challenge())
    event = session.receive(response.envelope)
    wrong = {item.index: (item.label + 1) % 10 for item in event.items}  # the model matched nothing
    honest = decode(session.decide(wrong), (Verdict,))
    assert not honest.accepted and honest.matches == 0
    if lie == "matches":
        claimed = replace(honest, accepted=True, matches=K)
    else:
        results = tuple(ItemResult(r.index, r.predicted, r.predicted) for r in honest.results)
        claimed = build_verdict(pair.verification_key, honest.challenge_digest, honest.reveal_digest, honest.model,
                                results, honest.p0, honest.lam, honest.registration, honest.decided)
    assert claimed.accepted and claimed.matches == K
    note = ledger.record_verdict(prover.receive(claimed.sign(verifier)), pair.verification_key)
    expected = "its results give 0 matches" if lie == "matches" else "labels are not those this owner revealed"
    assert note is not None and expected in note, note
    [entry] = ledger.entries()
    assert entry.verdicts[0].mismatch == note


def test_an_honest_registry_bound_verdict_is_recorded_as_consistent(registered, tmp_path):
    owner, pair, info = registered
    verifier = SigningKey.generate()
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    session = VerifierSession(pair.verification_key, verifier, ModelRef(sha256=bytes(32)), K, registration=info)
    prover = ProverSession(pair.marking_key, pair.verification_key, owner)
    event = session.receive(ledger.respond(prover, session.challenge()).envelope)
    answers = {item.index: item.label if i % 4 else (item.label + 1) % 10 for i, item in enumerate(event.items)}
    assert ledger.record_verdict(prover.receive(session.decide(answers)), pair.verification_key) is None
    [entry] = ledger.entries()
    assert entry.verdicts[0].mismatch is None and entry.verdicts[0].matches == K - K // 4
