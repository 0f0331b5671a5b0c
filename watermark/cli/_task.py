"""Options shared by the commands that train or measure models: the data set,
the device, and the trigger set of a marking key."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmark.console import load_marking_key
from wmark.errors import InvalidInput
from wmark.files import read_bounded
from wmark.protocol.keys import MarkingKey
from wmark.protocol.transparency import MAX_RECEIPT_BYTES, Receipt
from wmark.watermark.datasets import DATASETS, FASHION_ROOT, INSTALL_HINT, TaskData, load_task
from wmark.watermark.device import add_device_argument
from wmark.watermark.margin import split_for_key
from wmark.watermark.triggers import TriggerSet, trigger_set_from_marking_key


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="the task: digits is bundled; the others are read from --data-root")
    parser.add_argument("--data-root", metavar="PATH",
                        help="folder holding Fashion-MNIST's four IDX files (default for fashion-mnist: "
                             f"{FASHION_ROOT}, from `{INSTALL_HINT}`), cifar-10-batches-py/, "
                             "cifar-100-python/, or train/ and test/ class folders (imagefolder); "
                             "nothing is downloaded")
    parser.add_argument("--image-size", type=int, default=32, metavar="PX",
                        help="imagefolder: images are resized to PX x PX")
    add_device_argument(parser)


def task_from(args: argparse.Namespace) -> TaskData:
    return load_task(args.dataset, args.data_root, image_size=args.image_size)


def default_receipt_for(mk_path: str) -> Path:
    """Where keygen and register leave a key pair's receipt: DIR/vk.receipt.json beside DIR/mk.wmk."""
    return Path(mk_path).with_name("vk.receipt.json")


def registered_beta(mk: MarkingKey, mk_path: str, receipt_path: str | None) -> bytes | None:
    """A registry-bound key's beacon output, from its receipt; None for a key with committed labels.

    The owner's own receipt, which ``wmark register`` checked against the
    log's key: here it must name this key and carry a beacon whose VRF proof
    holds (docs/design.md section 4b).
    """
    if not mk.registry_bound:
        if receipt_path is not None:
            raise InvalidInput(f"--receipt: {mk_path} has committed labels; a receipt does not change them")
        return None
    path = Path(receipt_path) if receipt_path else default_receipt_for(mk_path)
    if not path.exists():
        raise InvalidInput(f"{mk_path}: its trigger labels are drawn by the registry when the key is registered, "
                           f"and {path} does not exist: register first (wmark register --vk "
                           f"{Path(mk_path).with_name('vk.json')} --log DIR), then embed")
    receipt = Receipt.from_json(read_bounded(path, max_bytes=MAX_RECEIPT_BYTES, what="receipt"), what=str(path))
    if receipt.entry.vk_digest != mk.vk_digest:
        raise InvalidInput(f"{path}: registers another verification key than {mk_path}'s")
    if receipt.beacon is None:
        raise InvalidInput(f"{path}: the log that issued it has no beacon, so it cannot fix {mk_path}'s labels; "
                           f"register with a current log")
    return receipt.beacon.verify(mk.vk_digest, None, what=f"{path}: beacon")


def trigger_set_from(path: str, task: TaskData | None = None,
                     receipt: str | None = None) -> tuple[TriggerSet, MarkingKey]:
    """The trigger set committed to by the marking key at ``path`` (prompting for its passphrase);
    a margin key's queries are images of ``task``; a registry-bound key's labels come from
    ``receipt`` (default: beside the key)."""
    mk = load_marking_key(path)
    beta = registered_beta(mk, path, receipt)
    if mk.margin is None:
        return trigger_set_from_marking_key(mk, beta=beta), mk
    if task is None:
        raise InvalidInput(f"{path} is a margin key: its queries are images of {mk.margin.describe()}")
    return trigger_set_from_marking_key(mk, split_for_key(mk.margin, task), beta=beta), mk


def short_digest(digest: bytes) -> str:
    """How keygen prints a vk digest, so the two can be compared by eye."""
    return digest.hex()[:16] + "…"
