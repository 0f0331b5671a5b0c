"""``wmark-verifier zkcheck``: check the owner's zero-knowledge proofs and decide."""

from __future__ import annotations

import argparse

from wmark.console import add_circuit_arguments, add_command, add_json_argument, add_output, untrusted
from wmark.errors import InvalidInput
from wmark.protocol.keys import load_verification_key
from wmark.protocol.session import Refused, ZkVerifierSession
from wmark.protocol.zk import srs_beside
from wmark.verifier.cli._common import (
    add_decision_arguments,
    add_identity_argument,
    add_registration_arguments,
    finish_zk,
    read_envelope,
    registration_from_args,
    report_refusal,
    verifier_identity,
)
from wmark.verifier.zk import decide_with_proofs, open_verifier
from wmark.watermark.modelio import model_file_digest

EPILOG = """\
example:
  wmark-verifier zkcheck --vk vk.json --challenge challenge.json --reveal zkreveal.json \\
      --model suspect/ --out verdict.json

Rebuilds the circuit and ezkl verification key from the model you hold (never
the owner's), checks every proof under the SRS the challenge names (default:
challenge.srs beside it), that each proof is about the hidden input committed
in vk for its index, and that its class is the opened label; counts matches
and signs a verdict that reveals no trigger image. A proof that fails counts as
a non-match and is listed. Exit 0 accepted, 1 rejected, 2 invalid input
(including a rejection with invalid proofs: the verdict is still written)."""


def register(subparsers) -> None:
    p = add_command(subparsers, "zkcheck",
                    description="Verify the owner's zero-knowledge proofs against the suspect model you hold, "
                                "and decide.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key")
    p.add_argument("--challenge", required=True, metavar="FILE", help="the zero-knowledge challenge you issued")
    p.add_argument("--reveal", required=True, metavar="FILE", help="the owner's answer (zkreveal.json)")
    p.add_argument("--model", required=True, metavar="DIR", help="the suspect model the challenge names")
    p.add_argument("--srs", metavar="FILE", help="the challenge's SRS (default: CHALLENGE with suffix .srs)")
    add_output(p, "--out", required=True, what="signed transcript", help="where to write the signed transcript")
    add_json_argument(p)
    add_circuit_arguments(p)
    add_identity_argument(p, resumes=True)
    add_decision_arguments(p)
    add_registration_arguments(p)


def run(args: argparse.Namespace) -> int:
    vk, vk_envelope = load_verification_key(args.vk)
    registration, registered = registration_from_args(args, vk)
    session = ZkVerifierSession.resume(vk, verifier_identity(args, create=False),
                                       read_envelope(args.challenge, what="challenge"),
                                       p0=args.p0, lam=args.lam, registration=registered)
    if model_file_digest(args.model) != session.model.sha256:
        raise InvalidInput(f"{args.model}: not the model the challenge names "
                           f"({untrusted(session.model.describe())})")
    event = session.receive(read_envelope(args.reveal, what="reveal"))
    if isinstance(event, Refused):
        return report_refusal(event)
    with open_verifier(args.model, vk, srs=args.srs or srs_beside(args.challenge), origin=session.zk.srs_origin,
                       workdir=args.workdir, memory_limit=args.memory_limit,
                       piece_rows=session.zk.piece_rows) as verifier:
        verdict = decide_with_proofs(session, event, verifier)
    return finish_zk(session, verdict, vk_envelope, args.out, registration, args)
