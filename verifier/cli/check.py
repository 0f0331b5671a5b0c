"""``wmark-verifier check``: query the model on the revealed items and decide."""

from __future__ import annotations

import argparse

from wmark.console import add_command, add_json_argument, add_output, untrusted
from wmark.errors import InvalidInput
from wmark.protocol.session import Refused, VerifierSession
from wmark.verifier.cli._common import (
    add_deciding_arguments,
    finish,
    load_vk_for_decision,
    oracle_from_args,
    read_envelope,
    refuse_unwitnessed,
    registration_from_args,
    report_refusal,
    verifier_identity,
)
from wmark.verifier.transcripts import query_split_for
from wmark.verifier.verify import decide_with_model, default_decoys

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
    p = add_command(subparsers, "check",
                    description="Verify the owner's reveal against the verification key, query the suspect "
                                "model, and decide.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key")
    p.add_argument("--challenge", required=True, metavar="FILE", help="the challenge you issued")
    p.add_argument("--reveal", required=True, metavar="FILE", help="the owner's answer")
    add_output(p, "--out", required=True, what="signed transcript", help="where to write the signed transcript")
    add_json_argument(p)
    add_deciding_arguments(p, resumes=True)


def run(args: argparse.Namespace) -> int:
    vk, vk_envelope = load_vk_for_decision(args)
    registration, registered = registration_from_args(args, vk)
    if (refused := refuse_unwitnessed(args, registration)) is not None:
        return refused
    session = VerifierSession.resume(vk, verifier_identity(args, create=False),
                                     read_envelope(args.challenge, what="challenge"),
                                     p0=args.p0, lam=args.lam, registration=registered,
                                     margin=query_split_for(vk, args.data_root))
    oracle = oracle_from_args(args)
    if oracle.model_ref != session.model:
        raise InvalidInput(f"the challenge names {untrusted(session.model.describe())}, but the model given is "
                           f"{untrusted(oracle.model_ref.describe())}")
    event = session.receive(read_envelope(args.reveal, what="reveal"))
    if isinstance(event, Refused):
        return report_refusal(event)
    verdict = decide_with_model(session, event, oracle, decoys=default_decoys(
        vk.input_shape, dataset=vk.margin.dataset if vk.margin else None, data_root=args.data_root))
    return finish(session, verdict, vk_envelope, args.out, registration, args)
