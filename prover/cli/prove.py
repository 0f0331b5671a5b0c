"""``wmark-prover prove``: answer a challenge file (the files transport)."""

from __future__ import annotations

import argparse

from wmark.console import (
    EXIT_OK,
    EXIT_REJECTED,
    add_command,
    add_json_argument,
    add_output,
    untrusted,
    write_json_report,
)
from wmark.files import atomic_write, read_bounded
from wmark.protocol.hazmat import dsse
from wmark.protocol.messages import MAX_MESSAGE_BYTES
from wmark.prover.cli._common import add_prover_arguments, load_prover
from wmark.prover.ledger import NOTHING_SECRET, Outcome
from wmark.prover.owner import describe

EPILOG = """\
example:
  wmark-prover prove --mk keys/mk.wmk --vk keys/vk.json --challenge challenge.json --out reveal.json

Opens exactly the trigger items the challenge samples, after recording them in
the leakage ledger (default: the key's own ledger in ~/.local/share/wmark/ledgers,
found by its vk digest, so a copied or moved mk.wmk keeps one budget). The
same challenge again gets the identical answer. A challenge that would make
more than --budget of the trigger set public is refused: a signed refusal is
written to --out and the exit code is 1. Public verification (k = n) needs
--budget 1. See what has been revealed with `wmark-prover ledger`."""


def register(subparsers) -> None:
    p = add_command(subparsers, "prove",
                    description="Open the trigger items a verifier's challenge samples, within the leakage "
                                "budget, and sign the answer.", epilog=EPILOG, func=run)
    add_prover_arguments(p)
    p.add_argument("--challenge", required=True, metavar="FILE", help="the verifier's challenge.json")
    add_output(p, "--out", required=True, what="reveal", help="where to write the reveal (or refusal)")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    challenge = dsse.Envelope.from_json(read_bounded(args.challenge, max_bytes=MAX_MESSAGE_BYTES,
                                                     what="challenge"), what=args.challenge)
    prover = load_prover(args)
    response = prover.answer(prover.session(), challenge)
    atomic_write(args.out, response.data)
    write_json_report(args, {
        "type": "wmark/prove-report", "version": 1, "answer": str(args.out), "outcome": response.outcome.value,
        "repeated": response.repeated, "verifier": response.verifier, "model": response.model.report_obj(),
        "k": response.k, "n": response.n, "new_indices": list(response.new_indices), "revealed": response.revealed,
        "budget": f"{prover.budget.numerator}/{prover.budget.denominator}", "reason": response.reason})
    print(f"challenge from verifier {response.verifier} on {untrusted(response.model.describe())}")
    print(describe(response, prover.budget))
    if response.outcome is Outcome.REFUSED:
        print(f"REFUSED: {untrusted(response.reason)}")
        print(f"wrote {args.out} (a signed refusal)")
        return EXIT_REJECTED
    if response.new_indices:
        print(f"newly public: items {', '.join(map(str, response.new_indices))}")
    if response.revealed == response.n:
        print(NOTHING_SECRET)
    print(f"wrote {args.out} (the signed reveal; send it to the verifier)")
    return EXIT_OK
