"""Perturbations that need no data: noise on the weights, coarser weights,
and noise on the inputs at query time.

* **weight noise**: every parameter tensor gets Gaussian noise with standard
  deviation ``sigma`` times the tensor's own standard deviation, so one
  ``sigma`` means the same relative damage in every layer.
* **quantisation**: every parameter tensor is rounded to ``bits``-bit
  integers with one symmetric scale per tensor (``max |w|`` maps to
  ``2^(bits-1) - 1``) and stored back as floats: what a thief serving an
  int8 model answers.
* **input noise**: the weights are untouched; the model is served behind
  Gaussian pixel noise of standard deviation ``sigma`` times the pixel range,
  fresh for every query, hoping a trigger answer breaks before a task answer
  does.  It changes how a model is served, not its weights, so it cannot be
  written as a model directory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wmark.errors import InvalidInput
from wmark.watermark.attacks.common import stolen_copy
from wmark.watermark.datasets import LabelledImages
from wmark.watermark.modelio import Classifier

PIXEL_RANGE = 255.0


@dataclass(frozen=True)
class Noise:
    sigma: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.sigma <= 10:
            raise InvalidInput(f"noise sigma {self.sigma} outside [0, 10]")


@dataclass(frozen=True)
class Quantisation:
    bits: int = 8

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise InvalidInput(f"quantisation to {self.bits} bits: choose 2 to 16")


def weight_noise(model: Classifier, data: LabelledImages, seed: int, params: Noise, device) -> Classifier:
    stolen = stolen_copy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in stolen.parameters():
            if p.numel() > 1:
                noise = torch.randn(p.shape, generator=generator).to(p.device)
                p.add_(noise * (params.sigma * p.std()))
    return stolen


def quantise(model: Classifier, data: LabelledImages, seed: int, params: Quantisation, device) -> Classifier:
    stolen = stolen_copy(model)
    top = 2 ** (params.bits - 1) - 1
    with torch.no_grad():
        for p in stolen.parameters():
            scale = p.abs().max() / top
            if scale > 0:
                p.copy_(torch.round(p / scale).clamp(-top, top) * scale)
    return stolen


class NoisyInputs(Classifier):
    """A model behind Gaussian pixel noise; the noise is drawn from its own
    seeded generator, so the same queries in the same order get the same answers."""

    def __init__(self, model: Classifier, sigma: float, seed: int) -> None:
        super().__init__(model.config, model.net)
        self.sigma = sigma
        self._generator = torch.Generator().manual_seed(seed)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(pixels.shape, generator=self._generator).to(pixels.device)
        return super().forward((pixels.float() + noise * (self.sigma * PIXEL_RANGE)).clamp(0, PIXEL_RANGE))


def input_noise(model: Classifier, data: LabelledImages, seed: int, params: Noise, device) -> Classifier:
    stolen = stolen_copy(model)
    return NoisyInputs(stolen, params.sigma, seed).to(next(stolen.parameters()).device)
