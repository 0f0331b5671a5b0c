"""``small_cnn`` on digits proven in pieces through the command line (docs/design.md section 4c).

One proof of the digits default ``small_cnn`` (284k weights) would need
2^20 rows, about 36 GB; cut for ``--memory-limit`` (default 16 GB) its
pieces fit.  This script trains a watermarked and a plain (NO-WM) model on
digits with a ``--zk`` key, prints the cost model, then for each model runs
``wmark-verifier zkchallenge``, ``wmark-prover zkprove`` and ``wmark-verifier
zkcheck`` as the user would, each under ``/usr/bin/time -v`` for its peak
resident memory and wall time (the second model's challenge samples the first's
items, ``--same-items-as``, so both are judged on the same items), and writes the table and
benchmarks/results/zk-small-cnn.json with provenance.  The baseline in the
same run is the cost model's estimate for the model proven whole.

    nice -n 19 python benchmarks/zk_split.py --k 1            # about 100 minutes on two cores
    python benchmarks/zk_split.py --k 1 --overlap             # about an hour: the two models side by side
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks._cli import provenance, write_result
from wmark.files import atomic_write
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.items import TriggerKind
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.session import check_challenge, subset_of
from wmark.watermark import zkcircuit, zksplit
from wmark.watermark.datasets import load_task
from wmark.watermark.embed import default_recipe, embed, start_model
from wmark.watermark.modelio import load_model, save_model
from wmark.watermark.triggers import trigger_set_from_marking_key

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "zk-small-cnn"
SHAPE = (1, 8, 8)
SEED = 0
BIN = Path(sys.executable).parent
STEPS = ("zkchallenge", "zkprove", "zkcheck")


def _timed(argv: list[str], log: Path) -> dict[str, Any]:
    """Run a command under /usr/bin/time -v: its exit code, wall and CPU seconds and peak RSS."""
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    wall = time.monotonic() - started
    log.write_text(done.stdout + done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    # CPU time beside wall time: on a shared machine the wall time also counts other work.
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", done.stderr))
    return {"command": " ".join([Path(argv[0]).name, *argv[1:]]), "rc": done.returncode, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "peak_rss_bytes": int(rss.group(1)) * 1024 if rss else None,
            "stdout": done.stdout.strip().splitlines()[-12:]}


def _world(root: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A --zk key of 100 derived items and small_cnn digits models with and without its triggers."""
    torch.manual_seed(SEED)
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=100, num_classes=10, input_shape=SHAPE,
                          zk=zkcircuit.InputCommitter(TriggerKind.DERIVED, SHAPE))
    save_signing_key(root / "owner.pem", owner)
    save_marking_key(root / "mk.wmk", pair.marking_key, None)
    atomic_write(root / "vk.json", pair.signed_vk.to_json())
    task, recipe = load_task("digits"), default_recipe("digits")
    triggers = trigger_set_from_marking_key(pair.marking_key)
    marked = embed(start_model(task, arch="small_cnn"), task, triggers, recipe, vk_digest=pair.verification_key.digest)
    save_model(root / "marked", marked.model)
    plain = embed(start_model(task, arch="small_cnn"), task, triggers, replace(recipe, triggers_per_batch=0))
    save_model(root / "plain", plain.model)
    return root / "vk.json", root / "mk.wmk", {"marked": root / "marked", "plain": root / "plain"}


def one_piece(model_dir: Path, srs_path: Path, mk_path: Path, piece: int, limit: int, work: Path) -> dict[str, Any]:
    """In this process, what the prover does for one piece of one item: build all
    pieces, set up and prove piece ``piece``; its peak RSS bounds zkprove's, which
    proves the pieces (all of one height) one after another."""
    import resource

    from wmark.protocol.keyfile import load_marking_key
    from wmark.watermark.triggers import item_image

    mk = load_marking_key(mk_path, None)
    assert mk.zk is not None
    model = load_model(model_dir)
    srs = zkcircuit.read_srs(srs_path)
    started = time.monotonic()
    pieces = zksplit.build_pieces(model, work, input_scale=mk.zk.input_scale,
                                  piece_rows=zksplit.piece_rows_for(limit), memory_limit=limit)
    built = time.monotonic()
    circuit, spec = pieces.circuits[piece], pieces.specs[piece]
    assert not spec.inputs, "measure a piece that reads the hidden input"
    with zkcircuit.setup(circuit, srs) as keys:
        set_up = time.monotonic()
        hidden = zkcircuit.hidden_input(item_image(mk.openings[0], mk.kind, mk.input_shape), mk.zk.salts[0])
        _, proof = zkcircuit.prove_input(circuit, keys, srs, [hidden])
        proven = time.monotonic()
        zkcircuit.verify_proof(circuit, keys, srs, [bytes.fromhex(proof["instances"][0][0])], bytes(proof["proof"]))
        verified = time.monotonic()
    return {"scope": f"piece {piece + 1} of {len(pieces.circuits)}, one item, in one process",
            "pieces_rows": [c.num_rows for c in pieces.circuits], "logrows": pieces.logrows,
            "build_s": round(built - started, 1), "setup_s": round(set_up - built, 1),
            "prove_s": round(proven - set_up, 1), "verify_s": round(verified - proven, 2),
            "proof_bytes": len(proof["proof"]),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "estimated_bytes": zkcircuit.memory_for(pieces.logrows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=1, help="items per challenge")
    parser.add_argument("--memory-limit", type=float, default=16.0, metavar="GB")
    parser.add_argument("--models", default="marked,plain", help="which of marked,plain to challenge")
    parser.add_argument("--workdir", metavar="DIR", help="where keys, models and circuits go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overlap", action="store_true",
                        help="after the first model's challenge, run the models' commands side by side (two "
                             "proofs at once need twice the memory; wall times then include the other's work)")
    parser.add_argument("--one-piece", nargs=3, metavar=("MODEL", "SRS", "MK"), type=Path,
                        help="instead: set up and prove the first piece of MODEL's first trigger item in this process")
    args = parser.parse_args(argv)
    info = provenance([SEED], "cpu")
    limit = int(args.memory_limit * 1e9)
    if args.one_piece:
        with tempfile.TemporaryDirectory(prefix="wmark-zk-piece-", dir=args.workdir) as tmp:
            row = one_piece(*args.one_piece, 0, limit, Path(tmp))
        print(json.dumps(row, indent=2))
        write_result(args.out, {"provenance": info, "ezkl": zkcircuit.EZKL_VERSION,
                                "memory_limit_gb": args.memory_limit, "one_piece": row},
                     f"| scope | rows (2^{row['logrows']}) | setup s | prove s | verify s | peak RSS GB | "
                     f"estimate GB |\n|---|---|---|---|---|---|---|\n| {row['scope']} | {row['pieces_rows'][0]:,} | "
                     f"{row['setup_s']} | {row['prove_s']} | {row['verify_s']} | {row['peak_rss_bytes'] / 1e9:.2f} | "
                     f"{row['estimated_bytes'] / 1e9:.2f} |")
        return 0
    with tempfile.TemporaryDirectory(prefix="wmark-zk-split-", dir=args.workdir) as tmp:
        root = Path(tmp)
        vk, mk, models = _world(root)
        # The cost model first: the pieces, and what proving them takes, before anything is proven.
        model = load_model(models["marked"])
        rows = zksplit.piece_rows_for(limit)
        specs = zksplit.plan(model, rows)
        whole = zkcircuit.logrows_for(zkcircuit.estimate_rows(model))
        piece_log = max(zkcircuit.logrows_for(int(rows / zksplit.FILL)), zkcircuit.MIN_LOGROWS)
        estimate = {"whole_logrows_at_least": whole, "whole_memory_bytes": zkcircuit.memory_for(whole),
                    "pieces": len(specs), "piece_rows": rows, "piece_logrows_at_most": piece_log,
                    "piece_memory_bytes": zkcircuit.memory_for(piece_log),
                    "prove_cpu_s_per_item": round(len(specs) * zkcircuit.cpu_seconds_for(piece_log), 1)}
        print(f"cost model: whole, at least 2^{whole} rows, {zkcircuit.memory_for(whole) / 1e9:.1f} GB; cut for "
              f"{args.memory_limit:g} GB: {len(specs)} pieces of at most 2^{piece_log} rows, "
              f"{zkcircuit.memory_for(piece_log) / 1e9:.1f} GB each, about {estimate['prove_cpu_s_per_item']:.0f} "
              f"CPU s of proving per item (and as much again for each side's setups)", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {}
        common = ["--workdir", str(root), "--memory-limit", f"{args.memory_limit:g}"]
        names = args.models.split(",")
        first = root / names[0] / "challenge.json"
        lock = threading.Lock()

        def run_model(name: str, steps_wanted: tuple[str, ...]) -> bool:
            """Run ``steps_wanted`` of one model's three commands; False once one fails."""
            out = root / name
            out.mkdir(exist_ok=True)
            challenge, reveal, verdict = out / "challenge.json", out / "zkreveal.json", out / "verdict.json"
            same = [] if name == names[0] else ["--same-items-as", str(first)]
            steps = {
                "zkchallenge": [str(BIN / "wmark-verifier"), "zkchallenge", "--vk", str(vk), "--model",
                                str(models[name]), "--k", str(args.k), "--out", str(challenge), "--identity",
                                str(root / "verifier.pem"), "--lambda", "3", *same, *common],
                "zkprove": [str(BIN / "wmark-prover"), "zkprove", "--mk", str(mk), "--vk", str(vk), "--owner-key",
                            str(root / "owner.pem"), "--model", str(models[name]), "--challenge", str(challenge),
                            "--out", str(reveal), "--ledger", str(out / "ledger.sqlite"), *common],
                "zkcheck": [str(BIN / "wmark-verifier"), "zkcheck", "--vk", str(vk), "--challenge", str(challenge),
                            "--reveal", str(reveal), "--model", str(models[name]), "--out", str(verdict),
                            "--identity", str(root / "verifier.pem"), "--lambda", "3", *common],
            }
            for step in steps_wanted:
                print(f"{name}: {step} ...", flush=True)
                result = _timed(steps[step], out / f"{step}.log")
                if step == "zkchallenge" and result["rc"] == 0:
                    result["items"] = list(_sampled(challenge))
                with lock:
                    runs.setdefault(name, []).append({"step": step, **result})
                    # Saved after every step: an hour-long run cut off keeps what it finished.
                    _save(args.out, info, args, estimate, runs, complete=False)
                print(f"{name}: {step} rc {result['rc']} in {result['wall_s']} s, peak "
                      f"{(result['peak_rss_bytes'] or 0) / 1e9:.2f} GB", flush=True)
                if result["rc"] != 0 and step != "zkcheck":
                    print("\n".join(result["stdout"]), (out / f"{step}.log").read_text()[-2000:], sep="\n")
                    return False
            return True

        if not args.overlap:
            for name in names:
                run_model(name, STEPS)
        elif run_model(names[0], STEPS[:1]):
            # The other models need only the first's challenge; from there each runs beside the first.
            with ThreadPoolExecutor(len(names)) as pool:
                list(pool.map(run_model, names, [STEPS[1:]] + [STEPS] * (len(names) - 1)))
    print(_save(args.out, info, args, estimate, runs, complete=True))
    return 0


def _sampled(path: Path) -> tuple[int, ...]:
    """The trigger items a challenge file samples, as both sides compute them."""
    challenge, digest = check_challenge(dsse.Envelope.from_json(path.read_bytes(), what=str(path)))
    return subset_of(challenge, digest)


def _save(out: Path, info: dict[str, Any], args: argparse.Namespace, estimate: dict[str, Any],
          runs: dict[str, list[dict[str, Any]]], *, complete: bool) -> str:
    """Write the report and its table so far; ``complete`` once every model's steps ran."""
    report = {"provenance": info, "ezkl": zkcircuit.EZKL_VERSION, "memory_limit_gb": args.memory_limit,
              "k": args.k, "overlap": args.overlap, "complete": complete, "estimate": estimate, "runs": runs}
    lines = ["| model | step | rc | wall s | CPU s | peak RSS GB | items |", "|---|---|---|---|---|---|---|"]
    for name, steps_ in runs.items():
        for r in steps_:
            lines.append(f"| {name} | {r['step']} | {r['rc']} | {r['wall_s']} | {r['cpu_s']} | "
                         f"{(r['peak_rss_bytes'] or 0) / 1e9:.2f} | {' '.join(map(str, r.get('items', ())))} |")
    table = "\n".join(lines)
    write_result(out, report, table)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
