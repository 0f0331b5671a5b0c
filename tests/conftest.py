"""Shared fixtures: one derived key pair and two digits models, trained once per run.

``marked`` carries the key's watermark; ``plain`` is the same recipe without
triggers (the paper's NO-WM row), so it plays the innocent model.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from protocol.identity import SigningKey, save_signing_key
from protocol.keyfile import save_marking_key
from protocol.keygen import KeyPair, keygen_derived
from protocol.files import atomic_write

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@dataclass(frozen=True)
class DigitsWorld:
    root: Path
    keys: Path          # holds vk.json, mk.wmk (plaintext), owner.pem
    marked: Path        # model directory
    plain: Path         # model directory
    pair: KeyPair
    owner: SigningKey

    @property
    def vk(self) -> Path:
        return self.keys / "vk.json"

    @property
    def mk(self) -> Path:
        return self.keys / "mk.wmk"


@pytest.fixture(scope="session")
def digits_world(tmp_path_factory) -> DigitsWorld:
    from watermark.datasets import load_task
    from watermark.embed import default_recipe, embed, start_model
    from watermark.modelio import save_model
    from watermark.triggers import trigger_set_from_marking_key

    root = tmp_path_factory.mktemp("digits-world")
    keys = root / "keys"
    owner = SigningKey.generate()
    save_signing_key(keys / "owner.pem", owner)
    pair = keygen_derived(owner=owner, n=100, num_classes=10, input_shape=(1, 8, 8))
    save_marking_key(keys / "mk.wmk", pair.marking_key, None)
    atomic_write(keys / "vk.json", pair.signed_vk.to_json())

    task = load_task("digits")
    triggers = trigger_set_from_marking_key(pair.marking_key)
    recipe = default_recipe("digits")
    marked = embed(start_model(task), task, triggers, recipe, vk_digest=pair.verification_key.digest)
    save_model(root / "marked", marked.model)
    save_model(root / "plain", embed(start_model(task), task, triggers, replace(recipe, triggers_per_batch=0)).model)
    return DigitsWorld(root, keys, root / "marked", root / "plain", pair, owner)


@pytest.fixture
def fresh_copy(tmp_path):
    """Copy a file or directory into this test's tmp_path, so a test can change it."""
    def copy(path: Path) -> Path:
        target = tmp_path / path.name
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copy(path, target)
        return target
    return copy
