"""Querying a model and measuring it: test accuracy and trigger-set accuracy.

:func:`predict` is the one way pixels reach a model outside training: uint8
images in, logits out, through the preprocessing in the model's config.  The
verifier queries suspect models with trigger images through exactly this path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from wmark.errors import InvalidInput
from wmark.watermark import layout
from wmark.watermark.datasets import LabelledImages
from wmark.watermark.modelio import Classifier
from wmark.watermark.triggers import TriggerSet

PREDICT_BATCH = 500
TOP_K = 5


def predict(model: Classifier, images: np.ndarray, *, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Logits (float32, N x L) for uint8 images (N x C x H x W), on the model's device."""
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != model.config.input_shape:
        raise InvalidInput(f"the model takes uint8 N x {model.config.shape_text} images, "
                           f"got {images.dtype} {'x'.join(map(str, images.shape))}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            chunks = [model(layout.for_device(torch.from_numpy(images[i:i + batch_size]).to(device), device))
                      .float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, model.config.num_classes), dtype=np.float32)
    return torch.cat(chunks).numpy()


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> int:
    """How many rows have their label among the ``k`` largest logits."""
    if k == 1:
        return int((logits.argmax(axis=1) == labels).sum())
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


@dataclass(frozen=True)
class Score:
    """Accuracy on one set of labelled images (top-5 where there are more than 5 classes)."""

    correct: int
    total: int
    top5: float | None

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy}


@dataclass(frozen=True)
class Evaluation:
    """A model's accuracy on task images and on a trigger set (None when none was given)."""

    test: Score
    triggers: Score | None


def score(model: Classifier, images: np.ndarray, labels: np.ndarray) -> Score:
    if labels.ndim != 1:
        raise InvalidInput("accuracy needs class labels, not class probabilities")
    logits = predict(model, images)
    top5 = top_k_correct(logits, labels, TOP_K) / len(labels) if logits.shape[1] > TOP_K and len(labels) else None
    return Score(top_k_correct(logits, labels), len(labels), top5)


def evaluate(model: Classifier, test: LabelledImages, triggers: TriggerSet | None = None) -> Evaluation:
    return Evaluation(score(model, test.images, test.labels),
                      score(model, triggers.images, triggers.labels) if triggers is not None else None)
