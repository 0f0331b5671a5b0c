"""``wmark-prover zkprove``: answer a zero-knowledge challenge with proofs (the files transport)."""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from wmark.console import (
    EXIT_OK,
    EXIT_REJECTED,
    add_circuit_arguments,
    add_command,
    add_json_argument,
    add_output,
    add_ray_argument,
    load_marking_key,
    untrusted,
    write_json_report,
)
from wmark.errors import InvalidInput
from wmark.files import atomic_write, read_bounded
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import load_signing_key
from wmark.protocol.keys import load_verification_key
from wmark.protocol.messages import MAX_MESSAGE_BYTES, ZkReveal, decode
from wmark.protocol.session import ChallengeReceived, ProverSession
from wmark.protocol.zk import srs_beside
from wmark.prover.cli._common import add_policy_arguments, owner_key_path, policy_from_args
from wmark.prover.ledger import Ledger, default_ledger_path
from wmark.prover.zk import prove_challenge
from wmark.watermark.zksplit import Pieces

EPILOG = """\
example:
  wmark-prover zkprove --mk keys/mk.wmk --vk keys/vk.json --model suspect/ \\
      --challenge challenge.json --out zkreveal.json

For each trigger item the challenge samples, proves with ezkl that the
suspect model maps the item's hidden input (image and secret salt, committed
in vk by wmark keygen --zk) to a class, and opens the item's label. No image,
seed or salt leaves this machine, so no budget is spent; the session is
recorded in the ledger (and held to --allow-verifier and --zk-per-hour). The
SRS is the one the challenge names (default: challenge.srs beside it). Before
proving it prints the circuit's height and what the proofs will take (memory
per item, CPU time per item and for all of them), and refuses a circuit whose
proof would need more than --memory-limit. About 20 s and 2 GB per item for a
digits zk_cnn on 2 cores. Needs pip install '.[zk]'."""


def register(subparsers) -> None:
    p = add_command(subparsers, "zkprove",
                    description="Prove, in zero knowledge, that the suspect model classifies each challenged "
                                "trigger image as its committed label.", epilog=EPILOG, func=run)
    p.add_argument("--mk", required=True, metavar="FILE", help="the marking key (mk.wmk, made with --zk)")
    p.add_argument("--vk", required=True, metavar="FILE", help="its verification key (vk.json)")
    p.add_argument("--owner-key", metavar="PEM",
                   help="the owner's signing key (default: owner.pem beside the vk, else beside the mk)")
    p.add_argument("--model", required=True, metavar="DIR", help="the suspect model the challenge names")
    p.add_argument("--challenge", required=True, metavar="FILE", help="the verifier's challenge.json")
    p.add_argument("--srs", metavar="FILE", help="the challenge's SRS (default: CHALLENGE with suffix .srs)")
    add_output(p, "--out", required=True, what="proofs", help="where to write the proofs (zkreveal.json)")
    p.add_argument("--ledger", metavar="DB", help="the ledger that records the session (default: the key's own)")
    add_policy_arguments(p)
    add_circuit_arguments(p)
    add_ray_argument(p, "prove each item as a Ray task")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    challenge = dsse.Envelope.from_json(read_bounded(args.challenge, max_bytes=MAX_MESSAGE_BYTES,
                                                     what="challenge"), what=args.challenge)
    vk, _ = load_verification_key(args.vk)
    owner = load_signing_key(owner_key_path(args))
    mk = load_marking_key(args.mk)
    session = ProverSession(mk, vk, owner)
    event = session.receive(challenge)
    assert isinstance(event, ChallengeReceived)
    if event.challenge.zk is None:
        raise InvalidInput(f"{args.challenge}: asks for openings, not proofs; answer it with wmark-prover prove")
    # Recorded, and held to the owner's policy, before anything is proved.
    refused = Ledger.open(args.ledger or default_ledger_path(vk.digest), vk).admit_zk(event,
                                                                                    policy=policy_from_args(args))
    if refused is not None:
        atomic_write(args.out, session.refuse(refused).to_json())
        print(f"REFUSED: {untrusted(refused)}")
        print(f"wrote {args.out} (a signed refusal)")
        write_json_report(args, _report(args.out, event, refused, proofs=0))
        return EXIT_REJECTED
    print(f"challenge from verifier {event.challenge.verifier.fingerprint} on "
          f"{untrusted(event.challenge.model.describe())}: prove {len(event.indices)} of {vk.n} items")
    def announce(pieces: Pieces) -> None:
        print(f"  cost      {pieces.describe(len(event.indices))}", flush=True)

    # tqdm shows proofs done / total and the time left.
    with tqdm(total=len(event.indices), desc="proving", unit="proof", leave=False) as bar:
        answer = prove_challenge(session, event, mk, args.model, args.srs or srs_beside(args.challenge),
                                 workdir=args.workdir, memory_limit=args.memory_limit, progress=bar.update,
                                 ray_address=args.ray, on_cost=announce)
    atomic_write(args.out, answer.to_json())
    proofs = decode(answer, (ZkReveal,))
    assert isinstance(proofs, ZkReveal)
    print(f"wrote {args.out} ({len(proofs.items)} proofs and label openings; no trigger image; send it to the "
          f"verifier)")
    write_json_report(args, _report(args.out, event, None, proofs=len(proofs.items)))
    return EXIT_OK


def _report(out: str, event: ChallengeReceived, refused: str | None, *, proofs: int) -> dict[str, Any]:
    """``zkprove --json``: what was proved (or why nothing was), for which challenge."""
    challenge = event.challenge
    return {"type": "wmark/zkprove-report", "version": 1, "answer": str(out),
            "outcome": "refused" if refused is not None else "proved", "verifier": challenge.verifier.fingerprint,
            "model": challenge.model.report_obj(), "vk_digest": challenge.vk_digest.hex(),
            "challenge_digest": event.digest.hex(), "n": challenge.n, "k": challenge.k,
            "items": list(event.indices), "proofs": proofs, "reason": refused}
