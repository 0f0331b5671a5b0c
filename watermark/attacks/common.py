"""What the attacks share: the thief's copy of a model, and training parameters."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from wmark.watermark.modelio import Classifier
from wmark.watermark.train import Recipe


def stolen_copy(model: Classifier) -> Classifier:
    """A deep copy to attack, so the victim is never changed.

    It records no watermark key: a thief does not advertise the owner's.
    """
    stolen = copy.deepcopy(model)
    stolen.config = replace(stolen.config, vk_digest=None)
    return stolen


@dataclass(frozen=True)
class Training:
    """The adversary's training run: SGD with momentum 0.9 and weight decay
    5e-4 (:class:`~wmark.watermark.train.Recipe`'s defaults), constant rate, no triggers."""

    epochs: int = 20
    lr: float = 0.01
    batch_size: int = 32

    def __post_init__(self) -> None:
        self.recipe(0)  # refuses impossible values now, not after a long run starts

    def recipe(self, seed: int, **extra: Any) -> Recipe:
        return Recipe(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, triggers_per_batch=0, seed=seed,
                      **extra)
