"""``wmark-verifier dispute``: two accepted claims on one model; who registered first?

What decides is the registry (docs/design.md section 4b); the rule is
:func:`wmark.verifier.dispute.order_claims`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, add_json_argument, write_json_report
from wmark.errors import InvalidInput, InvalidSignature
from wmark.protocol.transcript import AuditReport, Transcript, load_transcript
from wmark.verifier.cli._common import add_margin_arguments, trusted_log
from wmark.verifier.dispute import order_claims
from wmark.verifier.reports import dispute_report
from wmark.verifier.transcripts import audit_transcript

EPILOG = """\
example:
  wmark-verifier dispute alice-verdict.json mallory-verdict.json --log-key registry/log-key.pub

Both transcripts are audited in full first. Exit 0 when one claim is named the
earlier, 1 when it cannot be decided (a claim was rejected, or neither has a
valid receipt), 2 when an input is invalid or the claims are about different models."""


def register(subparsers) -> None:
    p = add_command(subparsers, "dispute",
                    description="Audit two verification transcripts about the same model and name the owner whose "
                                "verification key was registered first.", epilog=EPILOG, func=run)
    p.add_argument("first", help="a verdict.json (transcript)")
    p.add_argument("second", help="another verdict.json about the same model")
    p.add_argument("--log-key", metavar="PEM", action="append",
                   help="a registry log you trust (repeat for several); default: trust the logs in the transcripts")
    add_margin_arguments(p)
    add_json_argument(p)


def _claim(path: str, log_keys: list[str] | None, data_root: str | None) -> tuple[Transcript, AuditReport]:
    transcript = load_transcript(path)
    report = audit_transcript(transcript, data_root)
    try:
        trusted_log(transcript, log_keys)
    except InvalidSignature as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    return transcript, report


def run(args: argparse.Namespace) -> int:
    if Path(args.first).resolve() == Path(args.second).resolve():
        raise InvalidInput(f"{args.first} is given twice: a dispute compares two different claims")
    claims = [(path, *_claim(path, args.log_key, args.data_root)) for path in (args.first, args.second)]
    if claims[0][2].verdict.chain_digest == claims[1][2].verdict.chain_digest:
        raise InvalidInput(f"{args.first} and {args.second} are the same transcript: a dispute compares two "
                           f"different claims")
    outcome = order_claims([(path, report) for path, _, report in claims])
    write_json_report(args, dispute_report([(path, report.vk, report.verdict) for path, _, report in claims],
                                           outcome.earlier, outcome.reason))
    for path, _, report in claims:
        reg = report.verdict.registration
        print(f"{path}: owner {report.vk.owner.fingerprint}, {'ACCEPTED' if report.verdict.accepted else 'REJECTED'}"
              f" (p-value {report.verdict.p_value}), {'registered ' + reg.describe() if reg else 'no registry receipt'}")
    if outcome.earlier is None:
        print(f"undecided: {outcome.reason}", file=sys.stderr)
        return EXIT_REJECTED
    winner = next(report for path, _, report in claims if path == outcome.earlier)
    print(f"EARLIER CLAIM: {outcome.earlier}: owner {winner.vk.owner.fingerprint} ({outcome.reason})")
    return EXIT_OK
