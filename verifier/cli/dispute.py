"""``wmark-verifier dispute``: two accepted claims on one model; who registered first?

What decides is the registry (docs/design.md section 4b); the rule is
:func:`wmark.verifier.dispute.order_claims`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, add_json_argument, untrusted, write_json_report
from wmark.errors import InvalidInput
from wmark.protocol.hazmat.identity import load_public_key
from wmark.protocol.transcript import load_transcript
from wmark.verifier.cli._common import (
    add_margin_arguments,
    add_witness_policy_arguments,
    unwitnessed,
    witness_policy_from_args,
)
from wmark.verifier.dispute import order_claims, trusted_registration
from wmark.verifier.reports import dispute_report
from wmark.verifier.transcripts import audit_transcript

EPILOG = """\
example:
  wmark-verifier dispute alice-verdict.json mallory-verdict.json --log-key registry/log-key.pub

Both transcripts are audited in full first. Only receipts from the logs named
with --log-key count; a receipt from any other log is "registration
unverified", and so, with --log-vkey, is one whose checkpoint lacks the log's
signature or QUORUM cosignatures of the --witness keys. Exit 0 when one claim is named the earlier, 1 when it cannot be
decided (a claim was rejected, or neither has a receipt from a trusted log), 2
when an input is invalid, no --log-key is given, or the claims are about
different models."""


def register(subparsers) -> None:
    p = add_command(subparsers, "dispute",
                    description="Audit two verification transcripts about the same model and name the owner whose "
                                "verification key was registered first.", epilog=EPILOG, func=run)
    p.add_argument("first", help="a verdict.json (transcript)")
    p.add_argument("second", help="another verdict.json about the same model")
    p.add_argument("--log-key", metavar="PEM", action="append", default=[],
                   help="a registry log you trust (repeat for several); required: a receipt from any other log "
                        "proves nothing about time")
    add_witness_policy_arguments(p, log_vkey=True)
    add_margin_arguments(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    if not args.log_key:
        # Without a log the user trusts, the transcripts' own logs would order
        # the claims: a thief's log with its clock at 1970 would name the thief.
        raise InvalidInput("registration unverified: a dispute is decided by registry receipts, which prove a "
                           "time only from a log you trust; name it with --log-key PEM (repeat for several)")
    if Path(args.first).resolve() == Path(args.second).resolve():
        raise InvalidInput(f"{untrusted(args.first)} is given twice: a dispute compares two different claims")
    trusted = [load_public_key(key) for key in args.log_key]
    policy = witness_policy_from_args(args)
    transcripts = [(path, load_transcript(path)) for path in (args.first, args.second)]
    claims = [(path, audit_transcript(transcript, args.data_root)) for path, transcript in transcripts]
    if claims[0][1].verdict.chain_digest == claims[1][1].verdict.chain_digest:
        raise InvalidInput(f"{untrusted(args.first)} and {untrusted(args.second)} are the same transcript: a "
                           f"dispute compares two different claims")
    # With a witness policy, a receipt whose checkpoint lacks the quorum proves no time (docs/design.md section 4b);
    # the audit verified each receipt already, so only the policy is left to check.
    unmet = {path: reason for (path, transcript), (_, report) in zip(transcripts, claims)
             if policy is not None and transcript.registration is not None
             and (reason := unwitnessed(transcript.registration.receipt, policy)) is not None}
    outcome = order_claims(claims, trusted, unmet)
    write_json_report(args, dispute_report([(path, report.vk, report.verdict) for path, report in claims],
                                           outcome.earlier, outcome.reason))
    for path, report in claims:
        print(f"{untrusted(path)}: owner {report.vk.owner.fingerprint}, "
              f"{'ACCEPTED' if report.verdict.accepted else 'REJECTED'} (p-value {report.verdict.p_value}), "
              f"{trusted_registration(report, trusted, unmet.get(path))[1]}")
    if outcome.earlier is None:
        print(f"undecided: {untrusted(outcome.reason)}", file=sys.stderr)
        return EXIT_REJECTED
    winner = next(report for path, report in claims if path == outcome.earlier)
    print(f"EARLIER CLAIM: {untrusted(outcome.earlier)}: owner {winner.vk.owner.fingerprint} ({outcome.reason})")
    return EXIT_OK
