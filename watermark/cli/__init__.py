"""``wmark``: the owner's toolkit (docs/design.md section 6)."""

from __future__ import annotations

from collections.abc import Sequence

from wmark.console import Command, run_cli

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


COMMANDS = (
    Command("keygen", "wmark.watermark.cli.keygen", "sample a trigger set and create the key pair"),
    Command("register", "wmark.watermark.cli.register", "register a verification key in a transparency log"),
    Command("import-model", "wmark.watermark.cli.import_model", "turn a trained network's weights into a model directory"),
    Command("embed", "wmark.watermark.cli.embed", "train or fine-tune a model that carries the watermark", models=("--pretrained",)),
    Command("eval", "wmark.watermark.cli.eval", "measure test accuracy and trigger-set accuracy", models=("--model",)),
    Command("attack", "wmark.watermark.cli.attack", "try to remove a watermark, as an adversary would", models=("--model",)),
    Command("serve-model", "wmark.watermark.cli.serve_model", "serve a model over the Open Inference Protocol (KServe)", models=("--model",)),
    Command("log", "wmark.watermark.cli.log", "serve, witness, export or check a transparency log"),
    Command("demo", "wmark.watermark.cli.demo", "run the whole story on the bundled digits data"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("wmark", DESCRIPTION, COMMANDS, argv)
