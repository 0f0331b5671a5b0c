"""Embedding overhead: the training loop with and without trigger images, same recipe otherwise.

Runs ``train`` on the first ``--images`` training images of the task, one
epoch per run, alternating NO-WM (``triggers_per_batch=0``) and marked
(the recipe's ``triggers_per_batch``) runs ``--repeats`` times each, so that
a change in the machine's load hits both alike; reports the median CPU and
wall time of each and the marked runs' overhead.  The baseline is NO-WM in
the same process and run.

    python benchmarks/overhead.py --dataset fashion-mnist          # 5000 images x 5 repeats
    python benchmarks/overhead.py --dataset digits --images 1000   # digits' recipe: 8 triggers per 50

Writes overhead-DATASET.json and .md to --out.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, replace

import numpy as np
from _cli import measurement_setup, provenance, write_result

from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.hazmat.sampling import derive_label
from wmark.protocol.patterns import render_many
from wmark.watermark.datasets import LabelledImages
from wmark.watermark.embed import default_recipe, start_model
from wmark.watermark.train import train
from wmark.watermark.triggers import TriggerSet

ITEM_TAG = "wmark/bench/overhead/item/v1"


def main(argv: list[str] | None = None) -> int:
    setup = measurement_setup(argv, __doc__, epochs_help="epochs per run (default 1)", images=5000, repeats=5,
                              repeats_help="runs of each kind, alternating")
    if setup is None:
        return 2
    args, device, task = setup
    data = LabelledImages(task.train.images[:args.images], task.train.labels[:args.images])
    seeds = [tagged_hash(ITEM_TAG, i.to_bytes(4, "big")) for i in range(100)]
    triggers = TriggerSet(render_many(seeds, task.input_shape),
                          np.array([derive_label(s, task.num_classes) for s in seeds], dtype=np.int64),
                          task.num_classes)
    marked = replace(default_recipe(task.name), epochs=args.epochs or 1)
    plain = replace(marked, triggers_per_batch=0)
    origin = provenance([0], device, args.label)
    times: dict[str, list[tuple[float, float]]] = {"NO-WM": [], "WM": []}
    for repeat in range(args.repeats):
        for name, recipe in (("NO-WM", plain), ("WM", marked)):
            model = start_model(task, seed=0)
            cpu, wall = time.process_time(), time.perf_counter()
            train(model, data, recipe, triggers=triggers, device=device)
            times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
            print(f"  {repeat} {name:<6} cpu {times[name][-1][0]:6.2f} s  wall {times[name][-1][1]:6.2f} s", flush=True)
    median = {name: {"cpu": statistics.median(t[0] for t in runs), "wall": statistics.median(t[1] for t in runs)}
              for name, runs in times.items()}
    overhead = {kind: 100 * (median["WM"][kind] / median["NO-WM"][kind] - 1) for kind in ("cpu", "wall")}
    inherent = 100 * marked.triggers_per_batch / marked.batch_size
    table = "\n".join([
        f"Embedding overhead, {task.name}: {args.images} images, {marked.epochs} epoch(s) a run, "
        f"{args.repeats} alternating runs each, batches of {marked.batch_size} + {marked.triggers_per_batch} triggers",
        "", "| run | median CPU (s) | median wall (s) |", "|---|---:|---:|",
        *(f"| {name} | {m['cpu']:.2f} | {m['wall']:.2f} |" for name, m in median.items()),
        "", f"Overhead: {overhead['cpu']:+.1f} % CPU, {overhead['wall']:+.1f} % wall "
            f"(the trigger images alone add {inherent:.1f} % to each batch)."])
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"overhead-{task.name}"
    report = {"provenance": origin, "dataset": task.name, "images": args.images, "repeats": args.repeats,
              "recipe": asdict(marked), "runs": {k: [{"cpu": c, "wall": w} for c, w in v] for k, v in times.items()},
              "median": median, "overhead_percent": overhead, "inherent_percent": inherent}
    write_result(stem, report, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
