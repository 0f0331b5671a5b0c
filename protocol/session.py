"""The verification protocol as sans-IO state machines (docs/design.md section 4).

Like h11's ``Connection``, a session never touches a socket or a file: the
caller hands it envelopes and gets envelopes and events back.  The same code
therefore serves the file commands, the TCP server, tests and fuzzers.

Verifier:     challenge() -> receive(reveal) -> [caller queries the model] -> decide(predictions)
ZK verifier:  challenge() -> receive(zk reveal) -> [caller checks the proofs with ezkl] -> decide_zk(proof_errors)
Prover:       receive(challenge) -> [caller consults the ledger] -> reveal() | refuse(reason)
              -> receive(verdict); for a zero-knowledge challenge (docs/design.md section 4c),
              [caller proves] -> zk_reveal(statements) | refuse(reason) instead

:class:`VerifierSession` and :class:`ZkVerifierSession` are typed apart, so
each one's ``receive`` returns its own accepted event or :class:`Refused`.
Every method steps its role's transition table in :mod:`wmark.protocol.state`,
which holds the rule for what is out of turn: a call out of turn raises
:class:`LocalProtocolError` (the caller's fault), a message out of turn
:class:`RemoteProtocolError` (the peer's), and neither changes the state; a
message in turn that fails its checks raises :class:`RemoteProtocolError` and
ends the session in the failed state.
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from typing import ClassVar, Generic, TypeVar

from Crypto.Random import get_random_bytes

from wmark.errors import (
    DecodeError,
    InvalidOpening,
    InvalidSignature,
    LocalProtocolError,
    RemoteProtocolError,
    WmarkError,
)
from wmark.protocol.beacon import bound_label
from wmark.protocol.decision import DEFAULT_LAMBDA, check_lambda, decide, hopeless
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import check
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.sampling import sample_subset
from wmark.protocol.items import OpenedItem, TriggerKind, label_message, open_item
from wmark.protocol.keys import MarkingKey, VerificationKey, key_set_mismatch
from wmark.protocol.margin import MarginItems, QuerySplit
from wmark.protocol.messages import (
    MAX_TEXT,
    Answer,
    Challenge,
    ItemResult,
    ModelRef,
    Refusal,
    Reveal,
    Verdict,
    ZkReveal,
    chain_digest,
    decode,
)
from wmark.protocol.state import (
    PROVER,
    VERIFIER,
    ZK_VERIFIER,
    Machine,
    ProverEvent,
    ProverState,
    VerifierEvent,
    VerifierState,
)
from wmark.protocol.transparency import RegistrationInfo
from wmark.protocol.zk import (
    CAVEAT_DESIGNATED,
    CAVEAT_ZK,
    CAVEAT_ZK_HIDDEN,
    SrsOrigin,
    ZkFailure,
    ZkItem,
    ZkParameters,
    ZkStatement,
    ZkVerdictInfo,
)

NONCE_BYTES = 32
MAX_GRIND = 1000  # C(n, k) above which a verifier's choice of items by drawing nonces is refused (challenge())

_CHECK_THREADS = min(os.cpu_count() or 1, 8)
CAVEAT_IMPORTED = ("imported trigger set: the images were chosen by the owner, so non-trivial ownership rests "
                   "on the registration time of the verification key")
CAVEAT_MARGIN_ENDPOINT = ("margin queries are images of a public data split: an endpoint that recognises them "
                          "could answer them apart from other inputs, which a model file cannot")
CAVEAT_UNREGISTERED = ("no registry receipt: non-trivial ownership is unproven (nothing shows the verification "
                       "key existed before the model was obtained)")


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


CAVEAT_NO_BEACON = "a registry-bound key's labels come from its registration receipt"


def beacon_beta(vk: VerificationKey, registration: RegistrationInfo | None) -> bytes | None:
    """The beacon output that fixes a registry-bound key's labels; None for a key with committed labels.

    Without it a registry-bound key cannot be checked at all: its committed
    labels are not the ones it was trained on (docs/design.md section 2).
    """
    if not vk.registry_bound:
        return None
    if registration is None or registration.beta is None:
        raise LocalProtocolError(f"{CAVEAT_NO_BEACON}, from a log with a beacon: give the log's key (--log-key) "
                                 f"and the receipt (--receipt)")
    return registration.beta


def null_match_probability(vk: VerificationKey, p0: Fraction | None) -> Fraction:
    """``p0``: a derived label is uniform over L classes, a margin label over the L - 1
    other than the true class; so is any registry-bound label, whatever the
    inputs (the beacon shifts it after they were committed); imported sets
    with committed labels need an explicit bound."""
    if vk.kind is TriggerKind.MARGIN:
        exact = Fraction(1, vk.num_classes - 1)
    elif vk.kind is TriggerKind.DERIVED or vk.registry_bound:
        exact = Fraction(1, vk.num_classes)
    else:
        exact = None
    if exact is not None:
        if p0 is not None and p0 != exact and vk.registry_bound:
            raise LocalProtocolError(f"a registry-bound {vk.kind.value} key has p0 = {exact} exactly; "
                                     f"leave out --p0")
        return exact
    if p0 is None:
        raise LocalProtocolError("an imported trigger set needs an explicit p0 (the chance that an unmarked "
                                 "model gives a trigger image its committed label), e.g. --p0 1/10")
    return p0


def margin_items(vk: VerificationKey, split: QuerySplit | None) -> MarginItems | None:
    """A margin key's items, drawn from the caller's copy of its query split
    (which must be the very data the key was made on); None for other keys."""
    if vk.margin is None:
        if split is not None:
            raise LocalProtocolError(f"a query split was given, but the verification key is a {vk.kind.value} key")
        return None
    if split is None:
        raise LocalProtocolError(f"a margin key is checked against its query split {vk.margin.dataset}/"
                                 f"{vk.margin.split}, which was not given")
    if split.source != vk.margin:
        raise LocalProtocolError(f"the query split given, {split.source.describe()}, is not the one the key was "
                                 f"made on, {vk.margin.describe()}")
    return MarginItems(split, vk.n, vk.num_classes)


def subset_of(challenge: Challenge, challenge_digest: bytes) -> tuple[int, ...]:
    return sample_subset(challenge_digest, challenge.n, challenge.k)


def _check_answer(envelope: dsse.Envelope, kind: type[Answer], vk: VerificationKey,
                  challenge: Challenge, challenge_digest: bytes) -> Answer:
    """What a reveal of either kind must satisfy: the owner's signature, this
    challenge and key, and exactly the challenged subset."""
    dsse.verify(envelope, vk.owner, payload_type=kind.PAYLOAD_TYPE, what="reveal")
    answer = decode(envelope, (kind,))
    assert isinstance(answer, Answer)
    if answer.challenge_digest != challenge_digest:
        raise InvalidOpening("reveal: it answers another challenge (challenge digest differs)")
    if answer.vk_digest != vk.digest:
        raise InvalidOpening("reveal: it is for another verification key")
    if answer.scheme is not vk.scheme:
        raise InvalidOpening("reveal: commitment scheme differs from the verification key's")
    expected = subset_of(challenge, challenge_digest)
    got = answer.indices
    if got != expected:
        extra = sorted(set(got) - set(expected))
        missing = sorted(set(expected) - set(got))
        raise InvalidOpening(f"reveal: indices are not the challenged subset (extra {extra[:8]}, missing "
                             f"{missing[:8]}{', or out of order' if not extra and not missing else ''})")
    return answer


def check_reveal(reveal_env: dsse.Envelope, vk: VerificationKey, challenge: Challenge, challenge_digest: bytes, *,
                 margin: QuerySplit | None = None,
                 registration: RegistrationInfo | None = None) -> tuple[Reveal, tuple[OpenedItem, ...]]:
    """Everything a verifier or auditor checks in a reveal; raises naming the failure
    (``margin``: a margin key's query split, as the checker holds it;
    ``registration``: the checked receipt, whose beacon fixes a registry-bound key's labels)."""
    items_of_key = margin_items(vk, margin)
    beta = beacon_beta(vk, registration)
    if challenge.zk is not None:
        raise InvalidOpening("reveal: the challenge asked for zero-knowledge proofs, not openings")
    reveal = _check_answer(reveal_env, Reveal, vk, challenge, challenge_digest)
    assert isinstance(reveal, Reveal)

    def opened(o):
        return open_item(o, vk.commitments[o.index], kind=vk.kind, num_classes=vk.num_classes,
                         input_shape=vk.input_shape, vrf_key=vk.vrf_key, owner=vk.owner, margin=items_of_key,
                         beta=beta)
    # A VRF proof's point multiplications are pycryptodome C calls that release
    # the GIL, so threads check openings in parallel; map keeps their order, so
    # the error raised is the first bad opening's, as in a sequential check.
    # Without VRF proofs an opening is two hashes: a thread per item would cost more
    # than the check (7% of the CPU and 11 MB of the audit of 10,000 imported items).
    if not any(o.vrf_proof is not None for o in reveal.openings):
        return reveal, tuple(map(opened, reveal.openings))
    with ThreadPoolExecutor(max_workers=min(_CHECK_THREADS, len(reveal.openings) or 1)) as pool:
        items = tuple(pool.map(opened, reveal.openings))
    return reveal, items


def check_zk_reveal(reveal_env: dsse.Envelope, vk: VerificationKey, challenge: Challenge,
                    challenge_digest: bytes) -> tuple[ZkReveal, tuple[ZkItem, ...]]:
    """Everything but the proofs themselves: signature, subset, label openings."""
    if challenge.zk is None or vk.zk is None:
        raise InvalidOpening("reveal: zero-knowledge proofs answer only a zero-knowledge challenge")
    reveal = _check_answer(reveal_env, ZkReveal, vk, challenge, challenge_digest)
    assert isinstance(reveal, ZkReveal)
    for item in reveal.items:
        if not 0 <= item.label < vk.num_classes:
            raise InvalidOpening(f"item {item.index}: label {item.label} outside [0, {vk.num_classes})")
        check(vk.commitments[item.index].label, label_message(item.label), item.label_randomness,
              what=f"item {item.index} (label)")
    return reveal, reveal.items


def zk_label(item: ZkItem, vk: VerificationKey, beta: bytes | None) -> int:
    """The label a hidden item is checked against: its opened label, shifted by the beacon if registry-bound."""
    return item.label if beta is None else bound_label(beta, item.index, item.label, vk.num_classes)


def zk_results(vk: VerificationKey, items: tuple[ZkItem, ...], proof_errors: Mapping[int, str | None],
               beta: bytes | None = None) -> tuple[tuple[ItemResult, ...], tuple[ZkFailure, ...]]:
    """Per item, the proven class, or None and the reason it does not count.

    A proof counts only if it verifies (``proof_errors[i]`` is None, as the
    caller found with the proof system) and is about the hidden input that
    ``vk`` registers for item ``i``: a proof for another index, salt or key
    names another hash and is a non-match, whatever class it proves.
    """
    assert vk.zk is not None
    results, failures = [], []
    for item in items:
        reason = proof_errors.get(item.index)
        if not hmac.compare_digest(item.statement.input_hash, vk.zk.hashes[item.index]):
            reason = (f"the proof is about another hidden input than the one committed for item {item.index} "
                      f"(a proof for another item, salt or key)")
        results.append(ItemResult(item.index, zk_label(item, vk, beta),
                                  item.statement.predicted if reason is None else None))
        if reason is not None:
            failures.append(ZkFailure(item.index, reason[:MAX_TEXT]))
    return tuple(results), tuple(failures)


def challenge_problem(challenge: Challenge, vk: VerificationKey) -> str | None:
    """Why the owner should answer ``challenge`` with nothing; None if it may be answered.

    Its bound ``p0`` must be the key's (for keys where that is fixed) and its
    ``k`` must be able to reach ``lambda`` at that ``p0``; a challenge made
    before they were bound is judged by its verdict alone.
    """
    if challenge.lam is None or challenge.p0 is None:
        return None
    if vk.kind.seeded or vk.registry_bound:
        exact = null_match_probability(vk, None)
        if challenge.p0 != exact:
            return f"the challenge's p0={challenge.p0} is not this key's, {exact}"
    return hopeless(challenge.k, challenge.p0, challenge.lam)


def check_challenge(envelope: dsse.Envelope) -> tuple[Challenge, bytes]:
    """A challenge is self-signed by the verifier key it names."""
    challenge = decode(envelope, (Challenge,))
    assert isinstance(challenge, Challenge)
    dsse.verify(envelope, challenge.verifier, payload_type=Challenge.PAYLOAD_TYPE, what="challenge")
    return challenge, Challenge.digest_of(envelope)


@dataclass(frozen=True)
class RevealAccepted:
    """Event: the openings check out; query the model on these items."""

    items: tuple[OpenedItem, ...]


@dataclass(frozen=True)
class ZkRevealAccepted:
    """Event: labels open and the subset is right; verify each item's proof
    (against the circuit and SRS the challenge names), then call ``decide_zk``."""

    items: tuple[ZkItem, ...]


@dataclass(frozen=True)
class Refused:
    """Event: the prover declined, with a signed reason."""

    reason: str
    envelope: dsse.Envelope


Accepted = TypeVar("Accepted", RevealAccepted, ZkRevealAccepted)
_T = TypeVar("_T")

# The event a message's payload type names, before its checks (wmark.protocol.state says what is done with it).
_VERIFIER_MESSAGES = {Reveal.PAYLOAD_TYPE: VerifierEvent.REVEAL, ZkReveal.PAYLOAD_TYPE: VerifierEvent.ZK_REVEAL,
                      Refusal.PAYLOAD_TYPE: VerifierEvent.REFUSAL}


class _Verifier(Generic[Accepted]):
    """What both verifiers share: the challenge, a refusal, the signed verdict.
    Each subclass names its machine, the answer it takes and how it checks one."""

    _MACHINE: ClassVar[Machine[VerifierState, VerifierEvent]]
    _ANSWER: ClassVar[type[Reveal | ZkReveal]]

    def __init__(self, vk: VerificationKey, identity: SigningKey, model: ModelRef, k: int, *,
                 p0: Fraction | None, lam: int | None, registration: RegistrationInfo | None,
                 zk: ZkParameters | None) -> None:
        """``lam`` None: the default, 40."""
        lam = DEFAULT_LAMBDA if lam is None else check_lambda(lam)
        if not 1 <= k <= vk.n:
            raise LocalProtocolError(f"k={k} must be between 1 and n={vk.n}")
        self.vk = vk
        self._zk_parameters = zk
        self._identity = identity
        self._model = model
        self._k = k
        self._p0 = null_match_probability(vk, p0)
        self._lam = lam
        self._registration = registration
        if registration is not None:
            beacon_beta(vk, registration)  # a receipt without a beacon fails before anything is revealed
        self.state = VerifierState.SEND_CHALLENGE
        self.challenge_envelope: dsse.Envelope | None = None
        self.reveal_envelope: dsse.Envelope | None = None
        self.verdict_envelope: dsse.Envelope | None = None
        self._challenge: Challenge | None = None
        self._challenge_digest = b""
        self._subset: tuple[int, ...] = ()

    def _resume(self, challenge: Challenge, digest: bytes, envelope: dsse.Envelope) -> None:
        """Take the step a challenge issued earlier took (files transport)."""
        self.state = self._MACHINE.step(self.state, VerifierEvent.CHALLENGE)
        self._challenge, self._challenge_digest = challenge, digest
        self._subset = subset_of(challenge, digest)
        self.challenge_envelope = envelope

    @property
    def model(self) -> ModelRef:
        return self._model

    @property
    def issued_challenge(self) -> Challenge:
        """The challenge this session signed (or resumed)."""
        challenge = self._once_issued(self._challenge)
        assert challenge is not None  # refused there
        return challenge

    @property
    def challenge_digest(self) -> bytes:
        return self._once_issued(self._challenge_digest)

    def challenge(self, items: Collection[int] | None = None) -> dsse.Envelope:
        """Sign a challenge that binds k, lambda and p0; refused when that k could never be accepted.

        ``items``: draw nonces until the challenge samples exactly these items (in any order). Any verifier
        can do this by grinding its nonce (docs/design.md section 4, step 2; the leakage budget, not the
        sampling, bounds what it learns); it is offered so that one verifier can have the same items proven
        on a second model, and only where the expected number of draws is small (``MAX_GRIND``).
        """
        following = self._MACHINE.step(self.state, VerifierEvent.CHALLENGE)
        problem = hopeless(self._k, self._p0, self._lam)
        if problem is not None:
            raise LocalProtocolError(f"{problem} (see wmark-verifier plan)")
        wanted, draws = self._grind_target(items)
        for _ in range(draws):
            challenge = Challenge(vk_digest=self.vk.digest, model=self._model, n=self.vk.n, k=self._k,
                                  nonce=get_random_bytes(NONCE_BYTES), verifier=self._identity.public_key,
                                  issued=now(), zk=self._zk_parameters, lam=self._lam, p0=self._p0)
            # The subset depends on the payload alone, so only the challenge kept is signed.
            digest = challenge.digest()
            subset = subset_of(challenge, digest)
            if wanted is None or frozenset(subset) == wanted:
                break
        else:
            raise LocalProtocolError(f"no challenge of {draws} drawn sampled items {sorted(wanted or ())[:8]}")
        self._challenge, self._challenge_digest, self._subset = challenge, digest, subset
        self.challenge_envelope = challenge.sign(self._identity)
        self.state = following
        return self.challenge_envelope

    def _grind_target(self, items: Collection[int] | None) -> tuple[frozenset[int] | None, int]:
        """The items a challenge must sample, and how many nonces to draw before giving up (e^-40 odds)."""
        if items is None:
            return None, 1
        wanted = frozenset(items)
        if len(wanted) != self._k or not all(0 <= i < self.vk.n for i in wanted):
            raise LocalProtocolError(f"the items to sample must be {self._k} distinct indices below n={self.vk.n}")
        choices = math.comb(self.vk.n, self._k)
        if choices > MAX_GRIND:
            raise LocalProtocolError(f"choosing {self._k} of {self.vk.n} items by drawing nonces takes about "
                                     f"{choices:,} draws; at most {MAX_GRIND:,} are allowed")
        return wanted, 40 * choices

    @property
    def subset(self) -> tuple[int, ...]:
        """The items the challenge samples, in order (computed once, when it is signed or resumed)."""
        return self._once_issued(self._subset)

    def _once_issued(self, value: _T) -> _T:
        """``value``, which means something only once a challenge is issued; refused before."""
        if self._challenge is None:
            raise LocalProtocolError("no challenge issued yet")
        return value

    def receive(self, envelope: dsse.Envelope) -> Accepted | Refused:
        """Take the prover's answer: a reveal of this session's kind, or a refusal."""
        event = self._MACHINE.incoming(self.state, _VERIFIER_MESSAGES.get(envelope.payload_type))
        assert self._challenge is not None
        result: Accepted | Refused
        try:
            if event is VerifierEvent.REFUSAL:
                result = self._check_refusal(envelope)
            else:
                result = self._check(envelope, self._challenge)
        except (DecodeError, InvalidSignature, InvalidOpening) as exc:
            self.state = self._MACHINE.failed
            raise RemoteProtocolError(f"prover sent an invalid message: {exc}") from None
        self.state = self._MACHINE.step(self.state, event)
        if event is not VerifierEvent.REFUSAL:
            self.reveal_envelope = envelope
        return result

    def _check_refusal(self, envelope: dsse.Envelope) -> Refused:
        dsse.verify(envelope, self.vk.owner, payload_type=Refusal.PAYLOAD_TYPE, what="refusal")
        refusal = decode(envelope, (Refusal,))
        assert isinstance(refusal, Refusal)
        if refusal.challenge_digest != self._challenge_digest:
            raise InvalidOpening("refusal: it answers another challenge")
        return Refused(refusal.reason, envelope)

    def _check(self, envelope: dsse.Envelope, challenge: Challenge) -> Accepted:
        raise NotImplementedError

    def _sign(self, event: VerifierEvent, results: tuple[ItemResult, ...], zk: ZkVerdictInfo | None) -> dsse.Envelope:
        following = self._MACHINE.step(self.state, event)
        assert self.reveal_envelope is not None
        verdict = build_verdict(self.vk, self._challenge_digest, self._ANSWER.digest_of(self.reveal_envelope),
                                self._model, results, self._p0, self._lam, self._registration, now(), zk=zk)
        self.verdict_envelope = verdict.sign(self._identity)
        self.state = following
        return self.verdict_envelope


def _issued_challenge(vk: VerificationKey, identity: SigningKey, envelope: dsse.Envelope,
                      p0: Fraction | None, lam: int | None) -> tuple[Challenge, bytes, Fraction | None, int | None]:
    """A challenge this verifier issued earlier about ``vk``, to resume a session from,
    and the ``p0`` and ``lambda`` to decide it with.

    A challenge that binds ``lambda`` and ``p0`` is decided with them: a
    different value given here is refused rather than used.
    """
    challenge, digest = check_challenge(envelope)
    if challenge.verifier != identity.public_key:
        raise LocalProtocolError("the challenge was issued by another verifier key than this one")
    if challenge.vk_digest != vk.digest:
        raise LocalProtocolError("the challenge is for another verification key")
    if challenge.lam is not None and challenge.p0 is not None:
        for name, given, bound in (("lambda", lam, challenge.lam), ("p0", p0, challenge.p0)):
            if given is not None and given != bound:
                raise LocalProtocolError(f"the challenge fixed {name}={bound} before anything was revealed; "
                                         f"it cannot be decided with {name}={given}")
        lam, p0 = challenge.lam, challenge.p0
    return challenge, digest, p0, lam


class VerifierSession(_Verifier[RevealAccepted]):
    """The verifier of an opening session: the owner opens the challenged items,
    the verifier queries the suspect model on them and decides."""

    _MACHINE = VERIFIER
    _ANSWER = Reveal

    def __init__(self, vk: VerificationKey, identity: SigningKey, model: ModelRef, k: int, *,
                 p0: Fraction | None = None, lam: int | None = None,
                 registration: RegistrationInfo | None = None, margin: QuerySplit | None = None) -> None:
        """``margin``: for a margin key, the verifier's copy of its query split
        (needed from the reveal on; a challenge can be issued without it)."""
        super().__init__(vk, identity, model, k, p0=p0, lam=lam, registration=registration, zk=None)
        if margin is not None:
            margin_items(vk, margin)  # the wrong data fails now, not after the prover has revealed
        self._margin = margin
        self._items: tuple[OpenedItem, ...] = ()

    @classmethod
    def resume(cls, vk: VerificationKey, identity: SigningKey, challenge_envelope: dsse.Envelope, *,
               p0: Fraction | None = None, lam: int | None = None,
               registration: RegistrationInfo | None = None,
               margin: QuerySplit | None = None) -> VerifierSession:
        """A session waiting for the reveal to a challenge issued earlier (files transport)."""
        challenge, digest, p0, lam = _issued_challenge(vk, identity, challenge_envelope, p0, lam)
        if challenge.zk is not None:
            raise LocalProtocolError("the challenge asks for zero-knowledge proofs, not openings")
        session = cls(vk, identity, challenge.model, challenge.k, p0=p0, lam=lam, registration=registration,
                      margin=margin)
        session._resume(challenge, digest, challenge_envelope)
        return session

    def _check(self, envelope: dsse.Envelope, challenge: Challenge) -> RevealAccepted:
        _, self._items = check_reveal(envelope, self.vk, challenge, self._challenge_digest, margin=self._margin,
                                      registration=self._registration)
        return RevealAccepted(self._items)

    def decide(self, predictions: Mapping[int, int]) -> dsse.Envelope:
        """Sign the verdict from the model's answers (index -> predicted class)."""
        self._MACHINE.step(self.state, VerifierEvent.DECIDE)
        missing = [item.index for item in self._items if item.index not in predictions]
        if missing:
            raise LocalProtocolError(f"no model prediction for items {missing[:8]}")
        return self._sign(VerifierEvent.DECIDE,
                          tuple(ItemResult(i.index, i.label, int(predictions[i.index])) for i in self._items), None)


class ZkVerifierSession(_Verifier[ZkRevealAccepted]):
    """The verifier of a zero-knowledge session (docs/design.md section 4c): the
    owner proves each challenged item's class about the model the verifier
    holds, and the verifier decides from its checks of those proofs."""

    _MACHINE = ZK_VERIFIER
    _ANSWER = ZkReveal

    def __init__(self, vk: VerificationKey, identity: SigningKey, model: ModelRef, k: int, *,
                 zk: ZkParameters, p0: Fraction | None = None, lam: int | None = None,
                 registration: RegistrationInfo | None = None) -> None:
        """``zk``: the circuit and SRS the proofs are to be made against."""
        if vk.zk is None:
            raise LocalProtocolError("the verification key has no zero-knowledge commitments (made without "
                                     "wmark keygen --zk)")
        if model.sha256 is None:
            raise LocalProtocolError("zero-knowledge verification needs the model's weights, not an endpoint")
        super().__init__(vk, identity, model, k, p0=p0, lam=lam, registration=registration, zk=zk)
        self._zk = zk
        self._zk_items: tuple[ZkItem, ...] = ()

    @classmethod
    def resume(cls, vk: VerificationKey, identity: SigningKey, challenge_envelope: dsse.Envelope, *,
               p0: Fraction | None = None, lam: int | None = None,
               registration: RegistrationInfo | None = None) -> ZkVerifierSession:
        """A session waiting for the proofs answering a challenge issued earlier (files transport)."""
        challenge, digest, p0, lam = _issued_challenge(vk, identity, challenge_envelope, p0, lam)
        if challenge.zk is None:
            raise LocalProtocolError("the challenge asks for openings, not zero-knowledge proofs")
        session = cls(vk, identity, challenge.model, challenge.k, zk=challenge.zk, p0=p0, lam=lam,
                      registration=registration)
        session._resume(challenge, digest, challenge_envelope)
        return session

    @property
    def zk(self) -> ZkParameters:
        return self._zk

    def _check(self, envelope: dsse.Envelope, challenge: Challenge) -> ZkRevealAccepted:
        _, self._zk_items = check_zk_reveal(envelope, self.vk, challenge, self._challenge_digest)
        return ZkRevealAccepted(self._zk_items)

    def decide_zk(self, proof_errors: Mapping[int, str | None]) -> dsse.Envelope:
        """Sign the verdict from the proof checks (index -> None if the proof
        verified, else why not); a failed proof is a non-match, reported."""
        self._MACHINE.step(self.state, VerifierEvent.DECIDE_ZK)
        missing = [item.index for item in self._zk_items if item.index not in proof_errors]
        if missing:
            raise LocalProtocolError(f"no proof check for items {missing[:8]}")
        results, failures = zk_results(self.vk, self._zk_items, proof_errors,
                                       beacon_beta(self.vk, self._registration))
        return self._sign(VerifierEvent.DECIDE_ZK, results, ZkVerdictInfo(self._zk, failures))


AnyVerifierSession = VerifierSession | ZkVerifierSession


def build_verdict(vk: VerificationKey, challenge_digest: bytes, reveal_digest: bytes, model: ModelRef,
                  results: tuple[ItemResult, ...], p0: Fraction, lam: int,
                  registration: RegistrationInfo | None, decided: str, *,
                  zk: ZkVerdictInfo | None = None) -> Verdict:
    """The verdict as a pure function of its inputs, so an auditor can rebuild it."""
    decision = decide(sum(r.match for r in results), len(results), p0, lam)
    caveats = []
    # A registry-bound key's labels were drawn after its inputs were fixed, so neither
    # the owner's choice of images nor their hiding matters to p0 (docs/design.md section 2).
    if zk is not None:
        caveats += [CAVEAT_ZK] if vk.registry_bound else [CAVEAT_ZK, CAVEAT_ZK_HIDDEN]
        if zk.parameters.srs_origin is SrsOrigin.VERIFIER:
            caveats.append(CAVEAT_DESIGNATED)
    if vk.kind is TriggerKind.IMPORTED and not vk.registry_bound:
        caveats.append(CAVEAT_IMPORTED)
    if vk.kind is TriggerKind.MARGIN and model.url is not None:
        caveats.append(CAVEAT_MARGIN_ENDPOINT)
    if registration is None:
        caveats.append(CAVEAT_UNREGISTERED)
    return Verdict(
        vk_digest=vk.digest, challenge_digest=challenge_digest, reveal_digest=reveal_digest,
        chain_digest=chain_digest(vk.digest, challenge_digest, reveal_digest), model=model,
        trigger_kind=vk.kind, results=results, p0=p0, lam=lam, tau=decision.tau, matches=decision.matches,
        p_value=decision.p_value_text, neg_log2_p=f"{decision.neg_log2_p:.2f}", accepted=decision.accepted,
        caveats=tuple(caveats), registration=registration,
        decided=decided, zk=zk,
    )


@dataclass(frozen=True)
class ChallengeReceived:
    """Event: a valid challenge; the caller consults its ledger, then reveals or
    refuses (a zero-knowledge challenge: proves, then ``zk_reveal`` or refuses)."""

    challenge: Challenge
    digest: bytes
    indices: tuple[int, ...]
    # Why the challenge must be refused, revealing nothing (:func:`challenge_problem`); None if answerable.
    problem: str | None = None


@dataclass(frozen=True)
class VerdictReceived:
    verdict: Verdict
    envelope: dsse.Envelope


_PROVER_MESSAGES = {Challenge.PAYLOAD_TYPE: ProverEvent.CHALLENGE, Verdict.PAYLOAD_TYPE: ProverEvent.VERDICT}


# A refusal before any challenge was read ("busy, retry later") names no
# challenge: it carries this digest, which no challenge can have.
BUSY_DIGEST = bytes(32)


def busy_refusal(owner: SigningKey, retry_after_s: int) -> dsse.Envelope:
    """The owner's signed "busy, retry after N s", for a verifier turned away unheard."""
    return Refusal(BUSY_DIGEST, f"busy: the prover is serving as many sessions as it takes; retry after "
                                f"{retry_after_s} s").sign(owner)


def busy_reason(envelope: dsse.Envelope, vk: VerificationKey) -> str | None:
    """The reason of a busy refusal the key's owner signed, or None for any other envelope."""
    if envelope.payload_type != Refusal.PAYLOAD_TYPE:
        return None
    try:
        dsse.verify(envelope, vk.owner, payload_type=Refusal.PAYLOAD_TYPE, what="refusal")
        refusal = decode(envelope, (Refusal,))
    except WmarkError:
        return None
    assert isinstance(refusal, Refusal)
    return refusal.reason if refusal.challenge_digest == BUSY_DIGEST else None


class ProverSession:
    """The owner's side of both kinds of session: which kind it is in is the
    challenge's to say, so its state machine (``wmark.protocol.state.PROVER``)
    has a deciding state for each."""

    def __init__(self, mk: MarkingKey, vk: VerificationKey, identity: SigningKey) -> None:
        mismatch = key_set_mismatch(mk, vk, identity.public_key)
        if mismatch is not None:
            raise LocalProtocolError(mismatch)
        self._mk, self.vk, self._identity = mk, vk, identity
        self.state = ProverState.AWAIT_CHALLENGE
        self._received: ChallengeReceived | None = None
        self._reveal_digest = b""

    def receive(self, envelope: dsse.Envelope) -> ChallengeReceived | VerdictReceived:
        event = PROVER.incoming(self.state, _PROVER_MESSAGES.get(envelope.payload_type))
        if event is ProverEvent.VERDICT:
            return self._receive_verdict(envelope)
        return self._receive_challenge(envelope)

    def _fail(self, message: str) -> RemoteProtocolError:
        self.state = PROVER.failed
        return RemoteProtocolError(message)

    def _receive_challenge(self, envelope: dsse.Envelope) -> ChallengeReceived:
        try:
            challenge, digest = check_challenge(envelope)
        except WmarkError as exc:
            raise self._fail(f"verifier sent an invalid challenge: {exc}") from None
        if challenge.vk_digest != self.vk.digest or challenge.n != self.vk.n:
            raise self._fail("verifier sent a challenge for another verification key")
        if challenge.zk is not None and (self.vk.zk is None or self._mk.zk is None):
            raise self._fail("verifier asked for zero-knowledge proofs, but this key has no zero-knowledge "
                             "commitments (made without wmark keygen --zk)")
        self.state = PROVER.step(self.state,
                                 ProverEvent.CHALLENGE if challenge.zk is None else ProverEvent.ZK_CHALLENGE)
        self._received = ChallengeReceived(challenge, digest, subset_of(challenge, digest),
                                           challenge_problem(challenge, self.vk))
        return self._received

    def _refuse_problem(self) -> None:
        """The guard of both answers: a challenge with a problem gets a refusal, never items."""
        assert self._received is not None
        if self._received.problem is not None:
            raise LocalProtocolError(f"this challenge must be refused, not answered: {self._received.problem}")

    def reveal(self) -> dsse.Envelope:
        """Open exactly the challenged subset."""
        following = PROVER.step(self.state, ProverEvent.REVEAL)
        assert self._received is not None
        self._refuse_problem()
        reveal = Reveal(self._received.digest, self.vk.digest, self.vk.scheme,
                        tuple(self._mk.openings[i] for i in self._received.indices))
        envelope = reveal.sign(self._identity)
        self._reveal_digest = Reveal.digest_of(envelope)
        self.state = following
        return envelope

    def zk_reveal(self, statements: Mapping[int, ZkStatement]) -> dsse.Envelope:
        """Answer a zero-knowledge challenge: each sampled item's proof and label opening."""
        following = PROVER.step(self.state, ProverEvent.ZK_REVEAL)
        assert self._received is not None
        self._refuse_problem()
        missing = [i for i in self._received.indices if i not in statements]
        if missing:
            raise LocalProtocolError(f"no proof for challenged items {missing[:8]}")
        items = tuple(ZkItem(i, self._mk.openings[i].label, self._mk.openings[i].label_randomness, statements[i])
                      for i in self._received.indices)
        envelope = ZkReveal(self._received.digest, self.vk.digest, self.vk.scheme, items).sign(self._identity)
        self._reveal_digest = ZkReveal.digest_of(envelope)
        self.state = following
        return envelope

    def refuse(self, reason: str) -> dsse.Envelope:
        following = PROVER.step(self.state, ProverEvent.REFUSE)
        assert self._received is not None
        envelope = Refusal(self._received.digest, reason[:1024]).sign(self._identity)
        self.state = following
        return envelope

    def _receive_verdict(self, envelope: dsse.Envelope) -> VerdictReceived:
        assert self._received is not None
        try:
            verdict = decode(envelope, (Verdict,))
            assert isinstance(verdict, Verdict)
            dsse.verify(envelope, self._received.challenge.verifier, payload_type=Verdict.PAYLOAD_TYPE,
                        what="verdict")
            if verdict.challenge_digest != self._received.digest:
                raise InvalidOpening("verdict: it is about another challenge")
            if verdict.vk_digest != self.vk.digest or verdict.reveal_digest != self._reveal_digest:
                raise InvalidOpening("verdict: it names another verification key or another reveal than ours")
        except WmarkError as exc:
            raise self._fail(f"verifier sent an invalid verdict: {exc}") from None
        self.state = PROVER.step(self.state, ProverEvent.VERDICT)
        return VerdictReceived(verdict, envelope)
