"""Small helpers for tests that run the real programs."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path

from wmark.files import atomic_write
from wmark.harness.programs import KeyDir
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import KeyPair, keygen_derived
from wmark.protocol.zk import InputHasher
from wmark.watermark.train import Recipe

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class DigitsWorld:
    """A key pair on disk and in memory, and two models trained with (``marked``) and
    without (``plain``, the paper's NO-WM row) its triggers."""

    root: Path
    keys: Path          # holds vk.json, mk.wmk (plaintext), owner.pem
    marked: Path        # model directory
    plain: Path         # model directory
    pair: KeyPair
    owner: SigningKey

    @property
    def vk(self) -> Path:
        return KeyDir(self.keys).vk

    @property
    def mk(self) -> Path:
        return KeyDir(self.keys).mk


def build_digits_world(root: Path, *, arch: str | None = None, recipe: Recipe | None = None,
                       zk: InputHasher | None = None, dataset: str = "digits") -> DigitsWorld:
    """Keys of 100 derived items (with zero-knowledge commitments when ``zk`` is given)
    under ``root/keys``, and models of ``arch`` (default: the task's) on ``dataset``
    (default digits) trained by ``recipe`` (default: the task's) with and without the triggers."""
    from wmark.watermark.datasets import load_task
    from wmark.watermark.embed import default_recipe, embed, start_model
    from wmark.watermark.modelio import save_model
    from wmark.watermark.triggers import trigger_set_from_marking_key

    task = load_task(dataset)
    keys = root / "keys"
    owner = SigningKey.generate()
    save_signing_key(keys / "owner.pem", owner)
    pair = keygen_derived(owner=owner, n=100, num_classes=task.num_classes, input_shape=task.input_shape, zk=zk)
    save_marking_key(keys / "mk.wmk", pair.marking_key, None)
    atomic_write(keys / "vk.json", pair.signed_vk.to_json())

    triggers = trigger_set_from_marking_key(pair.marking_key)
    recipe = recipe or default_recipe(dataset)
    marked = embed(start_model(task, arch=arch), task, triggers, recipe, vk_digest=pair.verification_key.digest)
    save_model(root / "marked", marked.model)
    plain = embed(start_model(task, arch=arch), task, triggers, replace(recipe, triggers_per_batch=0))
    save_model(root / "plain", plain.model)
    return DigitsWorld(root, keys, root / "marked", root / "plain", pair, owner)
