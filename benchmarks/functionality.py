"""Functionality preservation: the table of Adi et al. 2018 (Section 5.1).

Three ways to train, each over several seeds, scored on test accuracy and
trigger-set accuracy:

* NO-WM: the task's recipe without trigger images (the baseline);
* FROMSCRATCH: the same recipe with trigger images in every batch;
* PRETRAINED: the NO-WM model of the same seed, fine-tuned with them.

A watermark preserves functionality when FROMSCRATCH and PRETRAINED keep
NO-WM's test accuracy while reaching full trigger accuracy, and NO-WM stays
near chance on the triggers.  The paper (CIFAR-10, ResNet-18) reports

    NO-WM 93.42 / 7.0, FROMSCRATCH 93.81 / 100, PRETRAINED 93.65 / 100.

Trigger sets are derived ones as ``wmark keygen`` makes them (abstract
patterns from :mod:`wmark.protocol.patterns`, labels uniform over the classes),
but from per-seed item seeds instead of a VRF, so a run is repeatable.

    python benchmarks/functionality.py                       # digits, 3 seeds, about a minute
    python benchmarks/functionality.py --dataset cifar10 --data-root ~/data   # the paper's recipe; a GPU

    python benchmarks/functionality.py --dataset fashion-mnist   # fashion_cnn, Debian's files

Writes functionality-DATASET.json, .md and .png to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from _cli import (  # a sibling module: scripts run with this folder on sys.path
    load_for,
    provenance,
    provenance_markdown,
    training_parser,
)

from wmark.cluster import Job, run_jobs
from wmark.errors import WmarkError
from wmark.files import atomic_write
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.hazmat.sampling import derive_label
from wmark.protocol.patterns import render_many
from wmark.watermark.datasets import TaskData
from wmark.watermark.device import pick_device
from wmark.watermark.embed import DEFAULT_ARCH, default_recipe, embed, start_model
from wmark.watermark.triggers import TriggerSet

ROWS = ("NO-WM", "FROMSCRATCH", "PRETRAINED")
PAPER = {"NO-WM": (93.42, 7.0), "FROMSCRATCH": (93.81, 100.0), "PRETRAINED": (93.65, 100.0)}
TRIGGERS = 100
ITEM_TAG = "wmark/bench/functionality/item/v1"


def trigger_set(task: TaskData, seed: int) -> TriggerSet:
    seeds = [tagged_hash(ITEM_TAG, seed.to_bytes(8, "big"), i.to_bytes(4, "big")) for i in range(TRIGGERS)]
    return TriggerSet(render_many(seeds, task.input_shape),
                      np.array([derive_label(s, task.num_classes) for s in seeds], dtype=np.int64),
                      task.num_classes)


def run_seed(task: TaskData, seed: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    triggers = trigger_set(task, seed)
    recipe = replace(default_recipe(task.name), seed=seed)
    finetune = replace(default_recipe(task.name, pretrained=True), seed=seed)
    if args.epochs:
        recipe, finetune = replace(recipe, epochs=args.epochs), replace(finetune, epochs=args.epochs)
    runs = []

    def row(name: str, model, recipe) -> object:
        start = time.perf_counter()
        result = embed(model, task, triggers, recipe, device=device, progress=args.progress)
        runs.append({"row": name, "seed": seed, "seconds": round(time.perf_counter() - start, 2),
                     "test_accuracy": result.evaluation.test.accuracy,
                     "trigger_accuracy": result.evaluation.triggers.accuracy})
        print(f"  seed {seed} {name:<12} test {100 * runs[-1]['test_accuracy']:6.2f}  "
              f"trigger {100 * runs[-1]['trigger_accuracy']:6.2f}  ({runs[-1]['seconds']:.1f} s)", flush=True)
        return result.model

    baseline = row("NO-WM", start_model(task, seed=seed), replace(recipe, triggers_per_batch=0))
    row("FROMSCRATCH", start_model(task, seed=seed), recipe)
    row("PRETRAINED", copy.deepcopy(baseline), finetune)
    return runs


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    summary = {}
    for name in ROWS:
        for metric in ("test_accuracy", "trigger_accuracy"):
            values = [100 * r[metric] for r in runs if r["row"] == name]
            summary.setdefault(name, {}).update({
                f"{metric}_mean": statistics.fmean(values),
                f"{metric}_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                f"{metric}_min": min(values),
                f"{metric}_max": max(values),
            })
    return summary


def table(summary: dict[str, dict[str, float]], title: str) -> str:
    lines = [title, f"{'':<13}{'test accuracy (%)':>22}{'trigger accuracy (%)':>26}{'paper (CIFAR-10)':>20}"]
    for name in ROWS:
        s = summary[name]
        lines.append(
            f"{name:<13}{s['test_accuracy_mean']:>13.2f} ± {s['test_accuracy_std']:<5.2f}"
            f"{s['trigger_accuracy_mean']:>17.1f} ± {s['trigger_accuracy_std']:<5.1f}"
            f"{PAPER[name][0]:>13.2f} / {PAPER[name][1]:.1f}")
    return "\n".join(lines)


def markdown(summary: dict[str, dict[str, float]], title: str) -> str:
    lines = [title, "", "| | test accuracy (%) | trigger accuracy (%) | paper, CIFAR-10 (test / trigger) |",
             "|---|---:|---:|---:|"]
    for name in ROWS:
        s = summary[name]
        lines.append(f"| {name} | {s['test_accuracy_mean']:.2f} ± {s['test_accuracy_std']:.2f} | "
                     f"{s['trigger_accuracy_mean']:.1f} ± {s['trigger_accuracy_std']:.1f} | "
                     f"{PAPER[name][0]:.2f} / {PAPER[name][1]:.1f} |")
    return "\n".join(lines)


def bar_chart(summary: dict[str, dict[str, float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(ROWS))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for offset, metric, label in ((-0.2, "test_accuracy", "test accuracy"),
                                  (0.2, "trigger_accuracy", "trigger-set accuracy")):
        means = [summary[r][f"{metric}_mean"] for r in ROWS]
        ax.bar(x + offset, means, 0.4, yerr=[summary[r][f"{metric}_std"] for r in ROWS], capsize=4, label=label)
        for xi, m in zip(x + offset, means):
            ax.annotate(f"{m:.1f}", (xi, m), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(x, ROWS)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__, epochs_help="override both recipes' epochs (quick checks only)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        device = pick_device(args.device)
        task = load_for(args)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"{task.describe()}; {DEFAULT_ARCH[task.name]} on {device}; {args.seeds} seeds", flush=True)
    origin = provenance(list(range(args.seeds)), device, args.label)
    start = time.perf_counter()
    # One job per seed (its three trainings), in this process or as Ray tasks (--ray).
    try:
        per_seed = run_jobs([Job(f"seed {seed}", run_seed, (task, seed, args, device)) for seed in range(args.seeds)],
                            ray_address=args.ray, what="seed")
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = [r for rows in per_seed for r in rows]
    summary = summarise(runs)
    title = (f"Functionality, {task.name} ({DEFAULT_ARCH[task.name]}, {TRIGGERS} triggers), "
             f"mean ± sd over {args.seeds} seeds")
    print()
    print(table(summary, title))
    gap = summary["FROMSCRATCH"]["test_accuracy_mean"] - summary["NO-WM"]["test_accuracy_mean"]
    print(f"FROMSCRATCH - NO-WM test accuracy: {gap:+.2f} points")

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"functionality-{task.name}"
    report = {
        "provenance": origin,
        "dataset": task.name,
        "subset": args.subset,
        "arch": DEFAULT_ARCH[task.name],
        "triggers": TRIGGERS,
        "seeds": list(range(args.seeds)),
        "recipe": asdict(default_recipe(task.name)),
        "finetune_recipe": asdict(default_recipe(task.name, pretrained=True)),
        "epochs_override": args.epochs,
        "device": str(device),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - start, 1),
        "runs": runs,
        "summary": summary,
        "fromscratch_minus_nowm_test_points": gap,
        "paper_cifar10": {name: {"test_accuracy": t, "trigger_accuracy": w} for name, (t, w) in PAPER.items()},
    }
    atomic_write(stem.with_suffix(".json"), (json.dumps(report, indent=2) + "\n").encode())
    atomic_write(stem.with_suffix(".md"), f"{markdown(summary, title)}\n\n{provenance_markdown(origin)}\n".encode())
    bar_chart(summary, title, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
