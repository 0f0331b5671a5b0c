"""The sans-IO sessions (wmark.protocol.session) under attack.

Hypothesis drives the prover and both verifiers (openings, zero knowledge)
through arbitrary sequences of calls and messages and checks each step
against a transition table kept here, apart from the module's, as an oracle:
an allowed step moves to the expected state; a call out of turn raises
LocalProtocolError (the caller's fault) and a message out of turn
RemoteProtocolError (the peer's), both naming the state and changing
nothing; a message in turn that fails its checks raises RemoteProtocolError
and fails the session.  A test checks that the module's tables
(wmark.protocol.state) are these.  Then every way of bending a reveal,
correctly signed by the real owner key, must be refused: another challenge's
reveal, indices outside or missing from the subset, reordered, and any
changed byte of any opening.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fakes import FakeHasher
from wmark.errors import LocalProtocolError, RemoteProtocolError
from wmark.protocol import state
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.sampling import sample_subset
from wmark.protocol.keygen import KeyPair, keygen_derived
from wmark.protocol.messages import Challenge, ModelRef, Reveal
from wmark.protocol.session import (
    ChallengeReceived,
    ProverSession,
    ProverState,
    Refused,
    RevealAccepted,
    VerdictReceived,
    VerifierSession,
    VerifierState,
    ZkRevealAccepted,
    ZkVerifierSession,
)
from wmark.protocol.state import ProverEvent, VerifierEvent
from wmark.protocol.zk import SrsOrigin, ZkParameters, ZkStatement

N, K = 16, 5
# 5 matches of 5 at p0 = 1/10 have p-value 1e-5 <= 2^-16: a challenge the prover answers.
LAMBDA = 16
SETTINGS = settings(deadline=None, max_examples=60)
ZK_PARAMETERS = ZkParameters(srs_sha256=b"\x01" * 32, srs_logrows=15, srs_origin=SrsOrigin.VERIFIER,
                             circuit_sha256=b"\x02" * 32)


@dataclass(frozen=True)
class Run:
    """The messages of one honest session."""

    challenge: dsse.Envelope
    reveal: dsse.Envelope
    verdict: dsse.Envelope


@dataclass(frozen=True)
class World:
    pair: KeyPair
    owner: SigningKey
    verifier: SigningKey

    def verifier_session(self, k: int = K, lam: int = LAMBDA) -> VerifierSession:
        return VerifierSession(self.pair.verification_key, self.verifier, ModelRef(sha256=bytes(32)), k,
                               lam=lam)

    def zk_verifier_session(self) -> ZkVerifierSession:
        return ZkVerifierSession(self.pair.verification_key, self.verifier, ModelRef(sha256=bytes(32)), K,
                                 zk=ZK_PARAMETERS, lam=LAMBDA)

    def prover_session(self) -> ProverSession:
        return ProverSession(self.pair.marking_key, self.pair.verification_key, self.owner)

    def statements(self) -> dict[int, ZkStatement]:
        """What an honest prover's proofs claim, for every item (the proof system is not run here)."""
        vk, mk = self.pair.verification_key, self.pair.marking_key
        assert vk.zk is not None
        return {i: ZkStatement(vk.zk.hashes[i], mk.openings[i].label, b"proof-%d" % i) for i in range(N)}

    def honest_run(self) -> tuple[dsse.Envelope, dsse.Envelope, dsse.Envelope]:
        """A challenge, its reveal and the verdict on it."""
        verifier, prover = self.verifier_session(), self.prover_session()
        challenge = verifier.challenge()
        prover.receive(challenge)
        reveal = prover.reveal()
        event = verifier.receive(reveal)
        assert isinstance(event, RevealAccepted)
        return challenge, reveal, verifier.decide({i.index: i.label for i in event.items})

    def honest_zk_run(self) -> Run:
        verifier, prover = self.zk_verifier_session(), self.prover_session()
        challenge = verifier.challenge()
        prover.receive(challenge)
        reveal = prover.zk_reveal(self.statements())
        event = verifier.receive(reveal)
        assert isinstance(event, ZkRevealAccepted)
        return Run(challenge, reveal, verifier.decide_zk({i.index: None for i in event.items}))


def make_world(**zk: FakeHasher) -> World:
    owner = SigningKey.generate()
    return World(keygen_derived(owner=owner, n=N, num_classes=10, input_shape=(1, 8, 8), **zk), owner,
                 SigningKey.generate())


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def honest(world):
    return world.honest_run()


@pytest.fixture(scope="module")
def zk_world() -> World:
    """A key with zero-knowledge commitments, which answers both kinds of challenge."""
    return make_world(zk=FakeHasher())


@pytest.fixture(scope="module")
def zk_runs(zk_world) -> tuple[Run, Run]:
    return Run(*zk_world.honest_run()), zk_world.honest_zk_run()


# ---- the oracle: state -> action -> the next state, or the error of a message in turn that fails its checks ----
# An action a row lacks is out of turn: LocalProtocolError for a call, RemoteProtocolError for a message.

P, V = ProverState, VerifierState

PROVER_MESSAGES = frozenset({"challenge", "zk-challenge", "verdict", "reveal-message"})
PROVER_ACTIONS = tuple(sorted(PROVER_MESSAGES)) + ("reveal", "zk_reveal", "refuse")
PROVER_TABLE = {
    P.AWAIT_CHALLENGE: {"challenge": P.DECIDE, "zk-challenge": P.DECIDE_ZK, "verdict": RemoteProtocolError,
                        "reveal-message": RemoteProtocolError},
    P.DECIDE: {"reveal": P.AWAIT_VERDICT, "refuse": P.DONE},
    P.DECIDE_ZK: {"zk_reveal": P.AWAIT_VERDICT, "refuse": P.DONE},
    P.AWAIT_VERDICT: {"verdict": P.DONE, "challenge": RemoteProtocolError, "zk-challenge": RemoteProtocolError,
                      "reveal-message": RemoteProtocolError},
}
# Every legal path, so that random steps after it start from every state, the final ones included.
PROVER_PATHS = ((), ("challenge",), ("challenge", "reveal"), ("challenge", "reveal", "verdict"),
                ("challenge", "refuse"), ("zk-challenge",), ("zk-challenge", "zk_reveal"),
                ("zk-challenge", "zk_reveal", "verdict"), ("zk-challenge", "refuse"))



@dataclass(frozen=True)
class VerifierOracle:
    """Both verifiers run one machine, state for state, and differ in names only: ``answer`` is
    the reveal a verifier waits for, ``other`` a correctly signed reveal that answers its
    challenge wrongly, and ``decide`` the call that ends it."""

    answer: str
    other: str
    decide: str

    @property
    def messages(self) -> frozenset[str]:
        return frozenset({self.answer, "refusal", self.other, "verdict-message"})

    @property
    def actions(self) -> tuple[str, ...]:
        return ("challenge", *sorted(self.messages), self.decide)

    @property
    def table(self) -> dict:
        return {
            V.SEND_CHALLENGE: {"challenge": V.AWAIT_REVEAL},
            V.AWAIT_REVEAL: {self.answer: V.AWAIT_PREDICTIONS, "refusal": V.REFUSED, self.other: RemoteProtocolError,
                             "verdict-message": RemoteProtocolError},
            V.AWAIT_PREDICTIONS: {self.decide: V.DONE},
        }

    @property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        return ((), ("challenge",), ("challenge", self.answer), ("challenge", self.answer, self.decide),
                ("challenge", "refusal"))


VERIFIER = VerifierOracle("reveal", "foreign-reveal", "decide")
# The zero-knowledge verifier: openings are no answer to its challenge.
ZK_VERIFIER = VerifierOracle("zk-reveal", "reveal", "decide_zk")

# How the oracle's actions are named in wmark.protocol.state (the bent messages are no event of their own).
PROVER_EVENTS = {"challenge": ProverEvent.CHALLENGE, "zk-challenge": ProverEvent.ZK_CHALLENGE,
                 "verdict": ProverEvent.VERDICT, "reveal": ProverEvent.REVEAL, "zk_reveal": ProverEvent.ZK_REVEAL,
                 "refuse": ProverEvent.REFUSE}
VERIFIER_EVENTS = {"challenge": VerifierEvent.CHALLENGE, "reveal": VerifierEvent.REVEAL,
                   "refusal": VerifierEvent.REFUSAL, "decide": VerifierEvent.DECIDE}
ZK_VERIFIER_EVENTS = {"challenge": VerifierEvent.CHALLENGE, "zk-reveal": VerifierEvent.ZK_REVEAL,
                      "refusal": VerifierEvent.REFUSAL, "decide_zk": VerifierEvent.DECIDE_ZK}


@pytest.mark.parametrize("machine, oracle, messages, events", [
    (state.PROVER, PROVER_TABLE, PROVER_MESSAGES, PROVER_EVENTS),
    (state.VERIFIER, VERIFIER.table, VERIFIER.messages, VERIFIER_EVENTS),
    (state.ZK_VERIFIER, ZK_VERIFIER.table, ZK_VERIFIER.messages, ZK_VERIFIER_EVENTS),
], ids=["prover", "verifier", "zk-verifier"])
def test_the_module_tables_are_the_oracle(machine, oracle, messages, events):
    steps = {(s, e): following for s, row in machine.table.items() for e, following in row.items()}
    assert steps == {(s, events[action]): following for s, row in oracle.items()
                     for action, following in row.items() if isinstance(following, Enum)}
    assert {e for e in events.values() if e in machine.messages} == {events[a] for a in messages if a in events}


def drive(session, table: Mapping, messages: frozenset[str], actions: list[str], step: Callable[[str], object],
          check: Callable[[str, object], None]) -> None:
    """Take ``actions`` one by one and hold each to the oracle ``table``."""
    for action in actions:
        before = session.state
        listed = table.get(before, {}).get(action)
        if isinstance(listed, Enum):
            result = step(action)
            assert session.state is listed
            check(action, result)
        elif listed is not None:  # a message in turn that fails its checks: the peer's fault, and the end
            with pytest.raises(listed):
                step(action)
            assert session.state is type(before).FAILED
        else:  # out of turn: nothing is done, and the error names the state
            error = RemoteProtocolError if action in messages else LocalProtocolError
            with pytest.raises(error, match=rf"state {re.escape(before.value)}\b"):
                step(action)
            assert session.state is before


# ---- the prover's state machine -------------------------------------------------------------------------------

@SETTINGS
@given(st.sampled_from(PROVER_PATHS), st.lists(st.sampled_from(PROVER_ACTIONS), max_size=5))
def test_the_prover_rejects_every_out_of_order_message_and_call(zk_world, zk_runs, path, steps):
    plain, zk = zk_runs
    session = zk_world.prover_session()
    taken = [plain]  # the run whose challenge the session took last: its verdict and answer are the ones that fit

    def step(action: str):
        if action in ("challenge", "zk-challenge"):
            return session.receive((plain if action == "challenge" else zk).challenge)
        if action == "verdict":
            return session.receive(taken[-1].verdict)
        if action == "reveal-message":
            return session.receive(plain.reveal)
        if action == "reveal":
            return session.reveal()
        if action == "zk_reveal":
            return session.zk_reveal(zk_world.statements())
        return session.refuse("no")

    def check(action: str, result) -> None:
        if action in ("challenge", "zk-challenge"):
            taken.append(plain if action == "challenge" else zk)
            assert isinstance(result, ChallengeReceived) and result.indices == sample_subset(
                Challenge.digest_of(taken[-1].challenge), N, K)
        if action in ("reveal", "zk_reveal"):
            assert result == taken[-1].reveal  # signatures are deterministic: the honest answer, byte for byte
        if action == "verdict":
            assert isinstance(result, VerdictReceived)

    drive(session, PROVER_TABLE, PROVER_MESSAGES, [*path, *steps], step, check)


# ---- the verifiers' state machines ----------------------------------------------------------------------------

def drive_verifier(session, oracle: VerifierOracle, actions: list[str], answer: Callable[[str], dsse.Envelope],
                   decide: Callable[[], object], accepted: type) -> None:
    """:func:`drive` for a verifier: it sends the challenge, receives what ``answer`` gives for
    each message, and ``decide`` ends it; an accepted reveal is ``accepted``, of the challenged items."""
    def step(action: str):
        if action == "challenge":
            return session.challenge()
        if action == oracle.decide:
            return decide()
        return session.receive(answer(action))

    def check(action: str, result) -> None:
        if action == oracle.answer:
            assert isinstance(result, accepted)
            assert tuple(i.index for i in result.items) == session.subset
        if action == "refusal":
            assert isinstance(result, Refused) and result.reason == "budget"

    drive(session, oracle.table, oracle.messages, actions, step, check)


@SETTINGS
@given(st.sampled_from(VERIFIER.paths), st.lists(st.sampled_from(VERIFIER.actions), max_size=5))
def test_the_verifier_rejects_every_out_of_order_message_and_call(world, honest, path, steps):
    _, foreign_reveal, verdict = honest
    session = world.verifier_session()
    answers: dict[str, dsse.Envelope] = {"foreign-reveal": foreign_reveal, "verdict-message": verdict}

    def answer(kind: str) -> dsse.Envelope:
        if kind in answers:
            return answers[kind]
        if session.challenge_envelope is None:  # nothing to answer yet: any envelope will do
            return foreign_reveal
        prover = world.prover_session()
        prover.receive(session.challenge_envelope)
        return prover.reveal() if kind == "reveal" else prover.refuse("budget")

    drive_verifier(session, VERIFIER, [*path, *steps], answer, lambda: session.decide({i: 0 for i in range(N)}),
                   RevealAccepted)


@SETTINGS
@given(st.sampled_from(ZK_VERIFIER.paths), st.lists(st.sampled_from(ZK_VERIFIER.actions), max_size=5))
def test_the_zk_verifier_rejects_every_out_of_order_message_and_call(zk_world, zk_runs, path, steps):
    _, zk = zk_runs
    session = zk_world.zk_verifier_session()

    def answer(kind: str) -> dsse.Envelope:
        if kind == "verdict-message":
            return zk.verdict
        if session.challenge_envelope is None:  # nothing to answer yet: any envelope will do
            return zk.reveal
        if kind == "reveal":  # openings, correctly signed, of exactly the challenged items
            return signed_reveal(zk_world, session.challenge_envelope, session.subset)
        prover = zk_world.prover_session()
        prover.receive(session.challenge_envelope)
        return prover.zk_reveal(zk_world.statements()) if kind == "zk-reveal" else prover.refuse("budget")

    drive_verifier(session, ZK_VERIFIER, [*path, *steps], answer,
                   lambda: session.decide_zk({i: None for i in range(N)}), ZkRevealAccepted)


# ---- bent reveals, all correctly signed by the owner ----------------------------------------------------------

def signed_reveal(world: World, challenge: dsse.Envelope, indices) -> dsse.Envelope:
    mk, vk = world.pair.marking_key, world.pair.verification_key
    return Reveal(Challenge.digest_of(challenge), vk.digest, vk.scheme,
                  tuple(mk.openings[i] for i in indices)).sign(world.owner)


def expect_refused(session: VerifierSession, envelope: dsse.Envelope, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        session.receive(envelope)
    assert session.state is V.FAILED


def test_a_reveal_for_another_challenge_is_refused(world):
    session, other = world.verifier_session(), world.verifier_session()
    session.challenge()
    prover = world.prover_session()
    prover.receive(other.challenge())
    expect_refused(session, prover.reveal(), "another challenge")


@SETTINGS
@given(st.lists(st.integers(0, N - 1), min_size=1, max_size=2, unique=True))
def test_a_verifier_may_choose_a_small_subset_by_drawing_nonces_and_the_prover_answers_it(world, items):
    session = world.verifier_session(k=len(items), lam=3)  # small enough that one or two items can be accepted
    challenge = session.challenge(items)
    assert sorted(session.subset) == sorted(items)
    # It is an ordinary challenge: its subset is the digest's, which the prover recomputes and answers.
    assert session.subset == sample_subset(Challenge.digest_of(challenge), N, len(items))
    prover = world.prover_session()
    prover.receive(challenge)
    session.receive(prover.reveal())
    assert session.state is V.AWAIT_PREDICTIONS


def test_choosing_items_is_refused_for_a_wrong_count_an_index_out_of_range_or_too_many_subsets(world):
    for k, items, match in ((2, [3], "2 distinct indices"), (1, [N], "below n=16"), (2, [1, 1], "distinct"),
                            (K, range(K), "at most 1,000 are allowed")):
        session = world.verifier_session(k=k, lam=3)
        with pytest.raises(LocalProtocolError, match=match):
            session.challenge(items)
        assert session.state is V.SEND_CHALLENGE and session.challenge_envelope is None


@SETTINGS
@given(st.data())
def test_indices_other_than_the_challenged_subset_are_refused(world, data):
    session = world.verifier_session()
    challenge = session.challenge()
    subset = list(session.subset)
    mutation = data.draw(st.sampled_from(["drop", "add", "swap", "replace", "duplicate"]))
    outside = [i for i in range(N) if i not in subset]
    indices = list(subset)
    if mutation == "drop":
        del indices[data.draw(st.integers(0, K - 1))]
    elif mutation == "add":
        indices.insert(data.draw(st.integers(0, K)), data.draw(st.sampled_from(outside)))
    elif mutation == "swap":
        a, b = data.draw(st.lists(st.integers(0, K - 1), min_size=2, max_size=2, unique=True))
        indices[a], indices[b] = indices[b], indices[a]
    elif mutation == "replace":
        indices[data.draw(st.integers(0, K - 1))] = data.draw(st.sampled_from(outside))
    else:
        position = data.draw(st.integers(0, K - 1))
        indices.insert(position, indices[position])
    expect_refused(session, signed_reveal(world, challenge, indices), "not the challenged subset")


OPENING_FIELDS = ("item_randomness", "label_randomness", "vrf_proof", "label")


@SETTINGS
@given(st.integers(0, K - 1), st.sampled_from(OPENING_FIELDS), st.integers(min_value=0), st.integers(1, 255))
def test_any_changed_byte_of_an_opening_is_refused(world, position, name, offset, flip):
    session = world.verifier_session()
    challenge = session.challenge()
    mk, vk = world.pair.marking_key, world.pair.verification_key
    openings = [mk.openings[i] for i in session.subset]
    target = openings[position]
    if name == "label":
        bent = replace(target, label=(target.label + 1 + flip % (vk.num_classes - 1)) % vk.num_classes)
    elif name == "vrf_proof":
        proof = bytearray(target.vrf_proof)
        proof[offset % len(proof)] ^= flip
        bent = replace(target, vrf_proof=bytes(proof))
    else:
        randomness = getattr(target, name)
        raw = bytearray(randomness.randomness)
        raw[offset % len(raw)] ^= flip
        bent = replace(target, **{name: replace(randomness, randomness=bytes(raw))})
    openings[position] = bent
    envelope = Reveal(Challenge.digest_of(challenge), vk.digest, vk.scheme, tuple(openings)).sign(world.owner)
    expect_refused(session, envelope, f"item {target.index}")


@SETTINGS
@given(st.sets(st.integers(0, K - 1), min_size=2))
def test_of_several_broken_openings_the_first_is_named(world, broken):
    # Openings are checked on several threads; the error must still be the one a
    # sequential check meets first, whichever thread finishes first.
    session = world.verifier_session()
    challenge = session.challenge()
    mk, vk = world.pair.marking_key, world.pair.verification_key
    openings = [mk.openings[i] for i in session.subset]
    for position in broken:
        proof = bytearray(openings[position].vrf_proof)
        proof[-1] ^= 1
        openings[position] = replace(openings[position], vrf_proof=bytes(proof))
    envelope = Reveal(Challenge.digest_of(challenge), vk.digest, vk.scheme, tuple(openings)).sign(world.owner)
    expect_refused(session, envelope, f"item {openings[min(broken)].index}:")


@SETTINGS
@given(st.integers(min_value=0), st.integers(1, 255))
def test_any_changed_byte_of_a_signed_reveal_is_refused(world, offset, flip):
    session = world.verifier_session()
    challenge = session.challenge()
    envelope = signed_reveal(world, challenge, session.subset)
    payload = bytearray(envelope.payload)
    payload[offset % len(payload)] ^= flip
    expect_refused(session, replace(envelope, payload=bytes(payload)), "signature")


@settings(deadline=None, max_examples=200)
@given(st.binary(min_size=32, max_size=32), st.integers(1, 300), st.data())
def test_the_subset_sampler_is_deterministic_and_uniformly_shaped(digest, n, data):
    k = data.draw(st.integers(1, n))
    subset = sample_subset(digest, n, k)
    assert subset == sample_subset(digest, n, k)
    assert list(subset) == sorted(set(subset)) and len(subset) == k and all(0 <= i < n for i in subset)


def test_both_sides_derive_the_same_subset(world):
    verifier = world.verifier_session(k=7)
    challenge = verifier.challenge()
    event = world.prover_session().receive(challenge)
    assert isinstance(event, ChallengeReceived)
    assert event.indices == verifier.subset == sample_subset(Challenge.digest_of(challenge), N, 7)
