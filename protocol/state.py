"""The sessions' state machines as data (docs/design.md section 4), as h11's ``_state.py``.

Each role has its states, the events that move them and one transition table
(state x event -> next state).  An event is either a *call*, this side acting
(issue a challenge, reveal, decide), or a *message*, the peer acting (a
reveal, a refusal, a verdict arriving).  :class:`Machine` is the one place
that enforces a table, with one rule for what is out of turn:

- a call the current state's row lacks is this side's misuse:
  :class:`~wmark.errors.LocalProtocolError`;
- a message that arrives in a state whose row takes no message is the peer
  speaking out of turn: :class:`~wmark.errors.RemoteProtocolError`;
- neither changes the state (an out-of-turn message is not even read).

A message that arrives in turn is taken for the kind its payload type names
if the row takes that kind, else for the first kind the row takes, whose
checks it then fails; a message that fails its checks is the peer's fault
too, and the session moves to its failed state (the sessions do that, in
:mod:`wmark.protocol.session`, as only they read messages).

A zero-knowledge verifier is a machine of its own (its reveal is a
``zk-reveal``, its decision comes from proof checks); the prover learns which
kind of challenge it answers only from the challenge, so its one machine has
a deciding state for each: ``decide`` takes openings, ``decide-zk`` proofs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from wmark.errors import LocalProtocolError, RemoteProtocolError


class VerifierState(Enum):
    SEND_CHALLENGE = "send-challenge"
    AWAIT_REVEAL = "await-reveal"
    AWAIT_PREDICTIONS = "await-predictions"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


class VerifierEvent(Enum):
    """What moves a verifier; the value is how an error names it."""

    CHALLENGE = "issue a challenge"  # call
    DECIDE = "decide"  # call: from the model's predictions
    DECIDE_ZK = "decide from proof checks"  # call
    REVEAL = "a reveal"  # message
    ZK_REVEAL = "a zero-knowledge reveal"  # message
    REFUSAL = "a refusal"  # message


class ProverState(Enum):
    AWAIT_CHALLENGE = "await-challenge"
    DECIDE = "decide"
    DECIDE_ZK = "decide-zk"
    AWAIT_VERDICT = "await-verdict"
    DONE = "done"
    FAILED = "failed"


class ProverEvent(Enum):
    """What moves a prover; the value is how an error names it."""

    REVEAL = "reveal"  # call: open the challenged items
    ZK_REVEAL = "reveal with proofs"  # call
    REFUSE = "refuse"  # call
    CHALLENGE = "a challenge"  # message
    ZK_CHALLENGE = "a zero-knowledge challenge"  # message
    VERDICT = "a verdict"  # message


S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


@dataclass(frozen=True)
class Machine(Generic[S, E]):
    """One role's transition table and the rule that enforces it."""

    role: str
    peer: str
    table: Mapping[S, Mapping[E, S]]
    messages: frozenset[E]  # the peer's events; every other event is one of this side's calls
    failed: S  # where a message that fails its checks leaves the session
    reasons: Mapping[tuple[S, E], str] = field(default_factory=dict)  # why a call is refused, where it helps

    def step(self, state: S, event: E) -> S:
        """The state ``event`` moves ``state`` to; for a call the table has no step
        for, raises :class:`LocalProtocolError` naming both."""
        following = self.table.get(state, {}).get(event)
        if following is not None:
            return following
        # incoming() lets in only the messages a state takes, so a message here is a bug in the session.
        assert event not in self.messages, f"{event} in {state}: a message incoming() did not let in"
        why = self.reasons.get((state, event))
        raise LocalProtocolError(f"cannot {event.value} in state {state.value}" + (f": {why}" if why else ""))

    def incoming(self, state: S, named: E | None) -> E:
        """What a message that arrives in ``state`` is taken for; ``named``: the
        event its payload type names, if any.  Raises when the state takes no message."""
        awaited = [event for event in self.table.get(state, {}) if event in self.messages]
        if named in awaited:
            assert named is not None
            return named
        if awaited:
            return awaited[0]
        raise RemoteProtocolError(f"{self.peer} sent {named.value if named is not None else 'a message'} while the "
                                  f"{self.role} was in state {state.value}, where it has no turn")


_V, _VE = VerifierState, VerifierEvent

VERIFIER = Machine[VerifierState, VerifierEvent](
    role="verifier", peer="prover", failed=_V.FAILED,
    messages=frozenset({_VE.REVEAL, _VE.ZK_REVEAL, _VE.REFUSAL}),
    table={
        _V.SEND_CHALLENGE: {_VE.CHALLENGE: _V.AWAIT_REVEAL},
        _V.AWAIT_REVEAL: {_VE.REVEAL: _V.AWAIT_PREDICTIONS, _VE.REFUSAL: _V.REFUSED},
        _V.AWAIT_PREDICTIONS: {_VE.DECIDE: _V.DONE},
    },
)

ZK_VERIFIER = Machine[VerifierState, VerifierEvent](
    role="verifier", peer="prover", failed=_V.FAILED,
    messages=VERIFIER.messages,
    table={
        _V.SEND_CHALLENGE: {_VE.CHALLENGE: _V.AWAIT_REVEAL},
        # Listed first, so that openings sent instead are checked as proofs, and fail.
        _V.AWAIT_REVEAL: {_VE.ZK_REVEAL: _V.AWAIT_PREDICTIONS, _VE.REFUSAL: _V.REFUSED},
        _V.AWAIT_PREDICTIONS: {_VE.DECIDE_ZK: _V.DONE},
    },
)

_P, _PE = ProverState, ProverEvent

PROVER = Machine[ProverState, ProverEvent](
    role="prover", peer="verifier", failed=_P.FAILED,
    messages=frozenset({_PE.CHALLENGE, _PE.ZK_CHALLENGE, _PE.VERDICT}),
    table={
        _P.AWAIT_CHALLENGE: {_PE.CHALLENGE: _P.DECIDE, _PE.ZK_CHALLENGE: _P.DECIDE_ZK},
        _P.DECIDE: {_PE.REVEAL: _P.AWAIT_VERDICT, _PE.REFUSE: _P.DONE},
        _P.DECIDE_ZK: {_PE.ZK_REVEAL: _P.AWAIT_VERDICT, _PE.REFUSE: _P.DONE},
        _P.AWAIT_VERDICT: {_PE.VERDICT: _P.DONE},
    },
    reasons={
        # Opening here would hand over the very images the verifier agreed not to see.
        (_P.DECIDE_ZK, _PE.REVEAL): "a zero-knowledge challenge is answered with proofs (zk_reveal), never with "
                                  "openings",
        (_P.DECIDE, _PE.ZK_REVEAL): "proofs answer only a zero-knowledge challenge; this one asks for openings",
    },
)
