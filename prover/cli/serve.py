"""``wmark-prover serve``: answer live verification sessions over TCP (the server is :mod:`wmark.prover.server`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from wmark.cluster import connect
from wmark.console import EXIT_OK, add_circuit_arguments, add_command, add_ray_argument
from wmark.errors import InvalidInput
from wmark.protocol.framing import BLOB_CHUNK_BYTES, MAX_FRAME_BYTES
from wmark.protocol.zk import MAX_LOGROWS, MIN_LOGROWS
from wmark.prover.cli._common import add_prover_arguments, load_prover
from wmark.prover.server import (
    DEFAULT_MAX_SRS_LOGROWS,
    DEFAULT_TIMEOUT,
    DEFAULT_ZK_SESSION_TIMEOUT,
    ZkOptions,
    serve,
)
from wmark.watermark.modelio import model_file_digest

EPILOG = """\
example:
  wmark-prover serve --mk keys/mk.wmk --vk keys/vk.json --port 7401
  wmark-verifier run --connect 127.0.0.1:7401 --vk vk.json --model suspect/ --k 20 --out verdict.json

Per connection: read the verifier's challenge, answer it through the leakage
ledger (exactly as `wmark-prover prove` does), send the reveal or refusal,
read the verifier's signed verdict into the ledger, close. Each message must
arrive within --timeout seconds and fit in --max-frame bytes; a verifier that
breaks the protocol ends only its own session. One line per session goes to
stderr. SIGTERM or Ctrl-C stops the server cleanly (exit 0).

Zero-knowledge challenges (`wmark-verifier run --zk`, keys made with keygen
--zk) are about a model whose weights both sides hold: name your copies with
--model (repeatable; matched by the SHA-256 of their files). The verifier
sends its SRS after the challenge; the proofs (about 20 s and 2 GB each for a
digits zk_cnn) reveal no trigger item, so they cost no leakage budget. A
challenge about a model not given here is refused, with the reason."""


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value
    return parse


def register(subparsers) -> None:
    p = add_command(subparsers, "serve",
                    description="Listen for verifiers (`wmark-verifier run`) and answer each challenge through "
                                "the leakage ledger.", epilog=EPILOG, func=run)
    add_prover_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, required=True, help="TCP port (0: any free port, printed at start)")
    p.add_argument("--max-frame", type=positive(int), default=MAX_FRAME_BYTES, metavar="BYTES",
                   help="largest message accepted or sent")
    p.add_argument("--timeout", type=positive(float), default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="how long each message may take to arrive")
    zk = p.add_argument_group("zero-knowledge challenges (keys made with wmark keygen --zk; pip install '.[zk]')")
    zk.add_argument("--model", action="append", default=[], metavar="DIR",
                    help="a suspect model to prove about (repeatable); the challenge names it by its files' SHA-256")
    zk.add_argument("--max-srs-logrows", type=int, default=DEFAULT_MAX_SRS_LOGROWS, metavar="LOG2",
                    help="refuse a challenge whose SRS is larger than 2^LOG2 rows (it is sent to us, and stored "
                         "while proving)")
    zk.add_argument("--zk-session-timeout", type=positive(float), default=DEFAULT_ZK_SESSION_TIMEOUT,
                    metavar="SECONDS", help="the whole of a zero-knowledge session, proving included (here or on "
                                            "--ray): proofs that would run past it are refused, the verifier "
                                            "told why")
    add_circuit_arguments(zk)
    add_ray_argument(zk, "prove each item as a Ray task")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"port {args.port} is not between 0 and 65535")
    if args.max_frame < BLOB_CHUNK_BYTES:
        raise InvalidInput(f"--max-frame {args.max_frame} is below {BLOB_CHUNK_BYTES}, the size of the frames a "
                           f"zero-knowledge challenge's SRS arrives in")
    if args.max_frame > MAX_FRAME_BYTES:
        raise InvalidInput(f"--max-frame {args.max_frame} exceeds {MAX_FRAME_BYTES}, the largest message any "
                           f"wmark tool reads")
    if not MIN_LOGROWS <= args.max_srs_logrows <= MAX_LOGROWS:
        raise InvalidInput(f"--max-srs-logrows {args.max_srs_logrows} is not between {MIN_LOGROWS} and {MAX_LOGROWS}")
    models = {model_file_digest(path): Path(path) for path in args.model}
    prover = load_prover(args)
    if args.ray is not None:
        # Joined here, before serving: a wrong address is a start-up error, not every session's.
        connect(args.ray)
    asyncio.run(serve(prover, args.host, args.port, max_frame=args.max_frame, timeout=args.timeout,
                      zk=ZkOptions(models, args.max_srs_logrows, args.workdir, args.memory_limit,
                                   args.zk_session_timeout, args.ray)))
    return EXIT_OK
