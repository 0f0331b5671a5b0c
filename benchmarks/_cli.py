"""Options and provenance shared by the benchmarks that train models (functionality, robustness, margin, evasion)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from wmark.console import add_ray_argument
from wmark.errors import InvalidInput, WmarkError
from wmark.files import atomic_write
from wmark.watermark.datasets import DATASETS, LabelledImages, TaskData, load_task
from wmark.watermark.device import add_device_argument, pick_device

ROOT = Path(__file__).resolve().parents[1]


def training_parser(description: str | None, *, epochs_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[d for d in DATASETS if d != "imagefolder"], default="digits")
    parser.add_argument("--data-root", metavar="PATH",
                        help="cifar10/cifar100: the folder holding their python archives; fashion-mnist: its IDX "
                             "files (default /usr/share/datasets/fashion-mnist, apt-get install dataset-fashion-mnist)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--epochs", type=int, help=epochs_help)
    add_device_argument(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    parser.add_argument("--label", metavar="TEXT",
                        help="what the run is, written into its results (e.g. 'smoke run, not the study')")
    add_subset_argument(parser)
    add_ray_argument(parser, "run the trainings as Ray tasks")
    return parser


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(seeds: list[int], device: torch.device | str, label: str | None = None) -> dict[str, Any]:
    """Where a result came from: commit, command, seeds, machine and date (docs/design.md section 5)."""
    # Result files rewritten by an earlier study of the same run (benchmarks/fashion_suite.py) are not
    # changes to what produced this one.
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "label": label,
        "commit": _git("rev-parse", "HEAD"),
        "dirty": None if status is None else bool(status),
        "command": " ".join(["python", *sys.argv]),
        "seeds": seeds,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }


def provenance_markdown(info: dict[str, Any]) -> str:
    machine = info["machine"]
    lines = [f"- command: `{info['command']}`",
             f"- commit: {info['commit']}{' (with uncommitted changes)' if info['dirty'] else ''}",
             f"- seeds: {', '.join(map(str, info['seeds']))}",
             f"- machine: {machine['platform']}, {machine['cpus']} CPUs, {machine['device']}"
             + (f" ({machine['cuda']})" if machine["cuda"] else "")
             + f", load average {machine['load_average_at_start']} at start",
             f"- date: {info['date']}"]
    if info.get("label"):
        lines.insert(0, f"- **{info['label']}**")
    return "\n".join(lines)


def add_subset_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subset", type=int, metavar="N",
                        help="smoke runs only: keep the first N images of the train, adversary and test splits")


def subset(task: TaskData, n: int | None) -> TaskData:
    """``task`` with its train, adversary and test splits cut to their first ``n`` images (None: all).

    For smoke runs that prove a benchmark works end to end; their numbers are not the study's."""
    if n is None:
        return task
    if n < 10:
        raise InvalidInput("--subset must keep at least 10 images")

    def cut(data: LabelledImages) -> LabelledImages:
        return LabelledImages(data.images[:n], data.labels[:n])

    return replace(task, train=cut(task.train), adversary=cut(task.adversary), test=cut(task.test))


def load_for(args: argparse.Namespace) -> TaskData:
    return subset(load_task(args.dataset, args.data_root), getattr(args, "subset", None))


def device_and_task(args: argparse.Namespace) -> tuple[torch.device, TaskData] | None:
    """The device and data set the options name, or None with the reason printed (exit 2)."""
    try:
        return pick_device(args.device), load_for(args)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def measurement_setup(argv: list[str] | None, description: str | None, *, epochs_help: str, images: int,
                      repeats: int, repeats_help: str) -> tuple[argparse.Namespace, torch.device, TaskData] | None:
    """The options, device and data set of a cost measurement (``--images`` per run, ``--repeats`` runs),
    or None with the reason printed (exit 2)."""
    parser = training_parser(description, epochs_help=epochs_help)
    parser.add_argument("--images", type=int, default=images, help=f"training images per run (default {images})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"{repeats_help} (default {repeats})")
    args = parser.parse_args(argv)
    loaded = device_and_task(args)
    return None if loaded is None else (args, *loaded)


def write_result(stem: Path, report: dict[str, Any], table: str) -> None:
    """``stem``.json (the report, its provenance inside) and ``stem``.md (the table and where it came from)."""
    atomic_write(stem.with_suffix(".json"), (json.dumps(report, indent=2) + "\n").encode())
    atomic_write(stem.with_suffix(".md"), f"{table}\n\n{provenance_markdown(report['provenance'])}\n".encode())
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
