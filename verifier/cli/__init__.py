"""``wmark-verifier``: the sceptical party's tool (docs/design.md section 6)."""

from __future__ import annotations

from typing import Sequence

from wmark.console import run_cli
from wmark.verifier.cli import (
    audit,
    challenge,
    check,
    dispute,
    plan,
    registration,
    report,
    run,
    zkchallenge,
    zkcheck,
)

DESCRIPTION = """\
Check a claim that a suspect model carries someone's watermark.

  wmark-verifier plan --vk vk.json                 choose k: threshold and accuracy needed
  wmark-verifier challenge --vk vk.json --model M --k 20 --out challenge.json
  wmark-verifier check --vk vk.json --challenge challenge.json --reveal reveal.json --model M --out verdict.json
  wmark-verifier audit verdict.json                re-check a transcript (or a vk.json) offline
  wmark-verifier report verdict.json --out report.html   the same, as a page a judge can read

Exit codes: 0 accepted / valid, 1 rejected, 2 invalid input or usage.
Run `wmark-verifier COMMAND --help` for the options of each command."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark-verifier", DESCRIPTION, [plan, challenge, check, run, audit, report, registration,
                                                    dispute, zkchallenge, zkcheck], argv)
