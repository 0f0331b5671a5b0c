"""``wmark``: the owner's toolkit (docs/design.md section 6)."""

from __future__ import annotations

from typing import Sequence

from wmark.console import run_cli
from wmark.watermark.cli import attack, demo, embed, eval, import_model, keygen, log, register, serve_model

DESCRIPTION = """\
Watermark a neural network so you can later prove it is yours.

  wmark keygen --out keys                         sample a trigger set, commit to it, sign the key
  wmark register --vk keys/vk.json --log registry  fix the key's existence in an append-only log
  wmark import-model --weights net.pt --out mine  bring your own trained network (see its --help)
  wmark embed --mk keys/mk.wmk --out marked       train a model that carries the watermark
  wmark eval --model marked --mk keys/mk.wmk      test accuracy and trigger-set accuracy
  wmark serve-model --model marked --port 8080    serve a model over the Open Inference Protocol
  wmark log serve --log registry --port 8470      share a registry over HTTP
  wmark demo                                      the whole story on the bundled digits data

Run `wmark COMMAND --help` for the options of each command."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark", DESCRIPTION, [keygen, register, import_model, embed, eval, attack, serve_model, log, demo], argv)
