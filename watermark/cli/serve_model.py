"""``wmark serve-model``: a model directory as an Open Inference Protocol endpoint (KServe)."""

from __future__ import annotations

import argparse
import sys

from wmark.console import add_command, checked_model
from wmark.errors import InvalidInput
from wmark.watermark.device import add_device_argument, pick_device
from wmark.watermark.modelio import load_model

EPILOG = """\
examples:
  wmark serve-model --model models/marked --port 8080
  wmark-verifier run --connect owner:7401 --vk vk.json --endpoint http://127.0.0.1:8080 \\
      --model-name model --k 20 --out verdict.json

Serves POST /v2/models/NAME/infer (KServe v2 / Open Inference Protocol REST,
with KServe's ModelServer; pip install 'wmark[serve]'). The contract, which
wmark-verifier --endpoint follows: one FP32 input [N, C, H, W] with pixels
scaled to [0, 1] (a uint8 pixel p sent as p / 255); the server applies the
model's own normalisation and answers FP32 logits [N, L] (--answer classes:
INT64 class indices [N]). Values outside [0, 1], another shape, more than
1024 images or a body over 256 MiB are refused with HTTP 400 or 413.
Listens on --host only (default loopback); put TLS and access control in
front of it before exposing it. Stop it with Ctrl-C."""


def register(subparsers) -> None:
    p = add_command(subparsers, "serve-model", 
                    description="Serve a model directory as a KServe v2 / Open Inference Protocol REST "
                                "endpoint, the kind wmark-verifier --endpoint queries.", epilog=EPILOG, func=run)
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="the model directory to serve")
    p.add_argument("--port", required=True, type=int, help="TCP port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--name", default="model", help="the model's name in the URL: /v2/models/NAME/infer")
    p.add_argument("--answer", choices=("logits", "classes"), default="logits",
                   help="answer FP32 logits [N, L] or INT64 class indices [N]")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise InvalidInput(f"--port {args.port} outside 1..65535")
    if not args.name or "/" in args.name:
        raise InvalidInput(f"--name {args.name!r} must be non-empty and without '/'")
    from wmark.watermark.serving import serve

    device = pick_device(args.device)
    model = checked_model(args, args.model)
    config = load_model(model).config  # a bad directory is refused before the server starts
    print(f"serving   {args.model} ({config.describe()}) on {device} as "
          f"http://{args.host}:{args.port}/v2/models/{args.name}/infer", flush=True)
    serve(model, args.name, host=args.host, port=args.port, device=device, answer=args.answer)
    print("stopped", file=sys.stderr)
    return 0
