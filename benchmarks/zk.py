"""What zero-knowledge verification costs (docs/design.md section 4c), per proof,
against plain inference and the sampled-subset protocol, in one run.

Models:

* ``digits``: ``zk_cnn`` (3.7k weights) trained on digits with a ``--zk`` key
  of 100 derived triggers: the model the targets are about;
* ``digits-wide``: the same layers twice as wide (9.3k weights), random;
* ``rgb16``: ``zk_cnn`` on 3x16x16 images (8.2k weights; 9x the hidden
  input), random;
* ``tiny``: two dense layers on 1x2x2 images (122 weights): the smallest
  circuit (2^11 rows), the one the default test run proves;
* ``zk4``: ``zk_cnn`` on 1x4x4 images (2.1k weights, 2^13 rows), random;
* ``fashion``: ``fashion_zk`` (51k weights, 1x28x28) trained on
  Fashion-MNIST by the data set's default recipe with a ``--zk`` key of 100
  derived triggers: the Fashion-MNIST model made to be proven (2^17 rows);
* ``small_cnn``: the repo's default digits network (283k weights): its
  circuit is estimated and, on a machine without ~40 GB, refused.

For each: building the circuit (ONNX export, ezkl settings, calibration,
compilation), the one-time SRS generation and setup, then per trigger image
the proof and its verification, with wall time, CPU time and the peak memory
of the process doing it (each in a fresh child process, peak reset before
each phase), the proof's size, and whether the circuit's class agrees with
the model's on all 100 triggers.  Beside them: the model's plain inference on
one image, and the sampled-subset protocol (openings checked, model queried)
per item, for the digits model.  Every model here is proven whole (one
piece); the ratio is one proof's wall time over one plain inference's.

    python benchmarks/zk.py                       # about 10 minutes on 2 cores
    python benchmarks/zk.py --models digits --proofs 5
    python benchmarks/zk.py --models fashion --proofs 2 --out benchmarks/results/zk-fashion-cost.json

Prints a table and writes JSON to --out (default benchmarks/results/zk.json),
and beside it a PNG (same name) of each model's prove time and peak memory
against its number of weights.
Wall times on a shared machine stretch with its load, recorded with each
model; CPU times do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _cli import provenance
from torch import nn

from wmark.files import atomic_write
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.items import TriggerKind
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.messages import ModelRef
from wmark.protocol.patterns import item_images, render
from wmark.protocol.session import ProverSession, VerifierSession
from wmark.watermark import zkcircuit
from wmark.watermark.datasets import load_task
from wmark.watermark.device import torch_threads
from wmark.watermark.embed import default_recipe, embed, start_model
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import Classifier, ModelConfig, Preprocessing, new_model
from wmark.watermark.triggers import trigger_set_from_marking_key

# Per trained model: wall time and peak memory of one proof, wall time of one verification.
TARGETS = {"digits": {"prove_s": 20.0, "prove_gb": 2.0, "verify_s": 0.2},
           "fashion": {"prove_s": 120.0, "prove_gb": 8.0, "verify_s": 2.0}}
MODELS = ("tiny", "zk4", "digits", "digits-wide", "rgb16", "fashion", "small_cnn")
SUBSET_K = 10


def _peak_rss() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(fn):
    _reset_peak()
    wall, cpu = time.perf_counter(), _cpu()
    result = fn()
    return result, {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(_cpu() - cpu, 3),
                    "peak_bytes": _peak_rss(), "load": round(os.getloadavg()[0], 2)}


def worker(task: dict) -> dict:
    """In a fresh process: SRS, setup, then each proof and its verification."""
    circuit = zkcircuit.Circuit(Path(task["circuit"]), tuple(task["shape"]), task["scale"], task["rows"],
                                task["logrows"])
    baseline = _peak_rss()
    srs, srs_stats = _measure(lambda: zkcircuit.generate_srs(Path(task["work"]) / "bench.srs", circuit.logrows))
    out: dict = {"baseline_bytes": baseline, "srs": srs_stats, "proofs": [], "verifies": []}
    with ExitStack() as stack:
        keys, out["setup"] = _measure(lambda: stack.enter_context(zkcircuit.setup(circuit, srs)))
        out["proving_key_bytes"] = keys.proving_key.stat().st_size
        out["verification_key_bytes"] = keys.verification_key.stat().st_size
        statements = []
        for pixels in task["images"]:
            image = np.array(pixels, dtype=np.uint8).reshape(circuit.input_shape)
            statement, stats = _measure(lambda image=image: zkcircuit.prove(circuit, keys, srs, image, bytes(32)))
            statements.append(statement)
            out["proofs"].append({**stats, "proof_bytes": len(statement.proof), "class": statement.predicted})
        for statement in statements:
            _, stats = _measure(lambda statement=statement: zkcircuit.verify(circuit, keys, srs, statement))
            out["verifies"].append(stats)
    return out


def wide_net(num_classes: int, shape: tuple[int, int, int]) -> nn.Module:
    return nn.Sequential(nn.Conv2d(shape[0], 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * -(-shape[1] // 4) * -(-shape[2] // 4), 32), nn.ReLU(),
                         nn.Linear(32, num_classes))


def random_model(arch: str, shape: tuple[int, int, int], net: nn.Module | None = None) -> Classifier:
    torch.manual_seed(0)
    config = ModelConfig(arch, 10, shape, Preprocessing((0.3,) * shape[0], (0.3,) * shape[0]))
    return (Classifier(config, net) if net is not None else new_model(config)).eval()


def trained(dataset: str, arch: str, recipe):
    """``arch`` marked on ``dataset`` with a --zk key; its test accuracy, and what the subset protocol needs."""
    owner = SigningKey.generate()
    task = load_task(dataset)
    shape = task.input_shape
    pair = keygen_derived(owner=owner, n=100, num_classes=task.num_classes, input_shape=shape,
                          zk=zkcircuit.InputCommitter(TriggerKind.DERIVED, shape))
    triggers = trigger_set_from_marking_key(pair.marking_key)
    result = embed(start_model(task, arch=arch), task, triggers, recipe, vk_digest=pair.verification_key.digest)
    return result.model.eval(), pair, owner, triggers.images, result.evaluation


def trained_digits():
    return trained("digits", "zk_cnn", replace(default_recipe("digits"), epochs=40, lr_step=30, triggers_per_batch=16))


def trained_fashion():
    return trained("fashion-mnist", "fashion_zk", default_recipe("fashion-mnist"))


def subset_protocol_per_item(model: Classifier, pair, owner, repeat: int = 5) -> float:
    """The sampled-subset protocol in process: challenge, reveal, openings, queries, verdict."""
    vk = pair.verification_key
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        verifier = VerifierSession(vk, SigningKey.generate(), ModelRef(sha256=bytes(32)), SUBSET_K, lam=8)
        prover = ProverSession(pair.marking_key, vk, owner)
        prover.receive(verifier.challenge())
        event = verifier.receive(prover.reveal())
        classes = predict(model, item_images(event.items, vk.input_shape)).argmax(axis=1)
        verifier.decide({item.index: int(c) for item, c in zip(event.items, classes)})
        times.append(time.perf_counter() - start)
    return statistics.median(times) / SUBSET_K


def inference_seconds(model: Classifier, image: np.ndarray, repeat: int = 50) -> float:
    predict(model, image[None])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        predict(model, image[None])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def agreement(circuit: zkcircuit.Circuit, model: Classifier, images: np.ndarray) -> tuple[int, int]:
    """On how many images the circuit's class (a witness, no proof) is the model's argmax."""
    ezkl = zkcircuit.ezkl_module()
    expected = predict(model, images).argmax(axis=1)
    agree = 0
    with tempfile.TemporaryDirectory(dir=circuit.directory) as tmp:
        data, witness = Path(tmp) / "input.json", Path(tmp) / "witness.json"
        for image, want in zip(images, expected):
            data.write_text(json.dumps({"input_data": [zkcircuit.hidden_input(image, bytes(32))]}))
            ezkl.gen_witness(str(data), str(circuit.compiled), str(witness))
            outputs = json.loads(witness.read_text())["outputs"][0][0]
            agree += int.from_bytes(bytes.fromhex(outputs), "little") == int(want)
    return agree, len(images)


def bench_model(name: str, work: Path, args: argparse.Namespace, marked: dict) -> dict:
    evaluation = None
    if name in marked:
        model, pair, owner, images, evaluation = marked[name]
    elif name == "digits-wide":
        model = random_model("zk_cnn", (1, 8, 8), wide_net(10, (1, 8, 8)))
    elif name == "tiny":
        model = random_model("zk_cnn", (1, 2, 2), nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(),
                                                                nn.Linear(8, 10)))
    elif name == "zk4":
        model = random_model("zk_cnn", (1, 4, 4))
    elif name == "rgb16":
        model = random_model("zk_cnn", (3, 16, 16))
    else:
        model = random_model("small_cnn", (1, 8, 8))
    shape = model.config.input_shape
    if name not in marked:
        images = np.stack([render(bytes([i]) * 32, shape) for i in range(100)])
    row: dict = {"model": name, "arch": model.config.arch, "input": "x".join(map(str, shape)),
                 "params": sum(p.numel() for p in model.parameters()), "pieces": 1}
    if evaluation is not None:
        row["test_accuracy"] = evaluation.test.accuracy
        row["trigger_accuracy"] = evaluation.triggers.accuracy
    # One image is too little work to share: on a loaded machine a second
    # intra-op thread only waits for the scheduler (12 ms a convolution here).
    with torch_threads(1):
        row["inference_s"] = inference_seconds(model, images[0])
        if name == "digits":
            row["subset_protocol_s_per_item"] = subset_protocol_per_item(model, pair, owner)
    directory = work / name
    try:
        circuit, row["build"] = _measure(lambda: zkcircuit.build_circuit(
            model, directory, input_scale=zkcircuit.DEFAULT_INPUT_SCALE, memory_limit=args.memory_limit))
    except zkcircuit.CircuitTooLarge as exc:
        row["refused"] = str(exc)
        row["estimated_rows"] = zkcircuit.estimate_rows(model)
        return row
    row.update(rows=circuit.num_rows, logrows=circuit.logrows, estimated_peak_bytes=circuit.memory_needed)
    row["agree"], row["agree_of"] = agreement(circuit, model, images)
    task = {"circuit": str(circuit.directory), "shape": list(shape), "scale": circuit.input_scale,
            "rows": circuit.num_rows, "logrows": circuit.logrows, "work": str(directory),
            "images": [image.reshape(-1).tolist() for image in images[:args.proofs]]}
    child = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True,
                           text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"worker for {name} failed:\n{child.stderr[-3000:]}")
    row.update(json.loads(child.stdout.splitlines()[-1]))
    row["prove_over_inference"] = round(_median(row["proofs"], "wall_s") / row["inference_s"])
    return row


def _median(stats: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in stats)


def cost_fit(rows: list[dict]) -> dict | None:
    """Least squares of each proof's CPU seconds and peak memory against its
    circuit's height 2^logrows: the constants of zkcircuit's cost model."""
    points = [(1 << r["logrows"], p["cpu_s"], p["peak_bytes"]) for r in rows if "proofs" in r for p in r["proofs"]]
    if len({height for height, _, _ in points}) < 2:
        return None
    heights = np.array([h for h, _, _ in points], dtype=float)
    design = np.stack([np.ones_like(heights), heights], axis=1)
    (cpu0, cpu_row), *_ = np.linalg.lstsq(design, np.array([c for _, c, _ in points]), rcond=None)
    (mem0, mem_row), *_ = np.linalg.lstsq(design, np.array([m for _, _, m in points], dtype=float), rcond=None)
    return {"points": len(points), "cpu_s_base": round(float(cpu0), 3), "cpu_s_per_row": float(cpu_row),
            "peak_bytes_base": int(mem0), "peak_bytes_per_row": round(float(mem_row), 1),
            "model_cpu_s_per_row": zkcircuit.CPU_SECONDS_PER_ROW, "model_bytes_per_row": zkcircuit.BYTES_PER_ROW}


def plot(rows: list[dict], path: Path) -> bool:
    """Prove time (CPU and wall, median) and peak memory of each proven model against its weights."""
    proven = sorted((r for r in rows if "proofs" in r), key=lambda r: r["params"])
    if not proven:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    params = [r["params"] for r in proven]
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 4))
    time_ax.plot(params, [_median(r["proofs"], "cpu_s") for r in proven], "o-", label="CPU")
    time_ax.plot(params, [_median(r["proofs"], "wall_s") for r in proven], "s--", label="wall (shared machine)")
    memory_ax.plot(params, [max(p["peak_bytes"] for p in r["proofs"]) / 1e9 for r in proven], "o-")
    for r, x in zip(proven, params):
        memory_ax.annotate(f"{r['model']} (2^{r['logrows']})", (x, max(p["peak_bytes"] for p in r["proofs"]) / 1e9),
                           fontsize=8, textcoords="offset points", xytext=(4, -10))
    for ax, label in ((time_ax, "seconds per proof"), (memory_ax, "peak RSS of the prover, GB")):
        ax.set_xscale("log")
        ax.set_xlabel("weights")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    time_ax.legend()
    fig.suptitle(f"ezkl {zkcircuit.EZKL_VERSION} proofs of one inference, {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def table(rows: list[dict]) -> str:
    head = (f"{'model':<12}{'params':>8}{'pieces':>7}{'rows':>8}{'build':>7}{'SRS':>7}{'setup':>7}{'prove':>8}{'(cpu)':>7}"
            f"{'peak':>8}{'verify':>8}{'proof':>7}{'agree':>8}{'infer':>8}{'subset':>8}")
    units = (f"{'':<12}{'':>8}{'':>7}{'':>8}{'s':>7}{'s':>7}{'s':>7}{'s/img':>8}{'s':>7}{'GB':>8}{'s':>8}{'KB':>7}"
             f"{'':>8}{'ms':>8}{'ms/item':>8}{'x infer':>11}")
    lines = [head, units]
    for r in rows:
        subset = f"{1000 * r['subset_protocol_s_per_item']:.2f}" if "subset_protocol_s_per_item" in r else "-"
        if "refused" in r:
            lines.append(f"{r['model']:<12}{r['params']:>8}  refused: {r['refused'][:150]}")
            continue
        lines.append(
            f"{r['model']:<12}{r['params']:>8}{r['pieces']:>7}{'2^' + str(r['logrows']):>8}{r['build']['wall_s']:>7.1f}"
            f"{r['srs']['wall_s']:>7.1f}{r['setup']['wall_s']:>7.1f}{_median(r['proofs'], 'wall_s'):>8.1f}"
            f"{_median(r['proofs'], 'cpu_s'):>7.1f}{max(p['peak_bytes'] for p in r['proofs']) / 1e9:>8.2f}"
            f"{_median(r['verifies'], 'wall_s'):>8.3f}{r['proofs'][0]['proof_bytes'] / 1000:>7.1f}"
            f"{str(r['agree']) + '/' + str(r['agree_of']):>8}{1000 * r['inference_s']:>8.2f}{subset:>8}"
            f"{r['prove_over_inference']:>11,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--proofs", type=int, default=3, help="trigger images proven per model")
    parser.add_argument("--memory-limit", type=float, default=None, metavar="GB",
                        help="refuse circuits needing more (default: the memory available)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "zk.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    names = args.models.split(",")
    if not set(names) <= set(MODELS) or args.proofs < 1:
        parser.error(f"--models takes names from {', '.join(MODELS)}; --proofs at least 1")
    if args.memory_limit is not None:
        args.memory_limit = int(args.memory_limit * 1e9)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wmark-bench-zk-") as tmp:
        marked = {name: make() for name, make in (("digits", trained_digits), ("fashion", trained_fashion))
                  if name in names}
        rows = []
        for name in names:
            print(f"{name} ...", flush=True)
            rows.append(bench_model(name, Path(tmp), args, marked))
    print()
    print(f"Zero-knowledge verification, ezkl {zkcircuit.EZKL_VERSION}, {os.cpu_count()} cores; medians over "
          f"{args.proofs} proofs; peak = the proving process's peak RSS")
    print(table(rows))
    report = {
        "provenance": provenance([0], "cpu"),
        "ezkl": zkcircuit.EZKL_VERSION, "torch": torch.__version__, "platform": platform.platform(),
        "cores": os.cpu_count(), "proofs_per_model": args.proofs, "subset_k": SUBSET_K, "targets": TARGETS,
        "seconds": round(time.perf_counter() - started, 1), "models": rows,
    }
    fit = cost_fit(rows)
    if fit:
        report["cost_fit"] = fit
        print(f"fit over {fit['points']} proofs: CPU {fit['cpu_s_base']:.1f} s + {1e6 * fit['cpu_s_per_row']:.0f} us "
              f"per row (cost model: {1e6 * zkcircuit.CPU_SECONDS_PER_ROW:.0f} us); peak "
              f"{fit['peak_bytes_base'] / 1e9:.2f} GB + {fit['peak_bytes_per_row'] / 1024:.1f} KiB per row "
              f"(cost model: {zkcircuit.BYTES_PER_ROW / 1024:.0f} KiB)")
    for row in rows:
        targets = TARGETS.get(row["model"])
        if targets is None or "proofs" not in row:
            continue
        checks = {"prove_s": _median(row["proofs"], "wall_s"),
                  "prove_gb": max(p["peak_bytes"] for p in row["proofs"]) / 1e9,
                  "verify_s": _median(row["verifies"], "wall_s")}
        report[f"{row['model']}_targets_met"] = {k: v <= targets[k] for k, v in checks.items()}
        print(f"{row['model']} targets: " + ", ".join(
            f"{k} {v:.2f} (<= {targets[k]}: {'yes' if v <= targets[k] else 'NO'})" for k, v in checks.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {args.out}")
    if plot(rows, args.out.with_suffix(".png")):
        print(f"wrote {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
