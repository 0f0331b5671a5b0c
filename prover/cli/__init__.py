"""``wmark-prover``: the owner's side of a verification (DESIGN.md section 6)."""

from __future__ import annotations

from typing import Sequence

from protocol.console import run_cli

DESCRIPTION = """\
Answer a verifier's challenge with openings of the sampled trigger items.

Run `wmark-prover COMMAND --help` for the options of each command."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark-prover", DESCRIPTION, [], argv)
