"""Removal attacks: the adversary's toolbox (Adi et al. 2018, Section 5.2; docs/design.md section 5).

Every attack is a function from a model, the adversary's data, a seed and
its parameters to a **new** model; the victim is deep-copied or only queried,
never changed.  The adversary's data is the task's ``adversary`` split
(:mod:`wmark.watermark.datasets`): held out from the owner, so the marked model
never trained on it (337 digits; 49% of the CIFAR test set).

=============  =================================================================
kind           what the adversary does (module)
=============  =================================================================
ftll           fine-tune the output layer on its data (finetune)
ftal           fine-tune all layers
rtll           re-initialise the output layer, train it alone
rtal           re-initialise the output layer, train all layers
prune          zero the smallest-magnitude weights (prune)
distill        train a fresh student on softened logits and true labels (distill)
extract-soft   train a fresh student on the answered class probabilities
extract-hard   train a fresh student on the answered top classes
weight-noise   add Gaussian noise to every weight (noise)
quantise       round the weights to few-bit integers
input-noise    serve the model behind Gaussian input noise
=============  =================================================================

:func:`run_attack` looks an attack up by kind, checks its parameters (each
kind's frozen dataclass, whose defaults are the attack as benchmarked) and
returns an :class:`AttackResult`: the attacked model, and the model to check
the watermark on, which differs only for RTLL and RTAL (the original output
layer plugged back, as the paper does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import torch

from wmark.errors import InvalidInput

# The modules, not their functions, are this package's attributes: the
# attack functions share their modules' names.
from wmark.watermark.attacks import distill, finetune, noise, prune
from wmark.watermark.attacks.common import Training
from wmark.watermark.datasets import LabelledImages, TaskData
from wmark.watermark.modelio import Classifier, check_fits

# (victim, adversary's data, seed, parameters, device) -> a new model
Attack = Callable[[Classifier, LabelledImages, int, Any, Any], Classifier]


@dataclass(frozen=True)
class AttackSpec:
    kind: str
    summary: str
    # A frozen dataclass; its defaults are the attack as benchmarked on digits.
    params: type
    attack: Attack
    # The model the watermark is checked on, from (victim, attacked); None: the attacked one.
    checked: Callable[[Classifier, Classifier], Classifier] | None = None
    # False when the attack changes how a model is served, not its weights.
    saveable: bool = True

    def make_params(self, **values: Any) -> Any:
        known = {f.name for f in fields(self.params)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(f"{self.kind} takes no {', '.join(unknown)} (its parameters: "
                               f"{', '.join(sorted(known)) or 'none'})")
        return self.params(**values)


ATTACKS: dict[str, AttackSpec] = {spec.kind: spec for spec in (
    AttackSpec("ftll", "fine-tune the last layer on the adversary's data (paper: FTLL)", Training,
               partial(finetune.finetune, reinit=False, all_layers=False)),
    AttackSpec("ftal", "fine-tune all layers on the adversary's data (paper: FTAL)", Training,
               partial(finetune.finetune, reinit=False, all_layers=True)),
    AttackSpec("rtll", "re-initialise the last layer and train it alone (paper: RTLL)", Training,
               partial(finetune.finetune, reinit=True, all_layers=False), checked=finetune.plug_back),
    AttackSpec("rtal", "re-initialise the last layer and train all layers (paper: RTAL)", Training,
               partial(finetune.finetune, reinit=True, all_layers=True), checked=finetune.plug_back),
    AttackSpec("prune", "zero the given rate of weights with the smallest magnitudes", prune.Pruning, prune.prune),
    AttackSpec("distill", "distil into a fresh student from softened logits (temperature) and true labels",
               distill.Distillation, distill.distill),
    AttackSpec("extract-soft", "extract a fresh student from the answered class probabilities only", distill.Transfer,
               partial(distill.extract, soft=True)),
    AttackSpec("extract-hard", "extract a fresh student from the answered top classes only", distill.Transfer,
               partial(distill.extract, soft=False)),
    AttackSpec("weight-noise", "add Gaussian noise of sigma times each weight tensor's std", noise.Noise,
               noise.weight_noise),
    AttackSpec("quantise", "round every weight tensor to bits-bit integers (one scale per tensor)", noise.Quantisation,
               noise.quantise),
    AttackSpec("input-noise", "serve behind Gaussian pixel noise of sigma times the pixel range", noise.Noise,
               noise.input_noise, saveable=False),
)}


@dataclass(frozen=True, eq=False)
class AttackResult:
    kind: str
    params: Any
    seed: int
    # What the adversary ends up with (and would deploy).
    attacked: Classifier
    # What the watermark is checked on: ``attacked`` itself, or for RTLL and
    # RTAL a copy with the victim's output layer plugged back.
    checked: Classifier

    @property
    def plugged_back(self) -> bool:
        return self.checked is not self.attacked


def attack_spec(kind: str) -> AttackSpec:
    if kind not in ATTACKS:
        raise InvalidInput(f"unknown attack kind {kind!r} (choose from {', '.join(ATTACKS)})")
    return ATTACKS[kind]


def run_attack(model: Classifier, kind: str, task: TaskData, *, seed: int, device: torch.device | None = None,
               **params: Any) -> AttackResult:
    """Attack ``model`` with ``task``'s adversary split; ``params`` override the kind's defaults."""
    spec = attack_spec(kind)
    chosen = spec.make_params(**params)
    check_fits(model.config, task, what=f"data set {task.name}")
    attacked = spec.attack(model, task.adversary, seed, chosen, device)
    checked = spec.checked(model, attacked) if spec.checked is not None else attacked
    return AttackResult(kind, chosen, seed, attacked, checked)


__all__ = ["ATTACKS", "AttackResult", "AttackSpec", "attack_spec", "run_attack"]
