"""``wmark-verifier dispute``: two accepted claims on one model; who registered first?

Both claimants may pass verification: a thief who saw openings revealed in an
earlier public verification can commit to them under its own key, and the
model does answer them.  What decides is the registry (docs/design.md section 4b):
the key registered first wins.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, untrusted
from wmark.errors import InvalidInput
from wmark.protocol.hazmat.identity import PublicKey, load_public_key
from wmark.protocol.transcript import AuditReport, load_transcript
from wmark.protocol.transparency import RegistrationInfo, earlier_registration
from wmark.verifier.cli._common import add_margin_arguments
from wmark.verifier.verify import audit_transcript, trusted_registration

EPILOG = """\
example:
  wmark-verifier dispute alice-verdict.json mallory-verdict.json --log-key registry/log-key.pub

Both transcripts are audited in full first. Only receipts from the logs named
with --log-key count; a receipt from any other log is "registration
unverified". Exit 0 when one claim is named the earlier, 1 when it cannot be
decided (a claim was rejected, or neither has a receipt from a trusted log), 2
when an input is invalid, no --log-key is given, or the claims are about
different models."""


def register(subparsers) -> None:
    p = add_command(subparsers, "dispute", help="name which of two accepted claims was registered first",
                    description="Audit two verification transcripts about the same model and name the owner whose "
                                "verification key was registered first.", epilog=EPILOG, func=run)
    p.add_argument("first", help="a verdict.json (transcript)")
    p.add_argument("second", help="another verdict.json about the same model")
    p.add_argument("--log-key", metavar="PEM", action="append", default=[],
                   help="a registry log you trust (repeat for several); required: a receipt from any other log "
                        "proves nothing about time")
    add_margin_arguments(p)


@dataclass(frozen=True)
class _Claim:
    path: str
    report: AuditReport
    registration: RegistrationInfo | None  # from a log the user trusts, else None
    note: str


def _claim(path: str, trusted: list[PublicKey], data_root: str | None) -> _Claim:
    transcript = load_transcript(path)
    report = audit_transcript(transcript, data_root)
    return _Claim(path, report, *trusted_registration(transcript, report, trusted))


def run(args: argparse.Namespace) -> int:
    if not args.log_key:
        # Without a log the user trusts, the transcripts' own logs would order
        # the claims: a thief's log with its clock at 1970 would name the thief.
        raise InvalidInput("registration unverified: a dispute is decided by registry receipts, which prove a "
                           "time only from a log you trust; name it with --log-key PEM (repeat for several)")
    trusted = [load_public_key(key) for key in args.log_key]
    claims = [_claim(path, trusted, args.data_root) for path in (args.first, args.second)]
    a, b = (c.report for c in claims)
    if a.challenge.model != b.challenge.model:
        raise InvalidInput("the two transcripts are about different models: "
                           f"{untrusted(a.challenge.model.describe())} and {untrusted(b.challenge.model.describe())}")
    for c in claims:
        print(f"{untrusted(c.path)}: owner {c.report.vk.owner.fingerprint}, "
              f"{'ACCEPTED' if c.report.verdict.accepted else 'REJECTED'} (p-value {c.report.verdict.p_value}), "
              f"{c.note}")
    rejected = [c.path for c in claims if not c.report.verdict.accepted]
    if rejected:
        print(f"undecided: {untrusted(', '.join(rejected))} was rejected, so there is no competing claim to order",
              file=sys.stderr)
        return EXIT_REJECTED
    registered = [c for c in claims if c.registration is not None]
    if not registered:
        print("undecided: neither claim has a registry receipt from a log you trust, so nothing orders them in "
              "time", file=sys.stderr)
        return EXIT_REJECTED
    if len(registered) == 1:
        winner = registered[0]
        reason = "the only claim with a receipt from a log you trust"
    else:
        first = earlier_registration(*(c.registration for c in registered))  # type: ignore[arg-type]
        winner = next(c for c in registered if c.registration == first)
        reason = "registered first"
    print(f"EARLIER CLAIM: {untrusted(winner.path)}: owner {winner.report.vk.owner.fingerprint} ({reason})")
    return EXIT_OK
