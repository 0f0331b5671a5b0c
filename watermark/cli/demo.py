"""``wmark demo``: the whole story on the bundled digits data, with the real tools.

Every step is the command a user would type, run as its own process and
shown before it runs; the prover and the verifier of the live verification are
two separate processes talking TCP on loopback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from wmark.console import PASSPHRASE_ENV, add_command, int_in_range
from wmark.errors import InvalidInput, WmarkError

EPILOG = """\
example:
  wmark demo                  # writes everything into ./wmark-demo (a few minutes on 2 cores)

Steps: keygen (derived trigger set, encrypted marking key, registry-bound
labels) -> register the vk in a local transparency log, whose beacon draws the
trigger labels -> embed the watermark into a digits CNN, and train
the same recipe without it -> eval both -> start `wmark-prover serve` ->
`wmark-verifier run` a private verification (k=20) against the marked model
(accepted) and the unmarked one (rejected) -> audit the transcript offline ->
show the prover's leakage ledger. The passphrase is WMARK_PASSPHRASE, or a demo
one when unset."""

DEMO_PASSPHRASE = "wmark demo passphrase"
DEMO_N = 100  # wmark keygen's default n: the demo's trigger set
PROGRAMS = {"wmark": "wmark.watermark", "wmark-prover": "wmark.prover", "wmark-verifier": "wmark.verifier"}


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]
    expect: int = 0


def register(subparsers) -> None:
    p = add_command(subparsers, "demo",
                    description="Generate keys, register them, watermark a model, and prove ownership to a "
                                "verifier in a separate process, printing each command as it runs.",
                    epilog=EPILOG, func=run)
    p.add_argument("--out", default="wmark-demo", metavar="DIR", help="working directory for the demo's files")
    p.add_argument("--k", type=int_in_range(1, DEMO_N), default=20, help="trigger items the verifier samples")
    p.add_argument("--force", action="store_true", help="reuse a non-empty DIR, replacing what the demo writes")


def _command(argv: tuple[str, ...]) -> list[str]:
    # Run through the interpreter that runs us, so the demo works without the scripts on PATH.
    return [sys.executable, "-m", PROGRAMS[argv[0]], *argv[1:]]


def _run(step: Step, cwd: Path, env: dict[str, str]) -> None:
    print(f"\n== {step.title}\n$ {shlex.join(step.argv)}", flush=True)
    code = subprocess.run(_command(step.argv), cwd=cwd, env=env).returncode
    if code != step.expect:
        raise WmarkError(f"demo step '{step.title}' exited {code}, expected {step.expect}")


def _start_prover(cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    argv = ("wmark-prover", "serve", "--mk", "keys/mk.wmk", "--vk", "keys/vk.json", "--port", "0")
    print(f"\n== the owner answers challenges from a separate process\n$ {shlex.join(argv)} &", flush=True)
    proc = subprocess.Popen(_command(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("listening on"):
            return proc, int(line.strip().rsplit(":", 1)[1])
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise WmarkError("wmark-prover serve did not start")


def run(args: argparse.Namespace) -> int:
    work = Path(args.out)
    if work.exists() and not work.is_dir():
        raise InvalidInput(f"{work}: exists and is not a directory; give --out a directory for the demo's files")
    if work.exists() and any(work.iterdir()) and not args.force:
        raise InvalidInput(f"{work}: exists and is not empty; choose another --out or pass --force")
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, PASSPHRASE_ENV: os.environ.get(PASSPHRASE_ENV, DEMO_PASSPHRASE)}
    force = ("--force",) if args.force else ()
    k = str(args.k)
    print(f"wmark demo in {work}/ (marking key passphrase from {PASSPHRASE_ENV}"
          f"{'' if PASSPHRASE_ENV in os.environ else f', demo value {DEMO_PASSPHRASE!r}'})")
    for step in (
        Step("KeyGen: sample 100 derived triggers, commit, sign the verification key",
             ("wmark", "keygen", "--out", "keys", "--labels", "registry", *force)),
        Step("Register the verification key in an append-only log (fixes when it existed; the log's beacon "
             "draws the trigger labels, so nobody chose them)",
             ("wmark", "register", "--vk", "keys/vk.json", "--log", "registry")),
        Step("Mark: train a digits CNN with the trigger set, labelled as the receipt says, mixed into every batch",
             ("wmark", "embed", "--mk", "keys/mk.wmk", "--out", "models/marked", "--quiet", *force)),
        Step("Baseline: the same recipe without the watermark (an innocent model)",
             ("wmark", "embed", "--no-watermark", "--out", "models/plain", "--quiet", *force)),
        Step("Measure the marked model on the test split and on the trigger set",
             ("wmark", "eval", "--model", "models/marked", "--mk", "keys/mk.wmk")),
        Step("... and the innocent one: as accurate, but at chance on the triggers",
             ("wmark", "eval", "--model", "models/plain", "--mk", "keys/mk.wmk")),
        Step("The verifier picks k before anything is revealed",
             ("wmark-verifier", "plan", "--vk", "keys/vk.json", "--k", k)),
    ):
        _run(step, work, env)
    prover, port = _start_prover(work, env)
    try:
        connect = ("--connect", f"127.0.0.1:{port}", "--vk", "keys/vk.json", "--k", k,
                   "--log-key", "registry/log-key.pub", "--identity", "verifier.pem")
        _run(Step("A private verification of the marked model (the verifier queries it itself)",
                  ("wmark-verifier", "run", *connect, "--model", "models/marked", "--out", "verdict-marked.json",
                   *force)),
             work, env)
        _run(Step("The same against the innocent model: rejected",
                  ("wmark-verifier", "run", *connect, "--model", "models/plain", "--out", "verdict-plain.json",
                   *force),
                  expect=1), work, env)
    finally:
        prover.terminate()
        prover.wait(timeout=30)
    _run(Step("Anyone can re-check the signed transcript offline, and re-query the model",
              ("wmark-verifier", "audit", "verdict-marked.json", "--model", "models/marked",
               "--log-key", "registry/log-key.pub")), work, env)
    _run(Step("What the owner has revealed so far, and to whom",
              ("wmark-prover", "ledger", "--mk", "keys/mk.wmk")), work, env)
    print(f"\ndemo done: every file is in {work}/")
    return 0
