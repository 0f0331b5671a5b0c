"""An untrained ``zk_cnn`` on 8x8 inputs and a ``--zk`` key pair on disk: the start of the
zero-knowledge tests where what is proved does not matter, only that the real ezkl runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tests.support.live import Keys
from wmark.files import atomic_write
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.items import TriggerKind
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import keygen_derived
from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model, save_model

SHAPE = (1, 8, 8)


@dataclass(frozen=True)
class ZkWorld(Keys):
    owner_key: SigningKey

    @property
    def model(self) -> Path:
        return self.root / "model"


def zk_world(root: Path, *, n: int, std: float, shape: tuple[int, int, int] = SHAPE) -> ZkWorld:
    """``n`` derived items of ``shape`` committed for zero knowledge, and the model (seeded, untrained)
    under ``root``; ``std`` is the model's preprocessing scale, which sets how tall its circuit is."""
    from wmark.watermark import zkcircuit  # needs ezkl: the callers skip without it

    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=n, num_classes=10, input_shape=shape,
                          zk=zkcircuit.InputCommitter(TriggerKind.DERIVED, shape))
    save_signing_key(root / "owner.pem", owner)
    save_marking_key(root / "mk.wmk", pair.marking_key, None)
    atomic_write(root / "vk.json", pair.signed_vk.to_json())
    torch.manual_seed(0)
    save_model(root / "model", new_model(ModelConfig("zk_cnn", 10, shape, Preprocessing((0.3,), (std,)))))
    return ZkWorld(root, pair, owner)
