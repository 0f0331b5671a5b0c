"""Per-image CPU cost of the training shapes the studies run, to plan a full study.

Measures, on the first ``--images`` adversary images of the task, with the
model's one CPU thread (:mod:`wmark.watermark.train` keeps small models on one):

* ``full-bB``: one epoch of training every layer at batch size B (100: the
  marking recipe; 50: distillation and extraction; 32: fine-tuning and
  re-training);
* ``last-layer-b32``: one epoch training the output layer alone (FTLL, RTLL);
* ``inference``: scoring the test split (every row of every study, and every
  epoch of a training run that reports test accuracy).

Each is the median over ``--repeats`` runs of CPU seconds per image; the
plan in benchmarks/README.md multiplies them by the image-epochs each study
runs.  The baseline is the marking recipe's batch size, in the same run.

    python benchmarks/costs.py --dataset fashion-mnist

Writes costs-DATASET.json and .md to --out.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from _cli import measurement_setup, provenance, write_result

from wmark.watermark.datasets import LabelledImages
from wmark.watermark.device import torch_threads
from wmark.watermark.embed import start_model
from wmark.watermark.evaluate import score
from wmark.watermark.modelio import Classifier
from wmark.watermark.train import Recipe, train


def cpu_seconds(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    setup = measurement_setup(argv, __doc__, epochs_help="not used here (each measurement is one epoch)",
                              images=3000, repeats=3, repeats_help="runs of each measurement")
    if setup is None:
        return 2
    args, device, task = setup
    data = LabelledImages(task.adversary.images[:args.images], task.adversary.labels[:args.images])
    origin = provenance([0], device, args.label)

    def fit(batch_size: int, last_layer: bool = False) -> Callable[[], object]:
        model = start_model(task, seed=0)
        if last_layer:
            for p in model.net[:-1].parameters():
                p.requires_grad_(False)
        recipe = Recipe(epochs=1, batch_size=batch_size, lr=0.01, triggers_per_batch=0)
        return lambda: train(model, data, recipe, device=device)

    def infer() -> Callable[[], object]:
        model: Classifier = start_model(task, seed=0).to(device)

        def run() -> None:
            with torch_threads(1):  # as inside a training run
                score(model, task.test.images, task.test.labels)
        return run

    shapes: dict[str, tuple[Callable[[], Callable[[], object]], int]] = {
        "full-b100": (lambda: fit(100), len(data)), "full-b50": (lambda: fit(50), len(data)),
        "full-b32": (lambda: fit(32), len(data)), "last-layer-b32": (lambda: fit(32, True), len(data)),
        "inference": (infer, len(task.test)),
    }
    runs = {name: [1000 * cpu_seconds(make()) / images for _ in range(args.repeats)]
            for name, (make, images) in shapes.items()}
    median = {name: statistics.median(r) for name, r in runs.items()}
    table = "\n".join([
        (f"CPU cost per image, {task.name} ({start_model(task).config.arch}, one thread): "
         f"{args.images} training images, {len(task.test)} test images, median of {args.repeats}"),
        "", "| shape | ms CPU per image | against full-b100 |", "|---|---:|---:|",
        *(f"| {name} | {ms:.3f} | {ms / median['full-b100']:.2f}x |" for name, ms in median.items())])
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"costs-{task.name}"
    report = {"provenance": origin, "dataset": task.name, "images": args.images, "repeats": args.repeats,
              "runs_ms_per_image": runs, "median_ms_per_image": median}
    write_result(stem, report, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
