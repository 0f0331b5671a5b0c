"""Zero-knowledge ownership of a Fashion-MNIST model, end to end through the
commands (docs/design.md section 4c): ``fashion_zk`` marked with a ``--zk`` key
and its NO-WM twin, each challenged for ``k`` items, proven and checked.

Steps, each the installed command in its own process, timed (wall, CPU) with
that process's peak RSS (``wait4``'s ``ru_maxrss``):

1. ``wmark keygen --zk --labels committed --input-shape 1x28x28`` (100 derived items);
2. ``wmark embed --dataset fashion-mnist --arch fashion_zk`` with the key's
   triggers (WM) and ``--no-watermark`` (NO-WM), the data set's default recipe;
3. per model: ``wmark-verifier zkchallenge --k K --lambda L``, ``wmark-prover
   zkprove`` and ``wmark-verifier zkcheck``, whose verdict (``--json``) is kept.

    python benchmarks/zk_fashion.py                 # k = 20: about an hour on 2 shared cores
    python benchmarks/zk_fashion.py --k 2 --models WM --out /tmp/zk-fashion.json

Writes JSON (default benchmarks/results/zk-fashion.json): provenance, each
step's command and cost, and each verdict.  Wall times on a shared machine
stretch with its load (recorded per step); CPU times do not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import provenance

from wmark.files import atomic_write

MODELS = ("WM", "NO-WM")
BIN = Path(sys.executable).parent
ACCURACY = re.compile(r"test accuracy ([0-9.]+)(?:, trigger accuracy ([0-9.]+))?")


def run_step(name: str, argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> dict:
    """Run one command to completion; its wall and CPU time and peak RSS, or exit with its output
    unless its exit status is one of ``ok``."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    wall = time.perf_counter() - start
    if child.returncode not in ok:
        raise SystemExit(f"{name} failed (exit {child.returncode}): {' '.join(argv)}\n{output[-3000:]}")
    step = {"step": name, "command": " ".join(argv), "wall_s": round(wall, 1),
            "exit": child.returncode, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_bytes": usage.ru_maxrss * 1024,
            "load": round(os.getloadavg()[0], 2), "output_tail": output[-600:]}
    print(f"{name:<22}{wall:>8.1f} s wall {step['cpu_s']:>8.1f} s CPU {step['peak_bytes'] / 1e9:>6.2f} GB peak",
          flush=True)
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=20, help="items challenged per model")
    parser.add_argument("--lambda", dest="lam", type=int, default=40, help="the verifier's security level, bits")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--memory-limit", type=float, default=8.0, metavar="GB",
                        help="passed to the zk commands: refuse a circuit needing more (default 8)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "zk-fashion.json")
    parser.add_argument("--label", metavar="TEXT", help="what the run is, written into its results")
    parser.add_argument("--workdir", type=Path,
                        help="keep keys, models, challenges, proofs and verdicts here (default: a temporary folder)")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    if not set(names) <= set(MODELS) or not 1 <= args.k <= 100:
        parser.error(f"--models takes names from {', '.join(MODELS)}; --k is 1..100")
    report: dict = {"provenance": provenance([0], "cpu", args.label), "k": args.k, "lambda": args.lam,
                    "arch": "fashion_zk", "dataset": "fashion-mnist", "memory_limit_gb": args.memory_limit}
    started = time.perf_counter()
    limit = ["--memory-limit", str(args.memory_limit)]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step: a long run that dies keeps what it measured
        report["seconds"] = round(time.perf_counter() - started, 1)
        atomic_write(args.out, (json.dumps(report, indent=2) + "\n").encode())

    with tempfile.TemporaryDirectory(prefix="wmark-bench-zk-fashion-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # A benchmark's throwaway key: stored unencrypted, so no passphrase is asked for.
        env = {**os.environ, "WMARK_PASSPHRASE": ""}
        keys = work / "keys"
        steps = [run_step("keygen", ["wmark", "keygen", "--out", str(keys), "--zk", "--labels", "committed",
                                     "--input-shape", "1x28x28", "--insecure-plaintext"], env)]
        runs: list[dict] = []
        report["steps"], report["runs"] = steps, runs
        save()
        for name in names:
            model = work / name
            extra = ["--no-watermark"] if name == "NO-WM" else []
            embed = run_step(f"embed {name}", ["wmark", "embed", "--mk", str(keys / "mk.wmk"), "--dataset",
                                               "fashion-mnist", "--arch", "fashion_zk", "--out", str(model),
                                               "--quiet", *extra], env)
            accuracy = ACCURACY.search(embed["output_tail"])
            challenge, reveal = work / f"{name}.challenge.json", work / f"{name}.zkreveal.json"
            verdict, verdict_json = work / f"{name}.verdict.json", work / f"{name}.verdict.result.json"
            common = ["--vk", str(keys / "vk.json"), "--model", str(model)]
            run: dict = {"model": name, "steps": [embed],
                         "test_accuracy": float(accuracy.group(1)) if accuracy else None,
                         "trigger_accuracy": float(accuracy.group(2)) if accuracy and accuracy.group(2) else None}
            runs.append(run)
            save()
            run["steps"].append(run_step(f"zkchallenge {name}", [
                "wmark-verifier", "zkchallenge", *common, "--k", str(args.k), "--lambda", str(args.lam),
                "--out", str(challenge), "--identity", str(work / "verifier.pem"), "--workdir", str(work), *limit],
                env))
            save()
            run["steps"].append(run_step(f"zkprove {name}", [
                "wmark-prover", "zkprove", "--mk", str(keys / "mk.wmk"), *common, "--challenge", str(challenge),
                "--out", str(reveal), "--workdir", str(work), *limit], env))
            save()
            run["steps"].append(run_step(f"zkcheck {name}", [
                "wmark-verifier", "zkcheck", *common, "--challenge", str(challenge), "--reveal", str(reveal),
                "--out", str(verdict), "--json", str(verdict_json), "--identity", str(work / "verifier.pem"),
                "--lambda", str(args.lam), "--workdir", str(work), *limit], env, ok=(0, 1)))  # 1: rejected
            run["verdict"] = json.loads(verdict_json.read_text())
            run["proof_s_per_item"] = round(run["steps"][2]["wall_s"] / args.k, 1)
            run["proof_cpu_s_per_item"] = round(run["steps"][2]["cpu_s"] / args.k, 1)
            run["accepted"] = run["verdict"]["verdict"]["accepted"]
            print(f"{name}: accepted {run['accepted']}", flush=True)
            save()
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
