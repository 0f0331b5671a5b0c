"""Fine-tuning and re-training on the adversary's data (Adi et al. 2018, Section 5.2).

As in the paper's code (WatermarkNN's ``fine-tune.py``, lr 0.01, 20 epochs):

* **FTLL**: fine-tune the last layer; only the output layer trains.
* **FTAL**: fine-tune all layers.
* **RTLL**: re-train the last layer; the output layer is re-initialised, then
  only it trains.
* **RTAL**: re-train all layers; the output layer is re-initialised, then
  every layer trains.

A re-trained output layer answers the triggers with whatever it learnt, so
the paper tests the watermark of an RTLL or RTAL model with the original
output layer plugged back (:func:`plug_back`): it asks whether the features
still carry the watermark.  Doing so needs the stolen model's weights; a
verifier querying the deployed model sees the re-trained layer, so both are
reported.
"""

from __future__ import annotations

from torch import nn

from wmark.errors import InvalidInput
from wmark.watermark.attacks.common import Training, stolen_copy
from wmark.watermark.datasets import LabelledImages
from wmark.watermark.modelio import Classifier
from wmark.watermark.train import seeded, train


def output_layer(model: Classifier) -> nn.Linear:
    """The last dense layer with one output per class (``fc`` of a ResNet,
    the final ``Linear`` of the small CNNs and of torchvision's classifiers)."""
    layers = [m for m in model.net.modules() if isinstance(m, nn.Linear) and m.out_features == model.config.num_classes]
    if not layers:
        raise InvalidInput(f"{model.config.arch}: no dense layer with {model.config.num_classes} outputs to re-train")
    return layers[-1]


def finetune(model: Classifier, data: LabelledImages, seed: int, params: Training, device, *,
             reinit: bool, all_layers: bool) -> Classifier:
    stolen = stolen_copy(model)
    head = output_layer(stolen)
    if reinit:
        with seeded(seed):
            head.reset_parameters()
    if not all_layers:
        stolen.requires_grad_(False)
        head.requires_grad_(True)
    try:
        train(stolen, data, params.recipe(seed), device=device)
    finally:
        stolen.requires_grad_(True)
    return stolen


def plug_back(original: Classifier, retrained: Classifier) -> Classifier:
    """A copy of ``retrained`` with ``original``'s output layer (the paper's check after RTLL and RTAL)."""
    checked = stolen_copy(retrained)
    output_layer(checked).load_state_dict(output_layer(original).state_dict())
    return checked
