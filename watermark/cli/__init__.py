"""``wmark``: the owner's toolkit (DESIGN.md section 6)."""

from __future__ import annotations

from typing import Sequence

from protocol.console import run_cli

from . import keygen

DESCRIPTION = """\
Watermark a neural network so you can later prove it is yours.

  wmark keygen --out keys           sample a trigger set, commit to it, sign the verification key
  wmark embed ...                   train or fine-tune a model that carries the watermark
  wmark demo                        the whole story on the bundled digits data, in a few minutes

Run `wmark COMMAND --help` for the options of each command."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark", DESCRIPTION, [keygen], argv)
