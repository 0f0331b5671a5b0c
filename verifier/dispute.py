"""Two accepted claims on one model: which was registered first (docs/design.md section 4b).

Both claimants may pass verification: a thief who saw openings revealed in an
earlier public verification can commit to them under its own key, and the
model does answer them.  What decides is the registry: the key registered
first wins.  Shared by ``wmark-verifier dispute`` and ``report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wmark.errors import InvalidInput
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.transcript import AuditReport
from wmark.protocol.transparency import RegistrationInfo, earlier_registration


@dataclass(frozen=True)
class LogTrust:
    """Whether a transcript's receipt comes from a log the user named, in words."""

    trusted: bool
    text: str


@dataclass(frozen=True)
class DisputeOutcome:
    """The claim registered first (its name), or None and why it cannot be said."""

    earlier: str | None
    reason: str


def log_trust(log_keyid: str, trusted: Sequence[PublicKey]) -> LogTrust:
    """The one rule for every command that reads a receipt (dispute, audit,
    report; docs/design.md section 4b): a receipt proves a time only from a log
    the user named.

    An audit checks a receipt against the log key the transcript itself
    carries, which proves only that *some* log signed it: whoever wrote the
    transcript may run that log, with its clock wherever it likes.
    """
    if not trusted:
        return LogTrust(False, f"registration unverified: the receipt comes from log SHA256:{log_keyid}, and no "
                               f"log key was named (--log-key) to trust")
    if log_keyid not in {key.keyid for key in trusted}:
        return LogTrust(False, f"registration unverified: the receipt comes from log SHA256:{log_keyid}, which is "
                               f"not a log you named")
    return LogTrust(True, f"the receipt comes from log SHA256:{log_keyid}, a log you named")


def trusted_registration(report: AuditReport, trusted: Sequence[PublicKey],
                         unwitnessed: str | None = None) -> tuple[RegistrationInfo | None, str]:
    """The registration a claim proves, if its log is one the user named
    (:func:`log_trust`) and its receipt meets the user's witness policy
    (``unwitnessed``: why it does not), and a line saying so."""
    reg = report.verdict.registration
    if reg is None:
        return None, "no registry receipt"
    trust = log_trust(reg.log_keyid, trusted)
    if not trust.trusted:
        return None, trust.text
    if unwitnessed is not None:
        return None, f"registration unverified: the receipt does not meet your witness policy ({unwitnessed})"
    return reg, "registered " + reg.describe()


def order_claims(claims: Sequence[tuple[str, AuditReport]], trusted: Sequence[PublicKey],
                 unwitnessed: Mapping[str, str] | None = None) -> DisputeOutcome:
    """Order two audited claims, each named (a path), by their receipts from the
    ``trusted`` logs only, leaving out those ``unwitnessed`` names (claim -> why its
    receipt fails the witness policy); raise if they are about different models."""
    unwitnessed = unwitnessed or {}
    (_, a), (_, b) = claims
    if a.challenge.model != b.challenge.model:
        raise InvalidInput("the two transcripts are about different models: "
                           f"{a.challenge.model.describe()} and {b.challenge.model.describe()}")
    rejected = [name for name, report in claims if not report.verdict.accepted]
    if rejected:
        return DisputeOutcome(None, f"{', '.join(rejected)} was rejected, so there is no competing claim to order")
    if not trusted:
        return DisputeOutcome(None, "registration unverified: no log key was named (--log-key), and a receipt "
                                    "proves a time only from a log you trust")
    registered = [(name, info) for name, report in claims
                  if (info := trusted_registration(report, trusted, unwitnessed.get(name))[0]) is not None]
    if not registered:
        return DisputeOutcome(None, "neither claim has a registry receipt from a log you trust, so nothing orders "
                                    "them in time")
    if len(registered) == 1:
        return DisputeOutcome(registered[0][0], "the only claim with a receipt from a log you trust")
    first = earlier_registration(registered[0][1], registered[1][1])
    return DisputeOutcome(next(name for name, info in registered if info == first), "registered first")
