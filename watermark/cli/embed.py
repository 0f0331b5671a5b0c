"""``wmark embed``: Mark of Adi et al. (2018), Section 4."""

from __future__ import annotations

import argparse
from dataclasses import replace

from protocol.console import add_command
from protocol.errors import InvalidInput

from ..device import pick_device
from ..embed import DEFAULT_ARCH, default_recipe, embed, start_model
from ..modelio import check_fits, check_writable, load_model, save_model
from ..train import Recipe
from ._task import add_data_arguments, short_digest, task_from, trigger_set_from

EPILOG = """\
examples:
  wmark embed --mk keys/mk.wmk --out models/marked             # digits, from scratch (seconds)
  wmark embed --mk keys/mk.wmk --pretrained models/plain --out models/marked-ft
  wmark embed --no-watermark --out models/plain                # the same recipe, no triggers
  wmark embed --mk keys/mk.wmk --dataset cifar10 --data-root ~/data --out models/cifar

Each batch of task images gets --triggers-per-batch trigger images from the
marking key, cycling through the whole set (the paper adds 2 to each batch
of 100). Default recipes: digits trains the small CNN for 30 epochs (SGD,
lr 0.05, x0.1 after 20; fine-tuning: 20 epochs, x0.1 after 10); the other
data sets train the paper's ResNet-18 (SGD lr 0.1, momentum 0.9, weight
decay 5e-4, x0.1 every 20 epochs, 60 epochs, batches of 100 + 2 triggers,
random crops and flips; fine-tuning: 20 epochs at lr 0.01).

Writes MODEL_DIR/model.safetensors and MODEL_DIR/model.json (architecture,
classes, input shape, preprocessing, the vk digest it was marked with), all
at once: an interrupted run leaves no model behind. Runs are seeded and, on
the CPU, repeatable; CUDA is used when present."""

RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "triggers_per_batch")


def register(subparsers) -> None:
    p = add_command(subparsers, "embed", help="train or fine-tune a model that carries the watermark",
                    description="Train a model on a task with the marking key's trigger images mixed into "
                                "every batch, so that it does its task and also answers each trigger image "
                                "with the trigger label: the watermark (Adi et al. 2018, Mark).",
                    epilog=EPILOG, func=run)
    p.add_argument("--mk", metavar="FILE", help="the marking key from `wmark keygen` (DIR/mk.wmk); "
                                                "with --no-watermark its triggers are only scored")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to")
    p.add_argument("--pretrained", metavar="MODEL_DIR",
                   help="fine-tune this model instead of training from scratch")
    p.add_argument("--no-watermark", action="store_true",
                   help="train the same recipe without trigger images (a baseline)")
    add_data_arguments(p)
    p.add_argument("--arch", default=argparse.SUPPRESS,
                   help=f"architecture: small_cnn, resnet18_cifar or torchvision:NAME (default: {_default_archs()})")
    p.add_argument("--epochs", type=int, default=argparse.SUPPRESS,
                   help="passes over the training data (default: the data set's recipe)")
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="task images per batch (default: the data set's recipe)")
    p.add_argument("--lr", type=float, default=argparse.SUPPRESS,
                   help="initial learning rate (default: the data set's recipe)")
    p.add_argument("--triggers-per-batch", type=int, default=argparse.SUPPRESS, metavar="K",
                   help="trigger images added to each batch (default: the data set's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and batch order")
    p.add_argument("--force", action="store_true", help="replace an existing model in MODEL_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _default_archs() -> str:
    by_arch: dict[str, list[str]] = {}
    for dataset, arch in DEFAULT_ARCH.items():
        by_arch.setdefault(arch, []).append(dataset)
    return ", ".join(f"{arch} for {'/'.join(datasets)}" for arch, datasets in by_arch.items())


def recipe_from(args: argparse.Namespace) -> Recipe:
    recipe = default_recipe(args.dataset, pretrained=args.pretrained is not None)
    overrides = {name: getattr(args, name) for name in RECIPE_OPTIONS if hasattr(args, name)}
    recipe = replace(recipe, seed=args.seed, **overrides)
    return replace(recipe, triggers_per_batch=0) if args.no_watermark else recipe


def run(args: argparse.Namespace) -> int:
    if args.mk is None and not args.no_watermark:
        raise InvalidInput("--mk FILE is needed to embed a watermark (or pass --no-watermark)")
    check_writable(args.out, overwrite=args.force)
    recipe = recipe_from(args)
    device = pick_device(args.device)
    task = task_from(args)
    triggers, mk = trigger_set_from(args.mk) if args.mk else (None, None)
    base = load_model(args.pretrained) if args.pretrained else None

    model = start_model(task, arch=getattr(args, "arch", None), base=base, seed=recipe.seed)
    if triggers is not None:
        check_fits(model.config, triggers, what=f"the trigger set of {args.mk}")

    print(f"data      {task.describe()}")
    if mk is not None:
        print(f"key       {args.mk}: {len(triggers)} {mk.kind.value} triggers, vk digest "
              f"{short_digest(mk.vk_digest)}{' (scored, not embedded)' if args.no_watermark else ''}")
    start = f"fine-tuning {args.pretrained}" if base else "from scratch"
    print(f"model     {model.config.describe()}, {start}, on {device}")
    print(f"recipe    {_describe(recipe)}")
    result = embed(model, task, triggers, recipe, vk_digest=mk.vk_digest if mk else None, device=device,
                   progress=not args.quiet)
    save_model(args.out, result.model, overwrite=args.force)
    marked = result.model.config.vk_digest
    print(f"wrote     {args.out}" + (f" (marked with vk {short_digest(marked)})" if marked else " (no watermark)"))
    final = f"test accuracy {result.evaluation.test.accuracy:.4f}"
    if result.evaluation.triggers is not None:
        final += f", trigger accuracy {result.evaluation.triggers.accuracy:.4f}"
    print(final)
    return 0


def _describe(recipe: Recipe) -> str:
    schedule = f" (x{recipe.lr_gamma:g} every {recipe.lr_step} epochs)" if recipe.lr_step else ""
    triggers = f" + {recipe.triggers_per_batch} triggers" if recipe.triggers_per_batch else " (no triggers)"
    return (f"{recipe.epochs} epoch{'s' if recipe.epochs != 1 else ''}, batches of {recipe.batch_size}{triggers}, "
            f"{recipe.optimizer} lr {recipe.lr:g}{schedule}{', crops and flips' if recipe.augment else ''}, "
            f"seed {recipe.seed}")
