"""``wmark-prover``: the owner's side of a verification (docs/design.md section 6)."""

from __future__ import annotations

from collections.abc import Sequence

from wmark.console import Command, run_cli

DESCRIPTION = """\
Answer a verifier's challenge with openings of the sampled trigger items.

  wmark-prover prove --mk mk.wmk --vk vk.json --challenge challenge.json --out reveal.json
  wmark-prover serve --mk mk.wmk --vk vk.json --port 7401     live sessions (wmark-verifier run)
  wmark-prover ledger --mk mk.wmk                             what has been revealed to whom

Every answer goes through the leakage ledger first: nothing is revealed
unrecorded, and no more than --budget of the trigger set is ever revealed.
Exit codes: 0 ok, 1 refused, 2 invalid input or usage.
Run `wmark-prover COMMAND --help` for the options of each command."""


COMMANDS = (
    Command("prove", "wmark.prover.cli.prove", "answer a challenge file"),
    Command("serve", "wmark.prover.cli.serve", "answer live verification sessions over TCP", models=("--model",)),
    Command("ledger", "wmark.prover.cli.ledger", "show what has been revealed to whom"),
    Command("zkprove", "wmark.prover.cli.zkprove", "answer a zero-knowledge challenge with proofs", models=("--model",)),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark-prover", DESCRIPTION, COMMANDS, argv)
