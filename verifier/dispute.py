"""Two accepted claims on one model: which was registered first (docs/design.md section 4b).

Both claimants may pass verification: a thief who saw openings revealed in an
earlier public verification can commit to them under its own key, and the
model does answer them.  What decides is the registry: the key registered
first wins.  Shared by ``wmark-verifier dispute`` and ``report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wmark.errors import InvalidInput
from wmark.protocol.transcript import AuditReport
from wmark.protocol.transparency import earlier_registration


@dataclass(frozen=True)
class DisputeOutcome:
    """The claim registered first (its name), or None and why it cannot be said."""

    earlier: str | None
    reason: str


def order_claims(claims: Sequence[tuple[str, AuditReport]]) -> DisputeOutcome:
    """Order two audited claims, each named (a path); raise if they are about different models."""
    (_, a), (_, b) = claims
    if a.challenge.model != b.challenge.model:
        raise InvalidInput("the two transcripts are about different models: "
                           f"{a.challenge.model.describe()} and {b.challenge.model.describe()}")
    rejected = [name for name, report in claims if not report.verdict.accepted]
    if rejected:
        return DisputeOutcome(None, f"{', '.join(rejected)} was rejected, so there is no competing claim to order")
    registered = [(name, report) for name, report in claims if report.verdict.registration is not None]
    if not registered:
        return DisputeOutcome(None, "neither claim has a valid registry receipt, so nothing orders them in time")
    if len(registered) == 1:
        return DisputeOutcome(registered[0][0], "the only claim with a registry receipt")
    registration_a, registration_b = a.verdict.registration, b.verdict.registration
    assert registration_a is not None and registration_b is not None  # both registered: the cases above returned
    first = earlier_registration(registration_a, registration_b)
    return DisputeOutcome(next(name for name, report in registered if report.verdict.registration == first),
                          "registered first")
