"""``wmark-verifier``: the sceptical party's tool (DESIGN.md section 6)."""

from __future__ import annotations

from typing import Sequence

from protocol.console import run_cli

from . import audit

DESCRIPTION = """\
Check a claim that a suspect model carries someone's watermark.

  wmark-verifier audit vk.json      check a verification key (or a verdict / transcript)

Exit codes: 0 accepted / valid, 1 rejected, 2 invalid input or usage.
Run `wmark-verifier COMMAND --help` for the options of each command."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark-verifier", DESCRIPTION, [audit], argv)
