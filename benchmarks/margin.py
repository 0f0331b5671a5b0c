"""Adi et al. 2018 against Kim et al. 2023: which watermark survives model stealing?

For each seed, the same task is marked twice, with real keys made by
``wmark keygen`` for a fresh owner each seed: with a derived trigger set (Adi: out-of-distribution
patterns mixed into batches) and with margin queries (Kim: in-distribution
images of the task's ``query`` split with wrong labels, trained with
projected gradient ascent on their margins).  Each marked model is then
stolen with the harness's attacks (:mod:`wmark.watermark.attacks`), from two
sources of attacker data:

* ``adversary``: the task's adversary split, plus the harness's noisy copies;
* ``shifted``: the adversary split and its copies shifted by an eighth of the
  image side in the four directions (1 pixel on digits), no noisy copies;

by knowledge distillation (alpha 0.7, T 1, as Kim et al.), soft-label
extraction (KL on the answered probabilities) and hard-label extraction (the
answered classes).  Every model, marked, stolen or innocent, is scored on
both keys' items and verified with both keys through the real protocol
(:func:`wmark.watermark.attacks.verification.verify_privately`: a
``VerifierSession`` challenges the owner's ``ProverSession``, checks the
openings and queries the model itself), privately with k=20 and publicly
with k=n, at lambda=40.  A model counts as innocent for a key unless it is
that key's marked model or a copy stolen from it: NO-WM models of either
recipe, and everything made from the other scheme.

    python benchmarks/margin.py                # digits, 3 seeds, 2 processes
    python benchmarks/margin.py --dataset cifar10 --data-root ~/data --device cuda   # Kim et al.'s recipe

On CIFAR-10 the victims are ResNet-34 (Adi: the paper's recipe; margin: Kim
et al.'s, 200 epochs) and the students ResNet-18.  Keys are made fresh from
the OS CSPRNG on every run, so a re-run draws other items, unless --keys
names a folder to keep them in (DIR/seed-N, written on the first run, read on the next):
with the same keys and seeds a re-run, in processes or on Ray (--ray), trains
and attacks the same models.  Writes margin.json, margin.md and margin.png to
--out.

--ascent-steps N and --queries N change Kim et al.'s two knobs for the margin
key (the number of gradient-ascent steps per batch, default 5, and the key's
number of queries, default 100, at most the query split); a run with either
changed writes margin-DATASET-stepsN.* (or -queriesN, or both) instead, beside the default
run's files, so that a sweep keeps every point:

    for steps in 1 20; do python benchmarks/margin.py --dataset fashion-mnist --seeds 1 --ascent-steps $steps; done
    python benchmarks/margin.py --dataset fashion-mnist --seeds 1 --queries 50

--save-models DIR keeps every seed's two marked models (adi, margin) in DIR with
their owner's keys and a manifest, each as its training ends, for evasion.py
--models-from DIR (benchmarks/_marked.py), which then trains neither again.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import _marked
import numpy as np
import torch
from _cli import (  # a sibling module: scripts run with this folder on sys.path
    provenance,
    provenance_markdown,
    subset,
    training_parser,
)

from wmark.cluster import Job, per_process, run_jobs, share
from wmark.errors import WmarkError
from wmark.files import atomic_write
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, load_signing_key, save_signing_key
from wmark.protocol.keyfile import load_marking_key, save_marking_key
from wmark.protocol.keygen import KeyPair, keygen_derived, keygen_margin
from wmark.protocol.keys import MarkingKey, load_verification_key, verify_vk_envelope
from wmark.protocol.margin import QuerySplit
from wmark.watermark.attacks import run_attack
from wmark.watermark.attacks.verification import OwnerKeys, model_digest, verify_privately
from wmark.watermark.datasets import LabelledImages, TaskData, load_task
from wmark.watermark.device import pick_device
from wmark.watermark.embed import DEFAULT_ARCH, default_recipe, embed, start_model
from wmark.watermark.evaluate import predict, score
from wmark.watermark.margin import MarginOptions, embed_margin, margin_recipe, query_split
from wmark.watermark.modelio import Classifier
from wmark.watermark.train import Recipe
from wmark.watermark.triggers import TriggerSet, trigger_set_from_marking_key

SCHEMES = ("adi", "margin")
LABEL = {"adi": "Adi (derived triggers)", "margin": "Kim (margin queries)"}
ATTACKS = ("distill", "extract-soft", "extract-hard")
SOURCES = ("adversary", "shifted")
PRIVATE_K = 20
ITEMS = 100
# Kim et al.'s distillation: alpha 0.7 on the teacher, temperature 1.
DISTILLATION = {"alpha": 0.7, "temperature": 1.0}
# CIFAR-10 as Kim et al.: ResNet-34 victims, ResNet-18 students.
CIFAR_VICTIM, CIFAR_STUDENT = "resnet34_cifar", "resnet18_cifar"
CIFAR_TRANSFER = {"epochs": 50, "lr": 0.05, "batch_size": 128, "arch": CIFAR_STUDENT}
# Fashion-MNIST's students, shortened so that the four studies fit 3 hours on
# two cores (benchmarks/README.md, "Planning a full study"): every student sees
# 99,000 images, 10 epochs of the adversary's 9,900 (no noisy copies: digits'
# 337 images needed them) or 2 of the 49,500 shifted ones, not 30 epochs of
# 39,600 or 49,500.
FASHION_TRANSFER = {"adversary": {"epochs": 10, "copies": 0}, "shifted": {"epochs": 2}}


def load(dataset: str, data_root: str | None, cut: int | None = None) -> TaskData:
    """Each worker loads the task once, rather than receiving it with every job."""
    return per_process(("margin task", dataset, data_root, cut), lambda: subset(load_task(dataset, data_root), cut))


def _query_split(dataset: str, data_root: str | None, cut: int | None) -> QuerySplit:
    return per_process(("margin split", dataset, data_root, cut), lambda: query_split(load(dataset, data_root, cut)))


def _pack(pair: KeyPair) -> tuple[bytes, dsse.Envelope]:
    return pair.marking_key.to_bytes(), pair.signed_vk


def _unpack(mk: bytes, signed_vk: dsse.Envelope) -> KeyPair:
    return per_process(("margin keys", mk, signed_vk), lambda: KeyPair(
        MarkingKey.from_bytes(mk, what="marking key"), verify_vk_envelope(signed_vk, what="verification key"),
        signed_vk))


@dataclass(frozen=True, repr=False)
class World:
    """What every worker needs: each seed's owner and two key pairs, and the options."""

    # Each key pair, by (scheme, seed), as its marking key's bytes and its signed vk:
    # a VRF secret key holds a C object that cannot be pickled across to the workers.
    sealed: dict[tuple[str, int], tuple[bytes, dsse.Envelope]]
    owners: dict[int, SigningKey]
    args: argparse.Namespace

    def key(self, scheme: str, seed: int) -> KeyPair:
        return _unpack(*self.sealed[scheme, seed])

    @property
    def task(self) -> TaskData:
        return load(self.args.dataset, self.args.data_root, self.args.subset)

    @property
    def split(self) -> QuerySplit:
        return _query_split(self.args.dataset, self.args.data_root, self.args.subset)

    def owner_keys(self, scheme: str, seed: int) -> OwnerKeys:
        pair = self.key(scheme, seed)
        return OwnerKeys(pair.marking_key, pair.verification_key, self.owners[seed])

    def items(self, scheme: str, seed: int) -> TriggerSet:
        return trigger_set_from_marking_key(self.key(scheme, seed).marking_key,
                                            self.split if scheme == "margin" else None)


def recipe_of(world: World, name: str, seed: int) -> Recipe:
    """NO-WM uses each scheme's recipe without its items, so each has its own baseline."""
    scheme = name.removeprefix("nowm-")
    recipe = (margin_recipe if scheme == "margin" else default_recipe)(world.task.name)
    recipe = replace(recipe, seed=seed, **({"epochs": world.args.epochs} if world.args.epochs else {}))
    return replace(recipe, triggers_per_batch=0) if name.startswith("nowm") else recipe


def margin_options(args: argparse.Namespace) -> MarginOptions:
    return MarginOptions(ascent_steps=args.ascent_steps)


def victim_arch(task: TaskData) -> str:
    return CIFAR_VICTIM if task.name == "cifar10" else DEFAULT_ARCH[task.name]


def train_model(world: World, name: str, seed: int) -> tuple[dict[str, Any], Classifier]:
    """Train one of the models a seed starts from: NO-WM under either recipe, or a
    marked one; the model comes back with its row (to the jobs that measure and
    attack it, wherever they run)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = start_model(world.task, arch=victim_arch(world.task), seed=seed)
    recipe = recipe_of(world, name, seed)
    device = pick_device(world.args.device)
    if name == "margin":
        embed_margin(model, world.task, world.items("margin", seed), recipe, margin_options(world.args),
                     vk_digest=world.key("margin", seed).verification_key.digest, device=device,
                     progress=world.args.progress)
    else:
        items = world.items("adi", seed) if name == "adi" else None
        embed(model, world.task, items, recipe, device=device, progress=world.args.progress,
              vk_digest=world.key("adi", seed).verification_key.digest if items is not None else None)
    return {"model": name, "seed": seed, "train_seconds": round(time.perf_counter() - start, 1)}, model.cpu()


def shifted(task: TaskData) -> TaskData:
    """The task with its adversary split and the split's four shifts by an eighth of the side."""
    data, step = task.adversary, max(1, task.input_shape[-1] // 8)
    moved = [np.roll(data.images, offset, axis=axis) for axis in (2, 3) for offset in (-step, step)]
    return replace(task, adversary=LabelledImages(np.concatenate([data.images, *moved]),
                                                  np.tile(data.labels, len(moved) + 1)))


def attack_params(world: World, kind: str, source: str) -> dict[str, Any]:
    params: dict[str, Any] = (dict(CIFAR_TRANSFER) if world.task.name == "cifar10" else
                              dict(FASHION_TRANSFER[source]) if world.task.name == "fashion-mnist" else {})
    if kind == "distill":
        params.update(DISTILLATION)
    if source == "shifted":
        params["copies"] = 0
    if world.args.epochs:
        params["epochs"] = world.args.epochs
    return params


def measure(world: World, model: Classifier, row: dict[str, Any]) -> dict[str, Any]:
    """Test accuracy, and per key of the row's seed: item accuracy and the k=20 and k=n verifications."""
    model.to(pick_device(world.args.device))
    digest = model_digest(model)
    row["test_accuracy"] = score(model, world.task.test.images, world.task.test.labels).accuracy
    for scheme in SCHEMES:
        items = world.items(scheme, row["seed"])
        margin = world.split if scheme == "margin" else None
        keys = world.owner_keys(scheme, row["seed"])
        private = verify_privately(model, keys, PRIVATE_K, digest=digest, margin=margin)
        public = verify_privately(model, keys, keys.vk.n, digest=digest, margin=margin)
        row[scheme] = {
            "accuracy": float((predict(model, items.images).argmax(axis=1) == items.labels).mean()),
            "k20": {"matches": private.matches, "accepted": private.accepted,
                    "acceptance_probability": private.acceptance_probability},
            "kn": {"k": public.k, "matches": public.matches, "tau": public.tau, "accepted": public.accepted,
                   "p_value": public.p_value},
        }
    return row


def measure_trained(world: World, model: Classifier, name: str, seed: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    return measure(world, model, {"model": name, "seed": seed})


def steal(world: World, model: Classifier, victim: str, source: str, kind: str, seed: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    task = shifted(world.task) if source == "shifted" else world.task
    result = run_attack(model, kind, task, seed=seed,
                        device=pick_device(world.args.device), **attack_params(world, kind, source))
    row = {"model": f"{victim}/{kind}/{source}", "victim": victim, "attack": kind, "source": source, "seed": seed,
           "attack_seconds": round(time.perf_counter() - start, 1)}
    return measure(world, result.checked, row)


def innocent(row: dict[str, Any], scheme: str) -> bool:
    """Neither the key's marked model nor stolen from it."""
    return row.get("victim", row["model"]) != scheme


def pct(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{mean:.1f}{spread}"


def rows_of(runs: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return sorted((r for r in runs if r["model"] == model), key=lambda r: r["seed"])


def comparison_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| scheme | model | test acc (%) | trigger/query acc (%) | k=20 accepted (P[accept]) | "
             "k=n accepted | k=n matches / tau | k=n p-value (largest) |",
             "|---|---|---|---|---|---|---|---|"]
    for scheme in SCHEMES:
        names = [scheme] + [f"{scheme}/{kind}/{source}" for source in SOURCES for kind in ATTACKS]
        for name in names:
            rows = rows_of(runs, name)
            own = [r[scheme] for r in rows]
            label = "marked" if name == scheme else name.split("/", 1)[1]
            probability = statistics.fmean(o["k20"]["acceptance_probability"] for o in own)
            lines.append(
                f"| {LABEL[scheme]} | {label} | {pct([r['test_accuracy'] for r in rows])} | "
                f"{pct([o['accuracy'] for o in own])} | "
                f"{sum(o['k20']['accepted'] for o in own)}/{len(own)} ({probability:.2f}) | "
                f"{sum(o['kn']['accepted'] for o in own)}/{len(own)} | "
                f"{', '.join(str(o['kn']['matches']) for o in own)} / {own[0]['kn']['tau']} | "
                f"{max((o['kn']['p_value'] for o in own), key=float)} |")
    return lines


def innocents_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| key | innocent model | acc on key's items (%) | k=n matches per seed | k=n p-values | "
             "accepted (k=20, k=n) |", "|---|---|---|---|---|---|"]
    for scheme in SCHEMES:
        for name in dict.fromkeys(r["model"] for r in runs if innocent(r, scheme)):
            rows = rows_of(runs, name)
            own = [r[scheme] for r in rows]
            lines.append(f"| {scheme} | {name} | {pct([o['accuracy'] for o in own])} | "
                         f"{', '.join(str(o['kn']['matches']) for o in own)} | "
                         f"{', '.join(o['kn']['p_value'] for o in own)} | "
                         f"{sum(o['k20']['accepted'] for o in own)}, {sum(o['kn']['accepted'] for o in own)} |")
    return lines


def functionality(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per scheme and seed: marked test accuracy minus its recipe's NO-WM, in points."""
    return {scheme: [100 * (m["test_accuracy"] - b["test_accuracy"])
                     for m, b in zip(rows_of(runs, scheme), rows_of(runs, f"nowm-{scheme}"))] for scheme in SCHEMES}


def markdown(runs: list[dict[str, Any]], title: str, command: str, seconds: float) -> str:
    gaps = functionality(runs)
    false_accepts = sum(r[s]["kn"]["accepted"] + r[s]["k20"]["accepted"] for r in runs for s in SCHEMES
                        if innocent(r, s))
    lines = [f"# {title}", "", f"`{command}` — {seconds / 60:.1f} min", "",
             "Accuracy on each scheme's own key; verification through the real protocol at lambda=40 "
             "(k=20: one private draw, with the exact acceptance probability over draws in brackets; k=n: "
             "public).", "", *comparison_table(runs), "",
             "Test accuracy minus NO-WM of the same recipe, per seed (points): "
             + "; ".join(f"{s}: {', '.join(f'{g:+.2f}' for g in gaps[s])}" for s in SCHEMES), "",
             "## Innocent models", "",
             "Every model neither marked with the key nor stolen from the model marked with it.", "",
             *innocents_table(runs), "",
             f"Innocent verifications accepted: {false_accepts}.", ""]
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["marked"] + [f"{kind}\n{source}" for source in SOURCES for kind in ATTACKS]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    for offset, scheme in ((-0.2, "adi"), (0.2, "margin")):
        names = [scheme] + [f"{scheme}/{kind}/{source}" for source in SOURCES for kind in ATTACKS]
        values = [[100 * r[scheme]["accuracy"] for r in rows_of(runs, name)] for name in names]
        bars = ax.bar(x + offset, [statistics.fmean(v) for v in values], 0.4, label=LABEL[scheme],
                      yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values], capsize=3)
        public = rows_of(runs, scheme)[0][scheme]["kn"]
        ax.axhline(public["tau"], color=bars.patches[0].get_facecolor(), linestyle="--", linewidth=1,
                   label=f"{scheme}: k=n threshold ({public['tau']} of {public['k']})")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("accuracy on the key's items (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Jobs in, their results out in the jobs' order; ``on_result(index, result)`` as each one ends.
Runner = Callable[[Sequence[Job], Callable[[int, Any], object] | None], list[Any]]


def _call(job: Job) -> Any:
    return job.fn(*job.args, **job.kwargs)


def pool_runner(pool: ProcessPoolExecutor) -> Runner:
    def run(jobs: Sequence[Job], on_result: Callable[[int, Any], object] | None = None) -> list[Any]:
        futures = {pool.submit(_call, job): i for i, job in enumerate(jobs)}
        results: list[Any] = [None] * len(jobs)
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_result is not None:
                on_result(futures[future], results[futures[future]])
        return results

    return run


def spec_of(world: World, scheme: str, seed: int) -> _marked.Spec:
    """What a marked model of this run is, as evasion.py checks it before using the model as its own."""
    args = world.args
    return _marked.Spec.of(world.task.name, args.subset, seed, scheme, victim_arch(world.task),
                           recipe_of(world, scheme, seed), args.epochs)


def keep(world: World, name: str, seed: int, result: dict[str, Any], model: Classifier) -> None:
    """A marked model, with its keys, into --save-models as soon as it is trained (a run cut off keeps it)."""
    folder = _marked.save(world.args.save_models, spec_of(world, name, seed), world.owners[seed],
                          world.key(name, seed), model, result["train_seconds"])
    print(f"  saved {name} seed {seed} to {folder}", flush=True)


def run_all(world: World, run: Runner) -> list[dict[str, Any]]:
    """Every row: the trainings first, then one job per model measured or stolen,
    through ``run`` (a process pool, or Ray tasks), in a fixed order."""
    seeds = range(world.args.seeds)
    # Longest first, so the workers finish together.
    trained = [(name, seed) for name in ("margin", "adi", "nowm-margin", "nowm-adi") for seed in seeds]

    def finished(index: int, outcome: tuple[dict[str, Any], Classifier]) -> None:
        (name, seed), (result, model) = trained[index], outcome
        print(f"  trained {name} seed {seed} ({result['train_seconds']} s)", flush=True)
        if world.args.save_models is not None and name in SCHEMES:
            keep(world, name, seed, result, model)

    outcomes = run([Job(f"train {name} seed {seed}", train_model, (world, name, seed)) for name, seed in trained],
                   finished)
    # Put once where every job that measures or attacks the model reads it (Ray's object store).
    models = {key: share(model, world.args.ray) for key, (_, model) in zip(trained, outcomes)}
    jobs = [Job(f"measure {name} seed {seed}", measure_trained, (world, models[name, seed], name, seed))
            for name, seed in trained]
    jobs += [Job(f"steal {victim} {kind} {source} seed {seed}", steal,
                 (world, models[victim, seed], victim, source, kind, seed))
             for source in reversed(SOURCES) for kind in ATTACKS for victim in SCHEMES for seed in seeds]
    runs = run(jobs, None)
    for row in runs:
        print(f"  {row['model']:<32} seed {row['seed']}  test {100 * row['test_accuracy']:5.1f}  "
              + "  ".join(f"{s} {100 * row[s]['accuracy']:5.1f} ({'+' if row[s]['kn']['accepted'] else '-'})"
                          for s in SCHEMES), flush=True)
    return runs


def make_keys(task: TaskData, split: QuerySplit, seeds: int, folder: Path | None,
              queries: int = ITEMS) -> tuple[dict[int, SigningKey], dict[tuple[str, int], KeyPair]]:
    """A fresh owner and both schemes' keys for every seed (in ``folder``/seed-N when given), the
    margin key of ``queries`` queries, or those an earlier run wrote there (refused if of another size)."""
    if folder is not None and (folder / "owner.pem").exists():
        raise WmarkError(f"{folder}: holds one key for every seed (an older margin.py); use a new --keys folder")
    owners: dict[int, SigningKey] = {}
    keys: dict[tuple[str, int], KeyPair] = {}
    for seed in range(seeds):
        at = None if folder is None else folder / f"seed-{seed}"
        if at is not None and (at / "owner.pem").exists():
            owners[seed] = load_signing_key(at / "owner.pem")
            for scheme in SCHEMES:
                mk = load_marking_key(at / f"{scheme}.mk", None)
                vk, signed = load_verification_key(at / f"{scheme}.vk.json")
                keys[scheme, seed] = KeyPair(mk, vk, signed)
            if keys["margin", seed].verification_key.n != min(queries, len(split)):
                raise WmarkError(f"{at}: its margin key has {keys['margin', seed].verification_key.n} queries, "
                                 f"not {min(queries, len(split))}; use a new --keys folder")
            continue
        owners[seed] = owner = SigningKey.generate()
        keys["adi", seed] = keygen_derived(owner=owner, n=ITEMS, num_classes=task.num_classes,
                                           input_shape=task.input_shape)
        keys["margin", seed] = keygen_margin(owner=owner, n=min(queries, len(split)), num_classes=task.num_classes,
                                             split=split)
        if at is not None:
            at.mkdir(parents=True, exist_ok=True)
            for scheme in SCHEMES:
                save_marking_key(at / f"{scheme}.mk", keys[scheme, seed].marking_key, None)
                atomic_write(at / f"{scheme}.vk.json", keys[scheme, seed].signed_vk.to_json())
            save_signing_key(at / "owner.pem", owner)
    return owners, keys


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__, epochs_help="override every recipe's epochs (quick checks only)")
    parser.add_argument("--workers", type=int, default=2, help="processes (each trains on one thread; not with --ray)")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="keep the owner's keys in DIR (secret: marking keys in plaintext): written there by "
                             "the first run, read by the next, so that runs compare")
    parser.add_argument("--save-models", type=Path, metavar="DIR",
                        help="keep each seed's marked models (adi, margin) in DIR, a new folder, with their owner's "
                             "keys (secret: marking keys in plaintext) and a manifest, for evasion.py --models-from")
    parser.add_argument("--ascent-steps", type=int, default=MarginOptions().ascent_steps, metavar="N",
                        help="the margin recipe's gradient-ascent steps per batch (default %(default)s; 0 trains "
                             "on the queries as they are)")
    parser.add_argument("--queries", type=int, default=ITEMS, metavar="N",
                        help="the margin key's number of queries (default %(default)s, at most the query split)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be at least 1")
    # The defaults are the parser's: a variant names only what differs from them.
    variant = "".join(f"-{name}{getattr(args, dest)}"
                      for name, dest in (("steps", "ascent_steps"), ("queries", "queries"))
                      if getattr(args, dest) != parser.get_default(dest))
    try:
        if args.save_models is not None:
            # evasion.py would take a margin model of other options for the default one.
            if variant:
                raise WmarkError("--save-models keeps models for evasion.py, which uses the default "
                                 "--ascent-steps and --queries only")
            _marked.check_fresh(args.save_models, "--save-models")
        margin_options(args)  # its own range checks, before anything trains
        pick_device(args.device)
        task = load(args.dataset, args.data_root, args.subset)
        split = query_split(task)
        if not 1 <= args.queries <= len(split):
            raise WmarkError(f"--queries {args.queries}: the query split holds {len(split)} images; "
                             f"give 1 to {len(split)}")
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python benchmarks/margin.py " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        owners, keys = make_keys(task, split, args.seeds, args.keys, args.queries)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{task.describe()}; {args.seeds} seeds, "
          + (f"Ray at {args.ray}" if args.ray else f"{args.workers} workers"), flush=True)
    origin = provenance(list(range(args.seeds)), args.device, args.label)
    start = time.perf_counter()
    world = World({name: _pack(pair) for name, pair in keys.items()}, owners, args)
    try:
        if args.ray:
            runs = run_all(world, lambda jobs, on_result: run_jobs(jobs, ray_address=args.ray, on_result=on_result))
        else:
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
                runs = run_all(world, pool_runner(pool))
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    title = f"Watermarks under model stealing, {task.name}, {args.seeds} seeds"
    report = markdown(runs, title, command.strip(), seconds)
    print()
    print(report)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (("margin" if task.name == "digits" else f"margin-{task.name}") + variant)
    atomic_write(stem.with_suffix(".json"), (json.dumps({
        "provenance": origin,
        "dataset": task.name,
        "seeds": list(range(args.seeds)),
        "items": ITEMS,
        "private_k": PRIVATE_K,
        "recipes": {s: asdict(recipe_of(world, s, 0)) for s in SCHEMES},
        "margin_options": asdict(margin_options(args)),
        "margin_queries": keys["margin", 0].verification_key.n,
        "distillation": DISTILLATION,
        # A fresh owner and keys for every seed.
        "vk_digests": {f"{s}/seed-{seed}": keys[s, seed].verification_key.digest.hex()
                       for s in SCHEMES for seed in range(args.seeds)},
        "query_split": split.source.describe(),
        "models_saved_to": None if args.save_models is None else str(args.save_models),
        "device": args.device,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "seconds": round(seconds, 1),
        "functionality_gap_points": functionality(runs),
        "runs": runs,
    }, indent=2) + "\n").encode())
    atomic_write(stem.with_suffix(".md"), f"{report.rstrip()}\n\n{provenance_markdown(origin)}\n".encode())
    plot(runs, title, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
