"""``wmark-verifier zkchallenge``: ask for zero-knowledge proofs about a model you hold."""

from __future__ import annotations

import argparse

from wmark.console import add_command, add_json_argument, add_output, int_in_range, untrusted, write_json_report
from wmark.errors import InvalidInput
from wmark.files import atomic_write
from wmark.protocol.decision import MAX_K
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keys import VerificationKey, load_verification_key
from wmark.protocol.session import ZkVerifierSession
from wmark.verifier.cli._common import (
    add_decision_arguments,
    add_identity_argument,
    add_setup_arguments,
    checked_setup,
    read_envelope,
    verifier_identity,
)
from wmark.verifier.reports import challenge_report
from wmark.verifier.zk import open_verifier

EPILOG = """\
examples:
  wmark-verifier zkchallenge --vk vk.json --model suspect/ --k 100 --out challenge.json
  wmark-verifier zkchallenge --vk vk.json --model suspect/ --k 100 --srs ceremony.srs --out challenge.json
  wmark-verifier zkchallenge --vk vk.json --model reference/ --k 1 --same-items-as challenge.json --out c2.json

Builds the suspect model's circuit and ezkl verification key here, from the
model you hold, and names both in the signed challenge. Without --srs a fresh
SRS is generated beside the challenge (challenge.srs): send both files to the
owner, who answers with `wmark-prover zkprove`; then run `wmark-verifier
zkcheck`. Proofs under your own SRS convince you only (designated verifier);
--srs FILE takes a public ceremony SRS, for verdicts meant for third parties.
No trigger image is revealed, so k can be n. It prints what the owner's
proofs will take (memory and CPU time per item and for all k), and refuses a
model whose proof would need more than --memory-limit (default: the memory
available here) before writing anything. --same-items-as takes an earlier
challenge of yours for the same key and k, and draws nonces until the new one
samples the same items (any verifier can; allowed only where that takes at
most 40,000 draws, e.g. k = 1): to have the same items proven on a second
model. Needs pip install '.[zk]'."""


def register(subparsers) -> None:
    p = add_command(subparsers, "zkchallenge",
                    description="Challenge the owner to prove, in zero knowledge, that the suspect model you hold "
                                "classifies k committed trigger images as their labels.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key (made with --zk)")
    p.add_argument("--model", required=True, metavar="DIR", help="the suspect model (model.json + "
                                                                 "model.safetensors)")
    p.add_argument("--k", type=int_in_range(1, MAX_K), required=True,
                   help="how many trigger items to prove (k = n reveals nothing)")
    add_output(p, "--out", required=True, what="challenge", help="where to write the challenge")
    p.add_argument("--same-items-as", metavar="FILE",
                   help="an earlier challenge of yours for this key and k: sample the same items")
    add_setup_arguments(p)
    add_identity_argument(p)
    add_decision_arguments(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    vk, _ = load_verification_key(args.vk)
    srs_out = checked_setup(args, vk, otherwise="use wmark-verifier challenge")
    identity = verifier_identity(args)
    # Before the circuit is built: a wrong earlier challenge must not cost minutes of setup first.
    items = None if args.same_items_as is None else same_items(args.same_items_as, vk, identity, args.k)
    with open_verifier(args.model, vk, srs=args.srs, srs_out=srs_out, workdir=args.workdir,
                       memory_limit=args.memory_limit) as verifier:
        session = ZkVerifierSession(vk, identity, verifier.model_ref, args.k, zk=verifier.parameters, p0=args.p0,
                                    lam=args.lam)
        envelope = session.challenge(items)
        atomic_write(args.out, envelope.to_json())
    print(f"wrote {args.out}: prove {args.k} of {vk.n} trigger items in zero knowledge on "
          f"{untrusted(verifier.model_ref.describe())}")
    print(f"  circuit   input scale {verifier.pieces.input_scale}; the owner's proofs: "
          f"{verifier.pieces.describe(args.k)}")
    print(f"  SRS       {verifier.srs.path} (2^{verifier.srs.logrows}, sha256 {verifier.srs.sha256.hex()}, "
          f"{verifier.origin.value}): send it with the challenge")
    write_json_report(args, challenge_report(session, args.out, srs=str(verifier.srs.path)))
    return 0


def same_items(path: str, vk: VerificationKey, identity: SigningKey, k: int) -> tuple[int, ...]:
    """The items an earlier zero-knowledge challenge of this verifier, for ``vk`` and ``k``, sampled."""
    earlier = ZkVerifierSession.resume(vk, identity, read_envelope(path, what="challenge"))
    if earlier.issued_challenge.k != k:
        raise InvalidInput(f"--same-items-as {path}: it samples {earlier.issued_challenge.k} items, not --k {k}")
    return earlier.subset
