"""What a private verification costs, against the bare model inference it wraps.

For n = 100 derived trigger items and k in {10, 20, 50, 100}, in one run:

* ``inference``: the model's forward pass on the k trigger images (the floor:
  no verification can query the model for less);
* ``protocol``: all in-process protocol work except forward passes: the signed
  challenge, the prover's check of it and its signed reveal, the verifier's
  check of every opening (VRF proof, commitments), rendering the k images,
  the decision and the signed verdict, split into phases; and, apart, an
  offline ``audit`` of the resulting transcript;
* ``files``: the command-line round trip `wmark-verifier challenge` ->
  `wmark-prover prove` -> `wmark-verifier check` (three processes);
* ``tcp``: `wmark-verifier run` against a running `wmark-prover serve`;
* the transcript's size.

Times are medians over --repeat runs (the in-process ones) or single runs (the
processes, which are dominated by interpreter and torch start-up, measured
separately as ``python -c 'import torch'``).

    python benchmarks/protocol.py            # about 3 minutes on 2 cores
    python benchmarks/protocol.py --ks 20 --repeat 5

Prints a table and writes JSON to --out (default benchmarks/results/protocol.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from _cli import provenance  # a sibling module: scripts run with this folder on sys.path

from wmark.files import atomic_write
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.keys import verify_vk_envelope
from wmark.protocol.messages import ModelRef
from wmark.protocol.patterns import item_images
from wmark.protocol.session import ProverSession, VerifierSession
from wmark.protocol.transcript import Transcript, audit
from wmark.watermark.datasets import load_task
from wmark.watermark.embed import default_recipe, embed, start_model
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import load_model, model_file_digest, save_model
from wmark.watermark.triggers import trigger_set_from_marking_key

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "protocol.json"
BIN = Path(sys.executable).parent
PHASES = ("challenge", "prover", "check_reveal", "render", "decide")


@dataclass(frozen=True)
class Row:
    k: int
    inference_ms: float
    protocol_ms: float
    phases_ms: dict[str, float]
    audit_ms: float
    files_s: float
    tcp_s: float
    transcript_bytes: int


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def in_process(vk, vk_env, pair, owner, verifier, model, model_ref, k):
    """One verification in-process, with the forward pass timed apart."""
    phases = {}
    session = VerifierSession(vk, verifier, model_ref, k)
    challenge, phases["challenge"] = timed(session.challenge)
    prover = ProverSession(pair.marking_key, vk, owner)

    def prove():
        prover.receive(challenge)
        return prover.reveal()
    reveal, phases["prover"] = timed(prove)
    event, phases["check_reveal"] = timed(lambda: session.receive(reveal))
    images, phases["render"] = timed(lambda: item_images(event.items, vk.input_shape))
    classes, inference = timed(lambda: predict(model, images).argmax(axis=1))
    verdict, phases["decide"] = timed(lambda: session.decide({i.index: int(c) for i, c in zip(event.items, classes)}))
    transcript = Transcript(vk_env, challenge, reveal, verdict)
    _, audit_ms = timed(lambda: audit(transcript))
    return phases, inference, audit_ms, len(transcript.to_json())


def cli(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed: {result.stderr}")
    return time.perf_counter() - start


def files_round_trip(work: Path, k: int) -> float:
    common = ["--vk", "keys/vk.json"]
    return (cli("wmark-verifier", "challenge", *common, "--model", "marked", "--k", str(k), "--out", f"c{k}.json",
                cwd=work)
            + cli("wmark-prover", "prove", "--mk", "keys/mk.wmk", *common, "--challenge", f"c{k}.json", "--out",
                  f"r{k}.json", "--budget", "1", "--ledger", f"files{k}.sqlite", cwd=work)
            + cli("wmark-verifier", "check", *common, "--challenge", f"c{k}.json", "--reveal", f"r{k}.json",
                  "--model", "marked", "--out", f"v{k}.json", cwd=work))


def tcp_round_trip(work: Path, port: int, k: int) -> float:
    return cli("wmark-verifier", "run", "--connect", f"127.0.0.1:{port}", "--vk", "keys/vk.json", "--model", "marked",
               "--k", str(k), "--out", f"t{k}.json", cwd=work)


def start_server(work: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([str(BIN / "wmark-prover"), "serve", "--mk", "keys/mk.wmk", "--vk", "keys/vk.json",
                             "--port", "0", "--budget", "1", "--ledger", "serve.sqlite"], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = ""
    while line and "listening on" not in line or not line:
        line = proc.stdout.readline()
        if not line:
            break
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"wmark-prover serve did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[20, 50, 100])  # k = 10 cannot reach lambda 40 at p0 = 1/10
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        owner, verifier = SigningKey.generate(), SigningKey.generate()
        save_signing_key(work / "keys" / "owner.pem", owner)
        pair = keygen_derived(owner=owner, n=100, num_classes=10, input_shape=(1, 8, 8))
        save_marking_key(work / "keys" / "mk.wmk", pair.marking_key, None)
        atomic_write(work / "keys" / "vk.json", pair.signed_vk.to_json())
        vk = verify_vk_envelope(pair.signed_vk, what="vk")
        print("training the marked digits model ...", file=sys.stderr)
        task = load_task("digits")
        marked = embed(start_model(task), task, trigger_set_from_marking_key(pair.marking_key),
                       default_recipe("digits"), vk_digest=vk.digest)
        save_model(work / "marked", marked.model)
        model = load_model(work / "marked")
        model_ref = ModelRef(sha256=model_file_digest(work / "marked"))
        startup = statistics.median(cli("python", "-c", "import torch, wmark.watermark.modelio", cwd=work)
                                    for _ in range(3))
        server, port = start_server(work)
        rows = []
        try:
            for k in args.ks:
                runs = [in_process(vk, pair.signed_vk, pair, owner, verifier, model, model_ref, k)
                        for _ in range(args.repeat)]
                phases = {p: statistics.median(r[0][p] for r in runs) for p in PHASES}
                rows.append(Row(k=k, inference_ms=statistics.median(r[1] for r in runs),
                                protocol_ms=sum(phases.values()), phases_ms=phases,
                                audit_ms=statistics.median(r[2] for r in runs),
                                files_s=files_round_trip(work, k), tcp_s=tcp_round_trip(work, port, k),
                                transcript_bytes=runs[0][3]))
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"private verification, n=100 derived items, digits small CNN, CPU ({torch.get_num_threads()} thread); "
          f"in-process medians of {args.repeat}")
    print(f"{'k':>4} {'inference':>10} {'protocol':>9} {'ratio':>7} | " + " ".join(f"{p:>12}" for p in PHASES)
          + f" | {'audit':>8} | {'files CLI':>9} {'TCP CLI':>8} {'transcript':>10}")
    for r in rows:
        print(f"{r.k:>4} {r.inference_ms:>8.2f}ms {r.protocol_ms:>7.1f}ms {r.protocol_ms / r.inference_ms:>6.0f}x | "
              + " ".join(f"{r.phases_ms[p]:>10.1f}ms" for p in PHASES)
              + f" | {r.audit_ms:>6.1f}ms | {r.files_s:>8.2f}s {r.tcp_s:>7.2f}s {r.transcript_bytes / 1024:>8.1f}KiB")
    print(f"process start-up (python -c 'import torch, wmark.watermark.modelio'): {startup:.2f} s each; "
          f"the files round trip starts 3 processes, the TCP one 1 (plus the server, started once)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Seed 0: the model's initialisation and the recipe's default; the keys come from the OS CSPRNG.
    atomic_write(args.out, json.dumps({"provenance": provenance([0], "cpu"),
                                       "rows": [asdict(r) for r in rows], "startup_s": startup,
                                       "repeat": args.repeat, "numpy": np.__version__,
                                       "torch": torch.__version__}, indent=2).encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
