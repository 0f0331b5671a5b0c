"""``wmark-verifier check``: query the model on the revealed items and decide."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, untrusted
from wmark.errors import InvalidInput
from wmark.files import atomic_write
from wmark.protocol.keys import load_verification_key
from wmark.protocol.messages import Verdict, decode
from wmark.protocol.session import AnyVerifierSession, Refused, VerifierSession
from wmark.protocol.transcript import Registration, Transcript
from wmark.verifier.cli._common import (
    add_deciding_arguments,
    oracle_from_args,
    print_verdict,
    read_envelope,
    registration_from_args,
    verifier_identity,
    write_transcript,
)
from wmark.verifier.verify import decide_with_model, default_decoys, query_split_for

EPILOG = """\
example:
  wmark-verifier check --vk vk.json --challenge challenge.json --reveal reveal.json \\
      --model suspect/ --out verdict.json

Checks every opening against vk (and the VRF proof of derived items), queries
the model itself on the opened trigger images shuffled among ordinary inputs,
and signs a verdict. verdict.json is the whole transcript; anyone can re-check
it with `wmark-verifier audit verdict.json`.
Exit 0 accepted, 1 rejected (or refused by the owner), 2 invalid input."""


def register(subparsers) -> None:
    p = add_command(subparsers, "check", help="check a reveal, query the model, sign the verdict",
                    description="Verify the owner's reveal against the verification key, query the suspect "
                                "model, and decide.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key")
    p.add_argument("--challenge", required=True, metavar="FILE", help="the challenge you issued")
    p.add_argument("--reveal", required=True, metavar="FILE", help="the owner's answer")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the signed transcript")
    add_deciding_arguments(p)


def finish(session: AnyVerifierSession, verdict_envelope, vk_envelope, out: str,
           registration: Registration | None) -> int:
    """Write the transcript and report; shared by the file and live transports."""
    assert session.challenge_envelope is not None and session.reveal_envelope is not None
    write_transcript(out, Transcript(vk_envelope, session.challenge_envelope, session.reveal_envelope,
                                     verdict_envelope, registration))
    verdict = decode(verdict_envelope, (Verdict,))
    assert isinstance(verdict, Verdict)
    print_verdict(verdict)
    print(f"wrote {out} (signed transcript; anyone can re-check it: wmark-verifier audit {out})")
    return EXIT_OK if verdict.accepted else EXIT_REJECTED


def report_refusal(event: Refused, *, keep: Path | None = None) -> int:
    """Report the owner's refusal; ``keep``: where to save it, when it exists nowhere else
    (a live session's: the files transport's is the owner's answer file already)."""
    print(f"REFUSED by the owner: {untrusted(event.reason)}", file=sys.stderr)
    if keep is not None:
        atomic_write(keep, event.envelope.to_json())
        print(f"wrote {keep} (the owner's signed refusal)", file=sys.stderr)
    return EXIT_REJECTED


def refusal_path(out: str) -> Path:
    """Where a live session keeps the owner's signed refusal: OUT with suffix .refusal.json."""
    return Path(out).with_suffix(".refusal.json")


def run(args: argparse.Namespace) -> int:
    vk, vk_envelope = load_verification_key(args.vk)
    registration = registration_from_args(args, vk)
    session = VerifierSession.resume(vk, verifier_identity(args), read_envelope(args.challenge, what="challenge"),
                                     p0=args.p0, lam=args.lam,
                                     registration=registration.verify(vk) if registration else None,
                                     margin=query_split_for(vk, args.data_root))
    oracle = oracle_from_args(args)
    if oracle.model_ref != session.model:
        raise InvalidInput(f"the challenge names {untrusted(session.model.describe())}, but the model given is "
                           f"{untrusted(oracle.model_ref.describe())}")
    event = session.receive(read_envelope(args.reveal, what="reveal"))
    if isinstance(event, Refused):
        return report_refusal(event)
    verdict = decide_with_model(session, event, oracle, decoys=default_decoys(vk.input_shape))
    return finish(session, verdict, vk_envelope, args.out, registration)
