"""``wmark-verifier dispute``: two accepted claims on one model; who registered first?

Both claimants may pass verification: a thief who saw openings revealed in an
earlier public verification can commit to them under its own key, and the
model does answer them.  What decides is the registry (docs/design.md section 4b):
the key registered first wins.
"""

from __future__ import annotations

import argparse
import sys

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command
from wmark.errors import InvalidInput, InvalidSignature
from wmark.protocol.hazmat.identity import load_public_key
from wmark.protocol.transcript import AuditReport, Transcript, load_transcript
from wmark.protocol.transparency import earlier_registration
from wmark.verifier.cli._common import add_margin_arguments
from wmark.verifier.transcripts import audit_transcript, check_log_key

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


def _claim(path: str, log_keys: list[str] | None, data_root: str | None) -> tuple[Transcript, AuditReport]:
    transcript = load_transcript(path)
    report = audit_transcript(transcript, data_root)
    if log_keys and transcript.registration is not None:
        errors = []
        for key in log_keys:
            try:
                check_log_key(transcript, load_public_key(key), name=key)
                break
            except InvalidSignature as exc:
                errors.append(str(exc))
        else:
            raise InvalidInput(f"{path}: {errors[0]}")
    return transcript, report


def run(args: argparse.Namespace) -> int:
    claims = [(path, *_claim(path, args.log_key, args.data_root)) for path in (args.first, args.second)]
    (_, _, a), (_, _, b) = claims
    if a.challenge.model != b.challenge.model:
        raise InvalidInput("the two transcripts are about different models: "
                           f"{a.challenge.model.describe()} and {b.challenge.model.describe()}")
    for path, _, report in claims:
        reg = report.verdict.registration
        print(f"{path}: owner {report.vk.owner.fingerprint}, {'ACCEPTED' if report.verdict.accepted else 'REJECTED'}"
              f" (p-value {report.verdict.p_value}), {'registered ' + reg.describe() if reg else 'no registry receipt'}")
    rejected = [path for path, _, report in claims if not report.verdict.accepted]
    if rejected:
        print(f"undecided: {', '.join(rejected)} was rejected, so there is no competing claim to order", file=sys.stderr)
        return EXIT_REJECTED
    registered = [(path, report) for path, _, report in claims if report.verdict.registration is not None]
    if not registered:
        print("undecided: neither claim has a valid registry receipt, so nothing orders them in time", file=sys.stderr)
        return EXIT_REJECTED
    if len(registered) == 1:
        winner_path, winner = registered[0]
        reason = "the only claim with a registry receipt"
    else:
        first = earlier_registration(a.verdict.registration, b.verdict.registration)  # type: ignore[arg-type]
        winner_path, winner = next((p, r) for p, r in registered if r.verdict.registration == first)
        reason = "registered first"
    print(f"EARLIER CLAIM: {winner_path}: owner {winner.vk.owner.fingerprint} ({reason})")
    return EXIT_OK
