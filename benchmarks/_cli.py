"""Options shared by the benchmarks that train models (functionality, robustness, margin)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmark.watermark.device import add_device_argument


def training_parser(description: str | None, *, epochs_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--data-root", metavar="PATH", help="for cifar10: the folder holding cifar-10-batches-py/")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--epochs", type=int, help=epochs_help)
    add_device_argument(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    return parser
