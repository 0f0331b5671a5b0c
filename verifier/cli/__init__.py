"""``wmark-verifier``: the sceptical party's tool (docs/design.md section 6)."""

from __future__ import annotations

from collections.abc import Sequence

from wmark.console import Command, run_cli

DESCRIPTION = """\
Check a claim that a suspect model carries someone's watermark.

  wmark-verifier plan --vk vk.json                 choose k: threshold and accuracy needed
  wmark-verifier challenge --vk vk.json --model M --k 20 --out challenge.json
  wmark-verifier check --vk vk.json --challenge challenge.json --reveal reveal.json --model M --out verdict.json
  wmark-verifier audit verdict.json                re-check a transcript (or a vk.json) offline
  wmark-verifier report verdict.json --out report.html   the same, as a page a judge can read

Exit codes: 0 accepted / valid, 1 rejected, 2 invalid input or usage.
Run `wmark-verifier COMMAND --help` for the options of each command."""


COMMANDS = (
    Command("plan", "wmark.verifier.cli.plan", "show the threshold and the accuracy needed for a sample size k"),
    Command("challenge", "wmark.verifier.cli.challenge", "write a signed challenge for the owner", models=("--model",)),
    Command("check", "wmark.verifier.cli.check", "check a reveal, query the model, sign the verdict", models=("--model",)),
    Command("run", "wmark.verifier.cli.run", "verify live against `wmark-prover serve`", models=("--model",)),
    Command("audit", "wmark.verifier.cli.audit", "re-check a verification key or a transcript offline", models=("--model",)),
    Command("report", "wmark.verifier.cli.report", "write an audited transcript as a self-contained HTML page", models=("--model",)),
    Command("registration", "wmark.verifier.cli.registration", "check a vk's registration receipt offline"),
    Command("dispute", "wmark.verifier.cli.dispute", "name which of two accepted claims was registered first"),
    Command("zkchallenge", "wmark.verifier.cli.zkchallenge", "write a zero-knowledge challenge (white-box model)", models=("--model",)),
    Command("zkcheck", "wmark.verifier.cli.zkcheck", "check zero-knowledge proofs, sign the verdict", models=("--model",)),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark-verifier", DESCRIPTION, COMMANDS, argv)
