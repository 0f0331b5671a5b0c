"""Robustness: removal attacks against the watermark (Adi et al. 2018, Section 5.2).

For each seed, a model is marked with the task's default recipe (seed: the
model's initialisation and batch order, and every attack's randomness), then
attacked with each of :mod:`wmark.watermark.attacks`, using only the adversary
split (data the owner never trained on).  Each attacked model is scored on
the test split and on the trigger set, and verified privately with the real
protocol in-process (:mod:`wmark.watermark.attacks.verification`) at k = 20 and at
k = n.  Two reference rows frame the table: the marked model unattacked, and
the adversary's own model, trained from scratch on the adversary split alone
(the accuracy an attacker gets without stealing anything, and an innocent
model the verification must reject).

Columns: test and trigger accuracy (mean ± sd over seeds); at k = 20, how many
seeds' verifications accepted and the exact acceptance probability over the
verifier's random choice of items (mean); at k = n, how many accepted; whether
the attacked model beats the adversary's own; and what became of the
watermark: *survives* (every seed accepted at k = n and passes k = 20 with
probability >= 0.99), *removed* (every seed rejected at k = n), else
*weakened*.  RTLL and RTAL give two rows each: with the original output layer
plugged back (the paper's check, which needs the stolen weights) and as
deployed (what a verifier querying the thief's model sees).

The trigger set has n = 100 items drawn as `wmark keygen` draws a derived set
(abstract patterns rendered from per-item seeds, labels uniform over the
classes) but with the seeds hashed from the run's seed instead of drawn from a
fresh VRF key, so a run is repeatable; they are committed as an imported set,
verified with p0 = 1/L, which is exact for such labels and gives the same
threshold as a derived key.  Only the k = 20 verdicts vary between runs (each
challenge samples its items afresh); their acceptance probability does not.

    python benchmarks/robustness.py                       # digits, 3 seeds, 3.5 minutes on 2 idle cores
    python benchmarks/robustness.py --dataset fashion-mnist --ray local   # fashion_cnn, an estimated 27 min on 2 idle cores

On Fashion-MNIST the training attacks run shortened (STUDY_PARAMS: 5 epochs of
fine-tuning and re-training, 10 of distillation and extraction without noisy
copies), so that the four studies fit 3 hours on two cores; the estimates are
in benchmarks/README.md.
    python benchmarks/robustness.py --dataset cifar10 --data-root ~/data   # the paper's ResNet-18; a GPU

Writes robustness.json, robustness.md, robustness.png (test against trigger
accuracy) and robustness-FAMILY.png (trigger accuracy against each attack
family's strength: learning rate, pruning rate, noise, bits, epochs) to --out
for digits; other data sets add their name: robustness-fashion-mnist.json, ...

What it shows on digits, and what would defend.  Fine-tuning and re-training
at the paper's rate, pruning up to 90%, int8/int4 weights and mild noise leave
the watermark intact.  Distillation and extraction remove it: a student that
learns the task from answers on task-like inputs never sees a trigger, so it
does not inherit the backdoor; the defences are trigger queries that the
answers themselves carry (the margin scheme of Kim et al. 2023,
:mod:`wmark.watermark.margin`, or entangled watermarks, Jia et al. 2021), and
query monitoring at the API.  Re-training at a higher rate, and RTLL/RTAL seen
as deployed rather than with the owner's layer plugged back, weaken it below
what k = 20 needs (16 of 20 matches) while k = n still accepts: a larger k
(`wmark-verifier plan`), at the price of revealing more items, or embedding
made for fine-tuning robustness would defend.  Attacks that push trigger
accuracy down further by brute force (98% pruning, heavy weight or input
noise) leave a model worse than the adversary could train on its own data.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

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
from wmark.protocol.decision import DEFAULT_LAMBDA, lowest_passing_accuracy, threshold
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.sampling import derive_label
from wmark.protocol.keygen import keygen_imported
from wmark.protocol.patterns import render_many
from wmark.watermark.attacks import ATTACKS, run_attack
from wmark.watermark.attacks.verification import OwnerKeys, model_digest, verify_privately
from wmark.watermark.datasets import TaskData
from wmark.watermark.device import pick_device
from wmark.watermark.embed import DEFAULT_ARCH, default_recipe, embed, start_model
from wmark.watermark.evaluate import evaluate
from wmark.watermark.modelio import Classifier
from wmark.watermark.train import Recipe, train
from wmark.watermark.triggers import TriggerSet, trigger_set_from_marking_key

TRIGGERS = 100
PRIVATE_K = 20
ITEM_TAG = "wmark/bench/robustness/item/v1"
SURE = 0.99
FLOOR = -3  # the plot's lowest trigger accuracy, a little below 0 so points at 0 show
YES_NO = {True: "yes", False: "no", None: "—"}
MARKED, OWN = "none (the marked model)", "adversary's own model"


@dataclass(frozen=True)
class Setting:
    """One attack as benchmarked: a kind with parameters overriding its defaults."""

    label: str
    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    family: str = ""


SETTINGS = (
    Setting("FTLL", "ftll", family="fine-tuning"),
    Setting("FTAL", "ftal", family="fine-tuning"),
    Setting("FTAL, lr 0.05", "ftal", (("lr", 0.05),), family="fine-tuning"),
    Setting("FTAL, lr 0.1", "ftal", (("lr", 0.1),), family="fine-tuning"),
    Setting("RTLL", "rtll", family="re-training"),
    Setting("RTAL", "rtal", family="re-training"),
    Setting("RTAL, lr 0.05", "rtal", (("lr", 0.05),), family="re-training"),
    Setting("RTAL, lr 0.1", "rtal", (("lr", 0.1),), family="re-training"),
    *(Setting(f"prune {rate:.0%}", "prune", (("rate", rate),), family="pruning")
      for rate in (0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98)),
    Setting("distillation, T 4", "distill", family="distillation / extraction"),
    Setting("extraction, soft labels", "extract-soft", family="distillation / extraction"),
    Setting("extraction, hard labels", "extract-hard", family="distillation / extraction"),
    *(Setting(f"weight noise {sigma:g} sd", "weight-noise", (("sigma", sigma),), family="noise")
      for sigma in (0.1, 0.5, 1.0)),
    *(Setting(f"int{bits} weights", "quantise", (("bits", bits),), family="quantisation")
      for bits in (8, 4)),
    *(Setting(f"input noise {sigma:g}", "input-noise", (("sigma", sigma),), family="noise")
      for sigma in (0.1, 0.3)),
)
# Each data set's attacks as this study runs them, over the kinds' defaults
# (the attacks as benchmarked on digits).  Fashion-MNIST's are shortened so
# that the four studies fit 3 hours on two cores (benchmarks/README.md,
# "Planning a full study"): fine-tuning and re-training take 5 epochs of the
# adversary's 9,900 images (1,550 steps of 32) at every benchmarked rate, not
# 20; distillation and extraction 10 epochs of its images without noisy
# copies (which digits' 337 images needed), not 30 epochs of four times as many.
STUDY_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "fashion-mnist": {**{kind: {"epochs": 5} for kind in ("ftll", "ftal", "rtll", "rtal")},
                      **{kind: {"epochs": 10, "copies": 0} for kind in ("distill", "extract-soft", "extract-hard")}},
}
# The parameter each family's strength plot puts on its x axis.
STRENGTH = {"fine-tuning": "lr", "re-training": "lr", "pruning": "rate", "noise": "sigma", "quantisation": "bits",
            "distillation / extraction": "epochs"}


def study_settings(dataset: str) -> tuple[Setting, ...]:
    """:data:`SETTINGS` with ``dataset``'s study parameters under each setting's own."""
    extra = STUDY_PARAMS.get(dataset, {})
    return tuple(replace(s, params=tuple({**extra.get(s.kind, {}), **dict(s.params)}.items())) for s in SETTINGS)


def trigger_set(task: TaskData, seed: int) -> TriggerSet:
    seeds = [tagged_hash(ITEM_TAG, seed.to_bytes(8, "big"), i.to_bytes(4, "big")) for i in range(TRIGGERS)]
    return TriggerSet(render_many(seeds, task.input_shape),
                      np.array([derive_label(s, task.num_classes) for s in seeds], dtype=np.int64),
                      task.num_classes)


def owner_keys(task: TaskData, seed: int) -> OwnerKeys:
    triggers = trigger_set(task, seed)
    owner = SigningKey.generate()
    pair = keygen_imported(owner=owner, images=[image.tobytes() for image in triggers.images],
                           labels=triggers.labels.tolist(), num_classes=task.num_classes,
                           input_shape=task.input_shape)
    return OwnerKeys(pair.marking_key, pair.verification_key, owner)


def measure(row: str, seed: int, model: Classifier, task: TaskData, keys: OwnerKeys, triggers: TriggerSet,
            seconds: float) -> dict[str, Any]:
    p0 = Fraction(1, task.num_classes)
    scores = evaluate(model, task.test, triggers)
    digest = model_digest(model)
    private, public = (verify_privately(model, keys, k, digest=digest, p0=p0) for k in (PRIVATE_K, keys.vk.n))
    record = {"row": row, "seed": seed, "seconds": round(seconds, 2),
              "test_accuracy": scores.test.accuracy, "trigger_accuracy": scores.triggers.accuracy,
              "private": asdict(private), "public": asdict(public)}
    print(f"  seed {seed} {row:<38} test {100 * record['test_accuracy']:6.2f}  trigger "
          f"{100 * record['trigger_accuracy']:6.2f}  k={PRIVATE_K} {_verdict(private.accepted)} "
          f"(P {private.acceptance_probability:.2f})  k={public.k} {_verdict(public.accepted)}  ({seconds:.1f} s)",
          flush=True)
    return record


def _verdict(accepted: bool) -> str:
    return "accept" if accepted else "reject"


def rows_of(setting: Setting) -> list[str]:
    if ATTACKS[setting.kind].checked is None:
        return [setting.label]
    return [f"{setting.label} (original layer)", f"{setting.label} (as deployed)"]


def mark(task: TaskData, seed: int, keys: OwnerKeys, epochs: int | None, device: torch.device,
         progress: bool) -> tuple[Classifier, dict[str, Any]]:
    """The seed's marked model and its reference row."""
    triggers = trigger_set_from_marking_key(keys.mk)
    start = time.perf_counter()
    marked = embed(start_model(task, seed=seed), task, triggers, _recipe(task, seed, epochs),
                   vk_digest=keys.vk.digest, device=device, progress=progress).model
    return marked, measure(MARKED, seed, marked, task, keys, triggers, time.perf_counter() - start)


def own_model(task: TaskData, seed: int, keys: OwnerKeys, epochs: int | None, device: torch.device,
              progress: bool) -> list[dict[str, Any]]:
    """The adversary's own model, trained from scratch on the adversary split, and its row."""
    start = time.perf_counter()
    own = start_model(task, seed=seed)
    train(own, task.adversary, replace(_recipe(task, seed, epochs), triggers_per_batch=0), device=device,
          progress=progress)
    return [measure(OWN, seed, own, task, keys, trigger_set_from_marking_key(keys.mk), time.perf_counter() - start)]


def attack(task: TaskData, seed: int, keys: OwnerKeys, marked: Classifier, setting: Setting, epochs: int | None,
           device: torch.device) -> list[dict[str, Any]]:
    """One (seed, attack, strength): the attacked model's rows.  Everything it
    draws is seeded from ``seed`` (run_attack), so it computes the same in any
    process and any order."""
    params = dict(setting.params)
    if epochs and "epochs" in {f.name for f in fields(ATTACKS[setting.kind].params)}:
        params["epochs"] = epochs
    start = time.perf_counter()
    result = run_attack(marked, setting.kind, task, seed=seed, device=device, **params)
    seconds = time.perf_counter() - start
    models = [result.checked, result.attacked] if result.plugged_back else [result.attacked]
    triggers = trigger_set_from_marking_key(keys.mk)
    return [measure(row, seed, model, task, keys, triggers, seconds) for row, model in zip(rows_of(setting), models)]


def _recipe(task: TaskData, seed: int, epochs: int | None) -> Recipe:
    return replace(default_recipe(task.name), seed=seed, **({"epochs": epochs} if epochs else {}))


def run_study(task: TaskData, seeds: int, settings: tuple[Setting, ...], args: argparse.Namespace,
              device: torch.device) -> list[dict[str, Any]]:
    """Every seed's rows, seed by seed in the order a sequential run prints them:
    first the marked and own models of every seed, then one job per (seed,
    attack, strength), in this process or (``args.ray``) as Ray tasks."""
    keys = {seed: owner_keys(task, seed) for seed in range(seeds)}
    progress = args.progress and args.ray is None
    marks = run_jobs([Job(f"mark seed {s}", mark, (task, s, keys[s], args.epochs, device, progress))
                      for s in keys] +
                     [Job(f"own model seed {s}", own_model, (task, s, keys[s], args.epochs, device, progress))
                      for s in keys], ray_address=args.ray, what="training")
    marked = dict(zip(keys, marks[:seeds]))
    owns = dict(zip(keys, marks[seeds:]))
    attacks = run_jobs([Job(f"seed {s} {setting.label}", attack,
                            (task, s, keys[s], marked[s][0], setting, args.epochs, device))
                        for s in keys for setting in settings], ray_address=args.ray, what="attack")
    by_seed: dict[int, list[dict[str, Any]]] = {s: [marked[s][1], *owns[s]] for s in keys}
    for (s, _), rows in zip([(s, setting) for s in keys for setting in settings], attacks):
        by_seed[s] += rows
    return [row for s in keys for row in by_seed[s]]


@dataclass(frozen=True)
class Summary:
    row: str
    family: str
    test_mean: float
    test_sd: float
    trigger_mean: float
    trigger_sd: float
    private_accepted: int
    private_probability: float
    public_accepted: int
    seeds: int
    beats_own: bool | None  # None for the adversary's own model itself
    watermark: str


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[dict[str, Any]], settings: tuple[Setting, ...] = SETTINGS) -> list[Summary]:
    families = {MARKED: "reference", OWN: "reference",
                **{row: s.family for s in settings for row in rows_of(s)}}
    own_test = statistics.fmean(r["test_accuracy"] for r in records if r["row"] == OWN)
    summaries = []
    for row in families:
        runs = [r for r in records if r["row"] == row]
        test, trigger = (_mean_sd([100 * r[m] for r in runs]) for m in ("test_accuracy", "trigger_accuracy"))
        public = sum(r["public"]["accepted"] for r in runs)
        sure = all(r["public"]["accepted"] and r["private"]["acceptance_probability"] >= SURE for r in runs)
        summaries.append(Summary(
            row=row, family=families[row], test_mean=test[0], test_sd=test[1], trigger_mean=trigger[0],
            trigger_sd=trigger[1], private_accepted=sum(r["private"]["accepted"] for r in runs),
            private_probability=statistics.fmean(r["private"]["acceptance_probability"] for r in runs),
            public_accepted=public, seeds=len(runs), beats_own=None if row == OWN else test[0] > 100 * own_test,
            watermark="survives" if sure else "removed" if public == 0 else "weakened"))
    return summaries


def markdown(summaries: list[Summary], n: int) -> str:
    lines = [f"| attack | test accuracy (%) | trigger accuracy (%) | k={PRIVATE_K} accepted | "
             f"k={PRIVATE_K} P(accept) | k={n} accepted | beats own model | watermark |",
             "|---|---:|---:|---:|---:|---:|:---:|---|"]
    for s in summaries:
        lines.append(f"| {s.row} | {s.test_mean:.2f} ± {s.test_sd:.2f} | {s.trigger_mean:.1f} ± {s.trigger_sd:.1f} | "
                     f"{s.private_accepted}/{s.seeds} | {s.private_probability:.2f} | {s.public_accepted}/{s.seeds} | "
                     f"{YES_NO[s.beats_own]} | {s.watermark if s.row != OWN else '(innocent)'} |")
    return "\n".join(lines)


def frontier_plot(summaries: list[Summary], title: str, thresholds: dict[str, float], path: Path) -> None:
    """Trigger accuracy against test accuracy: an attacker wants the lower right, below the k = n threshold
    and right of what its own model reaches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.0, 6.0))
    own = next(s for s in summaries if s.row == OWN)
    lowest = min(thresholds.values())
    ax.fill_between([own.test_mean, 100], FLOOR, lowest, color="tab:red", alpha=0.08, linewidth=0)
    ax.annotate("removed, and better than the adversary's own model", (100, lowest), fontsize=7,
                xytext=(-3, -10), textcoords="offset points", ha="right", color="firebrick")
    for label, level in thresholds.items():
        ax.axhline(level, linestyle="--", linewidth=0.8, color="grey")
        ax.annotate(label, (0, level), xycoords=("axes fraction", "data"), fontsize=7, xytext=(3, 2),
                    textcoords="offset points", color="dimgrey")
    ax.axvline(own.test_mean, linestyle=":", linewidth=0.8, color="grey")
    families = list(dict.fromkeys(s.family for s in summaries))
    colours = dict(zip(families, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for family in families:
        members = [s for s in summaries if s.family == family]
        ax.errorbar([s.test_mean for s in members], [s.trigger_mean for s in members],
                    xerr=[s.test_sd for s in members], yerr=[s.trigger_sd for s in members], fmt="o",
                    color=colours[family], label=family, capsize=3, markersize=5,
                    linestyle="-" if family == "pruning" else "none", linewidth=0.8)
    # Survivors crowd the top right corner: name them once there instead of one by one.
    crowd = [s for s in summaries if s.watermark == "survives" and s.row != MARKED]
    others = [s for s in summaries if s not in crowd]
    for i, s in enumerate(sorted(others, key=lambda s: s.trigger_mean)):
        ax.annotate(s.row, (s.test_mean, s.trigger_mean), fontsize=6.5, xytext=(5, 4 if i % 2 else -9),
                    textcoords="offset points")
    ax.annotate(textwrap.fill("survive: " + ", ".join(s.row for s in crowd), 90), (0.02, 0.98),
                xycoords="axes fraction", fontsize=6.5, va="top",
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "lightgrey"})
    ax.set_xlabel("test accuracy after the attack (%)")
    ax.set_ylabel("trigger accuracy after the attack (%)")
    ax.set_ylim(FLOOR, 118)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def strength_plots(records: list[dict[str, Any]], title: str, stem: Path,
                   settings: tuple[Setting, ...] = SETTINGS) -> list[Path]:
    """Per attack family, trigger accuracy (mean ± sd over seeds) against the attack's strength, one line
    per kind and row (RTLL/RTAL: as deployed and with the original layer), the marked model's accuracy
    dashed; one PNG per family, ``STEM-FAMILY.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marked = statistics.fmean(100 * r["trigger_accuracy"] for r in records if r["row"] == MARKED)
    written = []
    for family, parameter in STRENGTH.items():
        members = [s for s in settings if s.family == family]
        if not members:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        lines: dict[str, list[tuple[float, float, float]]] = {}
        for setting in members:
            x = float(getattr(ATTACKS[setting.kind].make_params(**dict(setting.params)), parameter))
            for row in rows_of(setting):
                values = [100 * r["trigger_accuracy"] for r in records if r["row"] == row]
                name = setting.kind + row[len(setting.label):]
                lines.setdefault(name, []).append((x, *_mean_sd(values)))
        for name, points in lines.items():
            points.sort()
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                        capsize=3, label=name)
        ax.axhline(marked, linestyle="--", linewidth=0.8, color="grey", label="marked model, unattacked")
        ax.set_xlabel(parameter)
        ax.set_ylabel("trigger accuracy after the attack (%)")
        ax.set_ylim(FLOOR, 105)
        ax.set_title(f"{title}\n{family}", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = stem.parent / f"{stem.name}-{family.split(' ')[0]}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__, epochs_help="override every training run's epochs (quick checks only)")
    parser.add_argument("--attacks", type=lambda text: text.split(","), metavar="KIND,...",
                        help=f"only these attack kinds ({', '.join(dict.fromkeys(s.kind for s in SETTINGS))}); "
                             "quick checks only")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds and --epochs must be at least 1")
    try:
        device = pick_device(args.device)
        task = load_for(args)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    settings = tuple(s for s in study_settings(task.name) if args.attacks is None or s.kind in args.attacks)
    if not settings:
        print(f"error: no attack of kinds {', '.join(args.attacks)}", file=sys.stderr)
        return 2
    arch = DEFAULT_ARCH[task.name]
    print(f"{task.describe()}; {arch} on {device}; {args.seeds} seeds; {len(settings)} attacks"
          + (f"; Ray at {args.ray}" if args.ray else ""), flush=True)
    origin = provenance(list(range(args.seeds)), device, args.label)
    start = time.perf_counter()
    try:
        records = run_study(task, args.seeds, settings, args, device)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    summaries = summarise(records, settings)
    p0 = Fraction(1, task.num_classes)
    taus = {k: threshold(k, p0) for k in (PRIVATE_K, TRIGGERS)}
    title = (f"Robustness, {task.name} ({arch}, {TRIGGERS} triggers, adversary split of {len(task.adversary)} "
             f"images), mean ± sd over {args.seeds} seeds")
    table = markdown(summaries, TRIGGERS)
    legend = (f"Private verification accepts at {taus[PRIVATE_K]}/{PRIVATE_K} matches (k={PRIVATE_K}) and "
              f"{taus[TRIGGERS]}/{TRIGGERS} (k=n={TRIGGERS}), p0 = 1/{task.num_classes}, lambda = {DEFAULT_LAMBDA}; "
              f"a model passes k={PRIVATE_K} with probability {SURE} from trigger accuracy "
              f"{100 * lowest_passing_accuracy(PRIVATE_K, p0):.0f}%. Run time {seconds / 60:.1f} min on {device}.")
    print()
    print(title)
    print(table)
    print(legend)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / ("robustness" if task.name == "digits" else f"robustness-{task.name}")
    report = {
        "provenance": origin,
        "dataset": task.name,
        "subset": args.subset,
        "arch": arch,
        "triggers": TRIGGERS,
        "adversary_images": len(task.adversary),
        "seeds": list(range(args.seeds)),
        "recipe": asdict(default_recipe(task.name)),
        "attacks": [{"label": s.label, "kind": s.kind, "rows": rows_of(s),
                     "params": asdict(ATTACKS[s.kind].make_params(**dict(s.params)))} for s in settings],
        "epochs_override": args.epochs,
        "thresholds": {str(k): tau for k, tau in taus.items()},
        "lambda": DEFAULT_LAMBDA,
        "device": str(device),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "seconds": round(seconds, 1),
        "runs": records,
        "summary": [asdict(s) for s in summaries],
    }
    atomic_write(stem.with_suffix(".json"), (json.dumps(report, indent=2) + "\n").encode())
    atomic_write(stem.with_suffix(".md"), f"{title}\n\n{table}\n\n{legend}\n\n{provenance_markdown(origin)}\n".encode())
    thresholds = {f"k={TRIGGERS} accepts from {taus[TRIGGERS]}/{TRIGGERS}": 100 * taus[TRIGGERS] / TRIGGERS,
                  f"k={PRIVATE_K} passes w.p. {SURE} above": 100 * lowest_passing_accuracy(PRIVATE_K, p0)}
    frontier_plot(summaries, title, thresholds, stem.with_suffix(".png"))
    plots = strength_plots(records, title, stem, settings)
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')}, {stem.with_suffix('.png')} and "
          f"{', '.join(p.name for p in plots)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
