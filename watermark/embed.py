"""Mark (Adi et al. 2018, Section 4): train a model that does its task and
classifies every trigger image as its trigger label.

Three ways, the three rows of the paper's functionality table:

* FROMSCRATCH: a fresh model trained on the task with trigger images mixed
  into every batch;
* PRETRAINED: an existing model (``base``) fine-tuned the same way;
* NO-WM: the same recipe with no trigger images (``triggers_per_batch=0``),
  the baseline a watermark must not degrade.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from wmark.errors import InvalidInput
from wmark.watermark.datasets import TaskData
from wmark.watermark.evaluate import Evaluation, evaluate
from wmark.watermark.modelio import Classifier, ModelConfig, Preprocessing, check_fits, new_model
from wmark.watermark.train import EpochStats, Recipe, fit_trigger_passes, seeded, train
from wmark.watermark.triggers import TriggerSet

DEFAULT_ARCH = {"digits": "small_cnn", "fashion-mnist": "fashion_cnn", "cifar10": "resnet18_cifar", "cifar100": "resnet18_cifar",
                "imagefolder": "resnet18_cifar"}

# Every embedding recipe shows each trigger at least once an epoch
# (min_trigger_passes=1): its own data set already does (digits 20 batches x 8,
# the others hundreds of batches x 2, for 100 triggers), so only a smaller
# training set, such as a user's image folder, gets more triggers a batch.
#
# Digits: 1000 training images make 20 batches of 50 an epoch; 8 trigger
# images a batch show each of 100 triggers 1.6 times an epoch, enough for the
# small CNN to learn all of them alongside the task in 30 epochs (seconds).
DIGITS_RECIPE = Recipe(epochs=30, batch_size=50, lr=0.05, lr_step=20, triggers_per_batch=8, min_trigger_passes=1)
# Fine-tuning a trained model: 20 epochs at the same rate, cut after 10,
# teach it the triggers without losing test accuracy (3 seeds, see benchmarks/).
DIGITS_FINETUNE = Recipe(epochs=20, batch_size=50, lr=0.05, lr_step=10, triggers_per_batch=8, min_trigger_passes=1)
# Fashion-MNIST: the paper's 2 triggers per batch of 100, and a schedule
# short enough for two CPU cores (benchmarks/results/fashion-embed.md): 500
# batches an epoch show each of 100 triggers 10 times, 80 times in 8 epochs.
FASHION_RECIPE = Recipe(epochs=8, batch_size=100, lr=0.05, lr_milestones=(5, 7), triggers_per_batch=2,
                        min_trigger_passes=1)
# Fine-tuning a trained model: a tenth of the rate, where FASHION_RECIPE's
# schedule is after its first cut, for 3 epochs (30 showings of each trigger).
FASHION_FINETUNE = Recipe(epochs=3, batch_size=100, lr=0.005, triggers_per_batch=2, min_trigger_passes=1)
# The paper's CIFAR ResNet-18 recipe (WatermarkNN's train.py).
PAPER_RECIPE = Recipe(epochs=60, batch_size=100, lr=0.1, momentum=0.9, weight_decay=5e-4, lr_step=20,
                      lr_gamma=0.1, triggers_per_batch=2, augment=True, min_trigger_passes=1)
# The paper gives no separate fine-tuning recipe; this one starts where
# PAPER_RECIPE's schedule is by its second step, so a trained model is not
# thrown off.  It ends at that rate, not after a cut, so the BatchNorm
# statistics are recomputed for the final weights (precise BN): the running
# averages lag weights that still move, by most on a small image folder.
PAPER_FINETUNE = Recipe(epochs=20, batch_size=100, lr=0.01, triggers_per_batch=2, augment=True, min_trigger_passes=1,
                        recalibrate_bn=True)


def default_recipe(dataset: str, *, pretrained: bool = False) -> Recipe:
    """The recipe ``wmark embed`` uses unless told otherwise."""
    if dataset == "digits":
        return DIGITS_FINETUNE if pretrained else DIGITS_RECIPE
    if dataset == "fashion-mnist":
        return FASHION_FINETUNE if pretrained else FASHION_RECIPE
    return PAPER_FINETUNE if pretrained else PAPER_RECIPE


@dataclass(frozen=True, eq=False)
class EmbedResult:
    model: Classifier
    history: list[EpochStats]
    evaluation: Evaluation


def start_model(task: TaskData, *, arch: str | None = None, base: Classifier | None = None,
                seed: int = 0) -> Classifier:
    """The model to train: ``base`` (checked against the task) or a fresh,
    seeded one of architecture ``arch`` (default: the task's)."""
    if base is not None:
        if arch is not None and arch != base.config.arch:
            raise InvalidInput(f"the pretrained model is a {base.config.arch}, not a {arch}")
        check_fits(base.config, task, what=f"data set {task.name}")
        return base
    config = ModelConfig(arch or DEFAULT_ARCH[task.name], task.num_classes, task.input_shape,
                         Preprocessing(task.mean, task.std))
    with seeded(seed):
        return new_model(config)


def embed(
    model: Classifier,
    task: TaskData,
    triggers: TriggerSet | None,
    recipe: Recipe,
    *,
    vk_digest: bytes | None = None,
    device: torch.device | None = None,
    progress: bool = False,
) -> EmbedResult:
    """Train ``model`` (in place) on ``task``, mixing in ``triggers`` unless
    ``recipe.triggers_per_batch`` is 0, in which case they are only scored.

    ``vk_digest`` names the key the triggers come from; it goes into the
    model's config when they are embedded.  The recipe's triggers a batch are
    raised to its ``min_trigger_passes`` (:func:`fit_trigger_passes`).
    """
    check_fits(model.config, task, what=f"data set {task.name}")
    if triggers is not None:
        check_fits(model.config, triggers, what="the marking key's trigger set")
        recipe = fit_trigger_passes(recipe, len(task.train), len(triggers))
        if recipe.triggers_per_batch > 0:
            model.config = replace(model.config, vk_digest=vk_digest)
    history = train(model, task.train, recipe, triggers=triggers, test=task.test, device=device,
                    progress=progress)
    return EmbedResult(model, history, evaluate(model, task.test, triggers))
