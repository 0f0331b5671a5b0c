"""The sans-IO sessions (wmark.protocol.session) under attack.

Hypothesis drives both state machines through arbitrary sequences of calls
and messages and checks each against a transition table: an allowed step
moves to the expected state, a call out of turn raises LocalProtocolError
(the caller's fault), a message out of turn RemoteProtocolError (the
peer's).  Then every way of bending a reveal, correctly signed by the real
owner key, must be refused: another challenge's reveal, indices outside or
missing from the subset, reordered, and any changed byte of any opening.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmark.errors import LocalProtocolError, RemoteProtocolError
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
)

N, K = 16, 5
# 5 matches of 5 at p0 = 1/10 have p-value 1e-5 <= 2^-16: a challenge the prover answers.
LAMBDA = 16
SETTINGS = settings(derandomize=True, deadline=None, max_examples=60)


@dataclass(frozen=True)
class World:
    pair: KeyPair
    owner: SigningKey
    verifier: SigningKey

    def verifier_session(self, k: int = K) -> VerifierSession:
        return VerifierSession(self.pair.verification_key, self.verifier, ModelRef(sha256=bytes(32)), k,
                               lam=LAMBDA)

    def prover_session(self) -> ProverSession:
        return ProverSession(self.pair.marking_key, self.pair.verification_key, self.owner)

    def honest_run(self) -> tuple[dsse.Envelope, dsse.Envelope, dsse.Envelope]:
        """A challenge, its reveal and the verdict on it."""
        verifier, prover = self.verifier_session(), self.prover_session()
        challenge = verifier.challenge()
        prover.receive(challenge)
        reveal = prover.reveal()
        event = verifier.receive(reveal)
        assert isinstance(event, RevealAccepted)
        return challenge, reveal, verifier.decide({i.index: i.label for i in event.items})


@pytest.fixture(scope="module")
def world() -> World:
    owner = SigningKey.generate()
    return World(keygen_derived(owner=owner, n=N, num_classes=10, input_shape=(1, 8, 8)), owner,
                 SigningKey.generate())


@pytest.fixture(scope="module")
def honest(world):
    return world.honest_run()


# ---- the prover's state machine -------------------------------------------------------------------------------

PROVER_ACTIONS = ("challenge", "verdict", "reveal-message", "reveal", "refuse")
P = ProverState
# state -> action -> next state, or the error it raises (the state stays, unless a bad message fails the session)
PROVER_TABLE = {
    P.AWAIT_CHALLENGE: {"challenge": P.DECIDE, "verdict": RemoteProtocolError, "reveal-message": RemoteProtocolError},
    P.DECIDE: {"reveal": P.AWAIT_VERDICT, "refuse": P.DONE},
    P.AWAIT_VERDICT: {"verdict": P.DONE, "challenge": RemoteProtocolError, "reveal-message": RemoteProtocolError},
}


# Every legal path, so that random steps after it start from every state, the final ones included.
PROVER_PATHS = ((), ("challenge",), ("challenge", "reveal"), ("challenge", "reveal", "verdict"),
                ("challenge", "refuse"))


@SETTINGS
@given(st.sampled_from(PROVER_PATHS), st.lists(st.sampled_from(PROVER_ACTIONS), max_size=5))
def test_the_prover_rejects_every_out_of_order_message_and_call(world, honest, path, steps):
    challenge, reveal, verdict = honest
    actions = [*path, *steps]
    messages = {"challenge": challenge, "verdict": verdict, "reveal-message": reveal}
    session = world.prover_session()
    for action in actions:
        before = session.state
        expected = PROVER_TABLE.get(before, {}).get(action)
        is_message = action in messages
        if expected is None:
            expected = RemoteProtocolError if is_message else LocalProtocolError
        if isinstance(expected, ProverState):
            result = session.receive(messages[action]) if is_message else getattr(session, action)(
                *(("no",) if action == "refuse" else ()))
            assert session.state is expected
            if action == "challenge":
                assert isinstance(result, ChallengeReceived) and result.indices == sample_subset(
                    Challenge.digest_of(challenge), N, K)
            if action == "verdict":
                assert isinstance(result, VerdictReceived)
            continue
        with pytest.raises(expected):
            if is_message:
                session.receive(messages[action])
            else:
                getattr(session, action)(*(("no",) if action == "refuse" else ()))
        if expected is RemoteProtocolError and before in (P.AWAIT_CHALLENGE, P.AWAIT_VERDICT):
            assert session.state is P.FAILED
        else:
            assert session.state is before


# ---- the verifier's state machine -----------------------------------------------------------------------------

VERIFIER_ACTIONS = ("challenge", "reveal", "refusal", "foreign-reveal", "verdict-message", "decide")
V = VerifierState
VERIFIER_TABLE = {
    V.SEND_CHALLENGE: {"challenge": V.AWAIT_REVEAL},
    V.AWAIT_REVEAL: {"reveal": V.AWAIT_PREDICTIONS, "refusal": V.REFUSED, "foreign-reveal": RemoteProtocolError,
                     "verdict-message": RemoteProtocolError},
    V.AWAIT_PREDICTIONS: {"decide": V.DONE},
}


VERIFIER_PATHS = ((), ("challenge",), ("challenge", "reveal"), ("challenge", "reveal", "decide"),
                  ("challenge", "refusal"))


@SETTINGS
@given(st.sampled_from(VERIFIER_PATHS), st.lists(st.sampled_from(VERIFIER_ACTIONS), max_size=5))
def test_the_verifier_rejects_every_out_of_order_message_and_call(world, honest, path, steps):
    _, foreign_reveal, verdict = honest
    actions = [*path, *steps]
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

    def step(action: str):
        if action == "challenge":
            return session.challenge()
        if action == "decide":
            return session.decide({i: 0 for i in range(N)})
        return session.receive(answer(action))

    for action in actions:
        before = session.state
        expected = VERIFIER_TABLE.get(before, {}).get(action, LocalProtocolError)
        if isinstance(expected, VerifierState):
            result = step(action)
            assert session.state is expected
            if action == "reveal":
                assert isinstance(result, RevealAccepted)
                assert tuple(i.index for i in result.items) == session.subset
            if action == "refusal":
                assert isinstance(result, Refused) and result.reason == "budget"
            continue
        with pytest.raises(expected):
            step(action)
        assert session.state is (V.FAILED if expected is RemoteProtocolError else before)


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


@settings(derandomize=True, deadline=None, max_examples=200)
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
