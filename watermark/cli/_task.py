"""Options shared by the commands that train or measure models: the data set,
the device, and the trigger set of a marking key."""

from __future__ import annotations

import argparse

from wmark.console import load_marking_key
from wmark.errors import InvalidInput
from wmark.protocol.keys import MarkingKey
from wmark.watermark.datasets import DATASETS, TaskData, load_task
from wmark.watermark.device import add_device_argument
from wmark.watermark.margin import split_for_key
from wmark.watermark.triggers import TriggerSet, trigger_set_from_marking_key


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="the task: digits is bundled; the others are read from --data-root")
    parser.add_argument("--data-root", metavar="PATH",
                        help="folder holding cifar-10-batches-py/, cifar-100-python/, or train/ and test/ "
                             "class folders (imagefolder); nothing is downloaded")
    parser.add_argument("--image-size", type=int, default=32, metavar="PX",
                        help="imagefolder: images are resized to PX x PX")
    add_device_argument(parser)


def task_from(args: argparse.Namespace) -> TaskData:
    return load_task(args.dataset, args.data_root, image_size=args.image_size)


def trigger_set_from(path: str, task: TaskData | None = None) -> tuple[TriggerSet, MarkingKey]:
    """The trigger set committed to by the marking key at ``path`` (prompting for its passphrase);
    a margin key's queries are images of ``task``."""
    mk = load_marking_key(path)
    if mk.margin is None:
        return trigger_set_from_marking_key(mk), mk
    if task is None:
        raise InvalidInput(f"{path} is a margin key: its queries are images of {mk.margin.describe()}")
    return trigger_set_from_marking_key(mk, split_for_key(mk.margin, task)), mk


def short_digest(digest: bytes) -> str:
    """How keygen prints a vk digest, so the two can be compared by eye."""
    return digest.hex()[:16] + "…"
