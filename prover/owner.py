"""The owner's prover: one key set and its leakage ledger, answering challenges.

Loaded once and shared by the files transport (``wmark-prover prove``) and the
live server (:mod:`wmark.prover.server`); every answer goes through the ledger
first (docs/design.md section 4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

from wmark.errors import InvalidInput
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keys import MarkingKey, VerificationKey, key_set_mismatch
from wmark.protocol.session import ProverSession
from wmark.prover.ledger import Ledger, Outcome, Response, VerifierPolicy


@dataclass(frozen=True, repr=False)
class Prover:
    """Everything that answers challenges for one key: loaded once, shared by ``prove`` and ``serve``."""

    mk: MarkingKey
    vk: VerificationKey
    owner: SigningKey
    ledger: Ledger
    budget: Fraction
    policy: VerifierPolicy = VerifierPolicy()

    def session(self) -> ProverSession:
        return ProverSession(self.mk, self.vk, self.owner)

    def answer(self, session: ProverSession, challenge: dsse.Envelope) -> Response:
        return self.ledger.respond(session, challenge, budget=self.budget, policy=self.policy)


def open_prover(mk: MarkingKey, vk: VerificationKey, owner: SigningKey, *, ledger: str | os.PathLike[str],
                budget: Fraction, policy: VerifierPolicy = VerifierPolicy(), mk_name: str = "the marking key",
                vk_name: str = "the verification key") -> Prover:
    """The prover of one owner's key set, refused (naming ``mk_name`` and ``vk_name``)
    unless the three keys belong together, with the ledger at ``ledger``."""
    mismatch = key_set_mismatch(mk, vk, owner.public_key, mk_name=mk_name, vk_name=vk_name)
    if mismatch is not None:
        raise InvalidInput(mismatch)
    return Prover(mk, vk, owner, Ledger.open(ledger, vk), budget, policy)


def describe(response: Response, budget: Fraction) -> str:
    """One line on what an answer gave away, for ``prove`` and the ``serve`` log."""
    total = (f"{response.revealed} of {response.n} items ({float(response.fraction):.1%}) revealed in all, "
             f"budget {float(budget):.0%}")
    if response.outcome is Outcome.REFUSED:
        return f"refused to open {response.k} of {response.n} items; {total}"
    again = ", a repeated challenge: the same answer as before" if response.repeated else ""
    return f"opened {response.k} of {response.n} items ({len(response.new_indices)} new{again}); {total}"
