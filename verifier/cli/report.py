"""``wmark-verifier report``: a transcript (or two in a dispute) as a page a judge can read."""

from __future__ import annotations

import argparse
import hashlib
import sys

from wmark.console import EXIT_INVALID, EXIT_OK, add_command, add_output
from wmark.errors import InvalidInput, InvalidOpening, WmarkError
from wmark.files import atomic_write, read_bounded
from wmark.protocol.hazmat.encoding import MAX_DOCUMENT_BYTES
from wmark.protocol.hazmat.identity import load_public_key
from wmark.protocol.transcript import Transcript
from wmark.verifier.cli._common import add_margin_arguments, add_model_arguments, trusted_log
from wmark.verifier.cli.audit import recheck_model
from wmark.verifier.dispute import DisputeOutcome, order_claims
from wmark.verifier.report import Claim, render
from wmark.verifier.transcripts import audit_transcript

EPILOG = """\
examples:
  wmark-verifier report verdict.json --out report.html --log-key registry/log-key.pub
  wmark-verifier report verdict.json --out report.html --model suspect/   # ... and re-query the model
  wmark-verifier report alice.json mallory.json --out dispute.html          # side by side: who registered first

The transcript is audited in full first. Exit 0 when every transcript is valid
(whatever the verdict), 2 when one is not: the page is still written, and its
first line says which is invalid and why."""


def register(subparsers) -> None:
    p = add_command(subparsers, "report",
                    description="Audit a verification transcript and write one HTML page that shows the claim, "
                                "the opened trigger items with the suspect's answers, the statistics, the "
                                "registration, every check and the caveats. The page loads nothing from the "
                                "network and prints well. Two transcripts of a dispute are shown side by side.",
                    epilog=EPILOG, func=run)
    p.add_argument("files", nargs="+", metavar="TRANSCRIPT", help="a verdict.json (two for a dispute)")
    add_output(p, "--out", required=True, metavar="HTML", what="report page", help="the page to write")
    p.add_argument("--log-key", metavar="PEM", action="append",
                   help="a registry log you trust (repeat for several): the receipts must come from one of them")
    add_model_arguments(p)
    add_margin_arguments(p)
    p.add_argument("--srs", metavar="FILE", help="zero-knowledge transcripts: the SRS the challenge names, to "
                                                 "re-check the proofs against --model")


def _claim(path: str, data: bytes, args: argparse.Namespace) -> Claim:
    """Audit one transcript; an invalid one becomes a claim that carries only the reason."""
    digest = hashlib.sha256(data).digest()
    try:
        transcript = Transcript.from_json(data, what=path)
        report = audit_transcript(transcript, args.data_root)
        log_trust = trusted_log(transcript, args.log_key)
    except WmarkError as exc:
        return Claim(path, digest, invalid=str(exc))
    try:
        # A wrong --model or a missing --srs is the user's mistake (raised, no page);
        # a model that now answers otherwise than recorded is a finding about the transcript.
        model_check = recheck_model(report, args) if args.model or args.endpoint else None
    except InvalidOpening as exc:
        return Claim(path, digest, invalid=str(exc))
    return Claim(path, digest, report, log_trust=log_trust, model_check=model_check)


def run(args: argparse.Namespace) -> int:
    if len(args.files) > 2:
        raise InvalidInput("report takes one transcript, or two of a dispute")
    # Read everything before writing anything: a missing file is the user's
    # mistake, not an invalid transcript, and gets no page.
    inputs = [(path, read_bounded(path, max_bytes=MAX_DOCUMENT_BYTES, what="transcript")) for path in args.files]
    claims = [_claim(path, data, args) for path, data in inputs]
    dispute: DisputeOutcome | str | None = None
    failed = [c for c in claims if c.report is None]
    if len(claims) == 2:
        if failed:
            dispute = f"{failed[0].name} does not audit"
        else:
            try:
                dispute = order_claims([(c.name, c.report) for c in claims if c.report is not None],
                                       [load_public_key(key) for key in args.log_key or ()])
            except WmarkError as exc:
                dispute = str(exc)
    atomic_write(args.out, render(claims, log_keys=args.log_key or (), dispute=dispute).encode("utf-8"))
    for claim in failed:
        print(f"wmark-verifier: error: {claim.name}: invalid transcript: {claim.invalid} "
              f"(the report {args.out} says so)", file=sys.stderr)
    if isinstance(dispute, str) and not failed:
        print(f"wmark-verifier: error: {dispute} (the report {args.out} says so)", file=sys.stderr)
    if failed or isinstance(dispute, str):
        return EXIT_INVALID
    print(f"wrote {args.out}: " + "; ".join(
        f"{c.name} {'ACCEPTED' if c.report and c.report.verdict.accepted else 'REJECTED'}" for c in claims)
        + (f"; earlier claim: {dispute.earlier}" if isinstance(dispute, DisputeOutcome) and dispute.earlier
           else ""))
    return EXIT_OK
