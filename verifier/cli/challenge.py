"""``wmark-verifier challenge``: start a verification through files."""

from __future__ import annotations

import argparse

from wmark.console import add_command, add_json_argument, add_output, int_in_range, untrusted, write_json_report
from wmark.files import atomic_write
from wmark.protocol.decision import MAX_K
from wmark.protocol.session import VerifierSession
from wmark.verifier.cli._common import (
    add_decision_arguments,
    add_identity_argument,
    add_model_arguments,
    load_vk_for_decision,
    oracle_from_args,
    verifier_identity,
)
from wmark.verifier.reports import challenge_report

EPILOG = """\
examples:
  wmark-verifier challenge --vk vk.json --model suspect/ --k 20 --out challenge.json
  wmark-verifier challenge --vk vk.json --endpoint http://127.0.0.1:8080 --model-name m --k 20 --out challenge.json

Send challenge.json to the owner, who answers with `wmark-prover prove`; then
run `wmark-verifier check`. k = n asks for public verification (every trigger
item is opened); k < n keeps the rest of the watermark secret. Use
`wmark-verifier plan` to choose k."""


def register(subparsers) -> None:
    p = add_command(subparsers, "challenge",
                    description="Name the suspect model and sample size k, with a fresh nonce, signed by the "
                                "verifier.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key (vk.json)")
    p.add_argument("--k", type=int_in_range(1, MAX_K), required=True,
                   help="how many trigger items to open (k = n: public)")
    add_output(p, "--out", required=True, what="challenge", help="where to write the challenge")
    add_model_arguments(p)
    add_identity_argument(p)
    add_decision_arguments(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    vk, _ = load_vk_for_decision(args)
    oracle = oracle_from_args(args)
    session = VerifierSession(vk, verifier_identity(args), oracle.model_ref, args.k, p0=args.p0, lam=args.lam)
    envelope = session.challenge()
    atomic_write(args.out, envelope.to_json())
    print(f"wrote {args.out}: open {args.k} of {vk.n} trigger items "
          f"({'public verification' if args.k == vk.n else 'private verification'}) on "
          f"{untrusted(oracle.model_ref.describe())}")
    write_json_report(args, challenge_report(session, args.out))
    return 0
