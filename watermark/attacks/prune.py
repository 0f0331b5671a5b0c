"""Magnitude pruning: zero the smallest weights of the whole network.

Global and unstructured (Han et al. 2015): of all weights of convolution and
dense layers together (tensors of two or more dimensions; biases and
normalisation parameters stay), the ``rate`` fraction with the smallest
magnitudes is set to zero, with no fine-tuning afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wmark.errors import InvalidInput
from wmark.watermark.attacks.common import stolen_copy
from wmark.watermark.datasets import LabelledImages
from wmark.watermark.modelio import Classifier


@dataclass(frozen=True)
class Pruning:
    rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.rate < 1:
            raise InvalidInput(f"pruning rate {self.rate} outside [0, 1)")


def prunable(model: Classifier) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.dim() >= 2]


def prune(model: Classifier, data: LabelledImages, seed: int, params: Pruning, device) -> Classifier:
    stolen = stolen_copy(model)
    weights = prunable(stolen)
    magnitudes = torch.cat([w.detach().abs().flatten().cpu() for w in weights])
    # A stable sort breaks ties between equal magnitudes by position, so
    # exactly round(rate * N) weights go, the same ones on every run.
    doomed = torch.argsort(magnitudes, stable=True)[:round(params.rate * len(magnitudes))]
    keep = torch.ones_like(magnitudes)
    keep[doomed] = 0
    with torch.no_grad():
        for w, mask in zip(weights, keep.split([w.numel() for w in weights])):
            w.mul_(mask.view_as(w).to(w.device))
    return stolen
