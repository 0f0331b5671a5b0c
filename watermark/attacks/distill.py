"""Knowledge distillation and model extraction: a fresh student learns from the victim's answers.

Both train a newly initialised network (:func:`~wmark.watermark.modelio.new_model`,
of the victim's architecture or another, smaller one) on a transfer set: the
adversary's images plus ``copies`` noisy copies of each (Gaussian pixel noise
of ``noise`` times the pixel range), since a few hundred images teach a student
less than the victim knows.  The victim is consulted only through
:func:`~wmark.watermark.evaluate.predict` on those images; the student never sees a
victim parameter.  They differ in what the victim reveals and what else the
adversary knows:

* **distillation** (Hinton et al. 2015): the victim's logits, softened at
  temperature ``T``, and the adversary's true labels.  The target is
  ``alpha * softmax(logits / T) + (1 - alpha) * onehot(label)``, matched at
  temperature ``T`` with the loss scaled by ``T^2``
  (:attr:`~wmark.watermark.train.Recipe.temperature`).  This is Hinton's weighted
  sum of a soft and a hard cross-entropy except that the hard term is taken at
  ``T`` instead of 1: one forward pass has one temperature.
* **extraction** (Tramèr et al. 2016): only what a prediction API answers, the
  class probabilities (``soft``) or just the top class (``hard``), and no
  labels of the adversary's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from wmark.errors import InvalidInput
from wmark.watermark.archsizes import check_arch
from wmark.watermark.attacks.common import Training
from wmark.watermark.attacks.noise import PIXEL_RANGE
from wmark.watermark.datasets import LabelledImages
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import Classifier, ModelConfig, new_model
from wmark.watermark.train import seeded, train


@dataclass(frozen=True)
class Transfer(Training):
    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 50
    # The student's architecture (None: the victim's).
    arch: str | None = None
    copies: int = 3
    noise: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch is not None:
            check_arch(self.arch)
        if not 0 <= self.copies <= 100 or not 0 <= self.noise <= 1:
            raise InvalidInput(f"transfer set: copies {self.copies} outside [0, 100] or noise {self.noise} "
                               f"outside [0, 1]")


@dataclass(frozen=True)
class Distillation(Transfer):
    # The T^2-scaled loss starts with gradients up to T times those at T = 1:
    # at extraction's 0.05 the student diverged (digits, T = 4).
    lr: float = 0.01
    temperature: float = 4.0
    # Weight of the teacher's softened answers against the true labels.
    alpha: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        self.recipe(0, temperature=self.temperature)
        if not 0 <= self.alpha <= 1:
            raise InvalidInput(f"distillation alpha {self.alpha} outside [0, 1]")


def transfer_images(images: np.ndarray, params: Transfer, seed: int) -> np.ndarray:
    """The adversary's images followed by ``params.copies`` noisy copies of them."""
    rng = np.random.default_rng(seed)
    noisy = [np.clip(np.rint(images + rng.normal(0.0, params.noise * PIXEL_RANGE, images.shape)), 0, PIXEL_RANGE)
             .astype(np.uint8) for _ in range(params.copies)]
    return np.concatenate([images, *noisy])


def fresh_student(victim: ModelConfig, arch: str | None, seed: int) -> Classifier:
    """A newly initialised network for the victim's inputs and classes: all an API reveals."""
    with seeded(seed):
        return new_model(replace(victim, arch=arch or victim.arch, vk_digest=None))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits) / temperature, dim=1).numpy()


def distill(model: Classifier, data: LabelledImages, seed: int, params: Distillation, device) -> Classifier:
    images = transfer_images(data.images, params, seed)
    teacher = softmax(predict(model, images), params.temperature)
    truth = np.eye(model.config.num_classes, dtype=np.float32)[np.tile(data.labels, params.copies + 1)]
    targets = (params.alpha * teacher + (1 - params.alpha) * truth).astype(np.float32)
    student = fresh_student(model.config, params.arch, seed)
    train(student, LabelledImages(images, targets), params.recipe(seed, temperature=params.temperature),
          device=device)
    return student


def extract(model: Classifier, data: LabelledImages, seed: int, params: Transfer, device, *,
            soft: bool) -> Classifier:
    """``data.labels`` is never read: the adversary learns only from the answers."""
    images = transfer_images(data.images, params, seed)
    answers = predict(model, images)
    labels = softmax(answers).astype(np.float32) if soft else answers.argmax(axis=1).astype(np.int64)
    student = fresh_student(model.config, params.arch, seed)
    train(student, LabelledImages(images, labels), params.recipe(seed), device=device)
    return student
