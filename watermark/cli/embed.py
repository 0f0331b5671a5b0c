"""``wmark embed``: Mark of Adi et al. (2018), Section 4, or of Kim et al.'s margin scheme (2023)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from fractions import Fraction

import torch

from wmark.console import add_command, checked_model
from wmark.errors import InvalidInput
from wmark.protocol.decision import DEFAULT_LAMBDA, lowest_passing_accuracy, parse_probability
from wmark.protocol.items import TriggerKind
from wmark.watermark.archsizes import OWN_ARCHITECTURES
from wmark.watermark.cli._task import add_data_arguments, short_digest, task_from, trigger_set_from
from wmark.watermark.device import pick_device
from wmark.watermark.distributed import World, local_device, process_group
from wmark.watermark.embed import DEFAULT_ARCH, default_recipe, embed, start_model
from wmark.watermark.margin import MarginOptions, embed_margin, margin_recipe
from wmark.watermark.modelio import check_fits, check_writable, load_model, save_model
from wmark.watermark.train import Recipe, fit_trigger_passes

EPILOG = """\
examples:
  wmark embed --mk keys/mk.wmk --out models/marked             # digits, from scratch (seconds)
  wmark embed --mk keys/mk.wmk --pretrained models/plain --out models/marked-ft
  wmark embed --no-watermark --out models/plain                # the same recipe, no triggers
  wmark embed --mk keys/mk.wmk --dataset fashion-mnist --out models/fashion   # Debian's files
  wmark embed --mk keys/mk.wmk --dataset cifar10 --data-root ~/data --out models/cifar
  wmark embed --scheme margin --mk margin-keys/mk.wmk --out models/margin   # Kim et al. 2023

Each batch of task images gets --triggers-per-batch trigger images from the
marking key, cycling through the whole set (the paper adds 2 to each batch
of 100). Without --triggers-per-batch, a training set too small to show every
trigger once an epoch that way (an image folder of a few hundred images) gets
as many more a batch as that takes, and says so. Default recipes: digits
trains the small CNN for 30 epochs (SGD, lr 0.05, x0.1 after 20;
fine-tuning: 20 epochs, x0.1 after 10);
fashion-mnist trains fashion_cnn for 8 epochs (SGD lr 0.05, momentum 0.9,
weight decay 5e-4, x0.1 at epochs 5 and 7, batches of 100 + 2 triggers;
fine-tuning: 3 epochs at lr 0.005); the other data sets train the paper's ResNet-18 (SGD lr 0.1, momentum 0.9, weight
decay 5e-4, x0.1 every 20 epochs, 60 epochs, batches of 100 + 2 triggers,
random crops and flips; fine-tuning: 20 epochs at lr 0.01, then the
BatchNorm statistics recomputed for the final weights). A final trigger
accuracy too low for a verification at k = 20 is warned about.

--scheme margin (the scheme of a key from `wmark keygen --kind margin`, and
the default for one) trains Kim et al.'s query loss instead: every batch
also takes --queries-per-batch queries, perturbs them by --ascent-steps
steps of signed-gradient ascent of --step-size on their loss, and adds
their loss weighted by --margin-lambda (defaults: the authors' 25, 5, 1/255
and 0.1). Its recipes: digits trains the small CNN for 35 epochs (SGD lr
0.05, momentum 0.9, weight decay 1e-4, x0.1 after 25); the other data sets
the authors' (SGD lr 0.1, no momentum, weight decay 1e-4, x0.1 at epochs
100 and 150, 200 epochs, batches of 128, crops and flips).

Writes MODEL_DIR/model.safetensors and MODEL_DIR/model.json (architecture,
classes, input shape, preprocessing, the vk digest it was marked with), all
at once: an interrupted run leaves no model behind. Runs are seeded and, on
the CPU, repeatable; CUDA is used when present."""

RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "triggers_per_batch")
# MarginOptions field -> its option
MARGIN_OPTIONS = {"ascent_steps": "--ascent-steps", "step_size": "--step-size",
                  "queries_per_batch": "--queries-per-batch", "lam": "--margin-lambda"}
SCHEMES = ("adi", "margin")
# The sample size the end-of-embedding check assumes (the README's walk-through's).
VERIFY_K = 20


def register(subparsers) -> None:
    p = add_command(subparsers, "embed",
                    description="Train a model on a task with the marking key's trigger images mixed into "
                                "every batch, so that it does its task and also answers each trigger image "
                                "with the trigger label: the watermark (Adi et al. 2018, Mark).",
                    epilog=EPILOG, func=run)
    p.add_argument("--mk", metavar="FILE", help="the marking key from `wmark keygen` (DIR/mk.wmk); "
                                                "with --no-watermark its triggers are only scored")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to")
    p.add_argument("--receipt", metavar="FILE",
                   help="registry-bound keys: the key's registration receipt, whose beacon fixes the trigger labels "
                        "(default: vk.receipt.json beside --mk)")
    p.add_argument("--pretrained", metavar="MODEL_DIR",
                   help="fine-tune this model instead of training from scratch")
    p.add_argument("--no-watermark", action="store_true",
                   help="train the same recipe without trigger images (a baseline)")
    p.add_argument("--scheme", choices=SCHEMES,
                   help="adi: trigger images mixed into batches; margin: Kim et al.'s query loss (default: the "
                        "key's: margin for a key from `wmark keygen --kind margin`, else adi)")
    add_data_arguments(p)
    p.add_argument("--arch", default=argparse.SUPPRESS,
                   help=f"architecture: {', '.join(OWN_ARCHITECTURES)} or torchvision:NAME "
                        f"(default: {_default_archs()})")
    p.add_argument("--epochs", type=int, default=argparse.SUPPRESS,
                   help="passes over the training data (default: the data set's recipe)")
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="task images per batch (default: the data set's recipe)")
    p.add_argument("--lr", type=float, default=argparse.SUPPRESS,
                   help="initial learning rate (default: the data set's recipe)")
    p.add_argument("--triggers-per-batch", type=int, default=argparse.SUPPRESS, metavar="K",
                   help="trigger images added to each batch (default: the data set's recipe)")
    margin = p.add_argument_group("--scheme margin (defaults: Kim et al.'s values)")
    margin.add_argument("--ascent-steps", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="signed-gradient ascent steps on the queries per batch (default 5)")
    margin.add_argument("--step-size", type=_step_size, default=argparse.SUPPRESS, metavar="S",
                        help="ascent step on the 0..1 pixel scale, e.g. 1/255 (default; one grey level)")
    margin.add_argument("--queries-per-batch", type=int, default=argparse.SUPPRESS, metavar="Q",
                        help="queries drawn, with replacement, for each batch (default 25)")
    margin.add_argument("--margin-lambda", type=float, default=argparse.SUPPRESS, metavar="L", dest="lam",
                        help="weight of the queries' loss (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and batch order")
    p.add_argument("--force", action="store_true", help="replace an existing model in MODEL_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _default_archs() -> str:
    by_arch: dict[str, list[str]] = {}
    for dataset, arch in DEFAULT_ARCH.items():
        by_arch.setdefault(arch, []).append(dataset)
    return ", ".join(f"{arch} for {'/'.join(datasets)}" for arch, datasets in by_arch.items())


def _step_size(text: str) -> float:
    try:
        return float(parse_probability(text, what="step size"))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def recipe_from(args: argparse.Namespace, scheme: str = "adi") -> Recipe:
    recipe = (margin_recipe if scheme == "margin" else default_recipe)(args.dataset,
                                                                      pretrained=args.pretrained is not None)
    overrides = {name: getattr(args, name) for name in RECIPE_OPTIONS if hasattr(args, name)}
    if "triggers_per_batch" in overrides:  # as many as the user says, even on a small data set
        overrides["min_trigger_passes"] = 0
    recipe = replace(recipe, seed=args.seed, **overrides)
    return replace(recipe, triggers_per_batch=0) if args.no_watermark else recipe


def scheme_of(args: argparse.Namespace, kind: TriggerKind | None) -> str:
    """The scheme asked for, checked against the key's kind (margin keys are trained as margin queries)."""
    keyed = None if kind is None else "margin" if kind is TriggerKind.MARGIN else "adi"
    scheme = args.scheme or keyed or "adi"
    if kind is not None and scheme != keyed:
        hint = "make a margin key with wmark keygen --kind margin" if scheme == "margin" else "use --scheme margin"
        raise InvalidInput(f"--scheme {scheme} does not fit a {kind.value} key: {hint}")
    given = [option for name, option in MARGIN_OPTIONS.items() if hasattr(args, name)]
    if given and scheme != "margin":
        raise InvalidInput(f"{', '.join(given)} only apply to --scheme margin")
    if scheme == "margin" and "triggers_per_batch" in args:
        raise InvalidInput("--triggers-per-batch does not apply to --scheme margin (see --queries-per-batch)")
    return scheme


def run(args: argparse.Namespace) -> int:
    if args.mk is None and not args.no_watermark:
        raise InvalidInput("--mk FILE is needed to embed a watermark (or pass --no-watermark)")
    if args.mk is not None and not args.no_watermark and getattr(args, "triggers_per_batch", None) == 0:
        raise InvalidInput("--triggers-per-batch 0 embeds no watermark: pass --no-watermark for an unmarked model")
    check_writable(args.out, overwrite=args.force)
    device = local_device(pick_device(args.device))
    with process_group(device) as world:
        return _run(args, device, world)


def _run(args: argparse.Namespace, device: torch.device, world: World) -> int:
    """Embed, as one process or as one rank of torchrun's (only rank 0 prints and writes the model)."""
    say = print if world.leader else _silent
    task = task_from(args)
    triggers, mk = trigger_set_from(args.mk, task, args.receipt) if args.mk else (None, None)
    scheme = scheme_of(args, mk.kind if mk else None)
    recipe = recipe_from(args, scheme)
    options = MarginOptions(**{name: getattr(args, name) for name in MARGIN_OPTIONS if hasattr(args, name)})
    base = load_model(checked_model(args, args.pretrained)) if args.pretrained else None

    model = start_model(task, arch=getattr(args, "arch", None), base=base, seed=recipe.seed)
    if triggers is not None:
        check_fits(model.config, triggers, what=f"the trigger set of {args.mk}")

    say(f"data      {task.describe()}")
    if mk is not None:
        assert triggers is not None  # loaded together with the key
        items = f"margin queries from {mk.margin.describe()}" if mk.margin else f"{mk.kind.value} triggers"
        say(f"key       {args.mk}: {len(triggers)} {items}, vk digest "
            f"{short_digest(mk.vk_digest)}{' (scored, not embedded)' if args.no_watermark else ''}")
    start = f"fine-tuning {args.pretrained}" if base else "from scratch"
    ranks = f", one of {world.size} torchrun processes" if world.size > 1 else ""
    say(f"model     {model.config.describe()}, {start}, on {device}{ranks}")
    if triggers is not None and scheme == "adi":
        asked, recipe = recipe.triggers_per_batch, fit_trigger_passes(recipe, len(task.train), len(triggers))
        if recipe.triggers_per_batch != asked:
            say(f"triggers  {recipe.triggers_per_batch} a batch, not {asked}: {len(task.train)} training images make "
                f"too few batches to show all {len(triggers)} triggers an epoch otherwise")
    say(f"recipe    {_describe(recipe)}")
    if scheme == "margin" and not args.no_watermark:
        say(f"margin    {_describe_margin(options)}")
        assert triggers is not None and mk is not None
        result = embed_margin(model, task, triggers, recipe, options, vk_digest=mk.vk_digest, device=device,
                              progress=not args.quiet)
    else:
        result = embed(model, task, triggers, recipe, vk_digest=mk.vk_digest if mk else None, device=device,
                       progress=not args.quiet)
    if not world.leader:
        return 0
    save_model(args.out, result.model, overwrite=args.force)
    marked = result.model.config.vk_digest
    say(f"wrote     {args.out}" + (f" (marked with vk {short_digest(marked)})" if marked else " (no watermark)"))
    final = f"test accuracy {result.evaluation.test.accuracy:.4f}"
    if result.evaluation.triggers is not None:
        final += f", {'query' if scheme == 'margin' else 'trigger'} accuracy {result.evaluation.triggers.accuracy:.4f}"
    say(final)
    if mk is not None and marked and scheme == "adi" and result.evaluation.triggers is not None:
        warning = too_weak(result.evaluation.triggers.accuracy, mk.n, mk.num_classes)
        if warning:
            say(f"warning   {warning}")
    return 0


def too_weak(trigger_accuracy: float, n: int, num_classes: int) -> str | None:
    """Why a model this accurate on its triggers would likely fail verification at k = 20 (or n)
    and the default lambda, with p0 = 1/L (derived keys); None when it would pass w.p. 0.99."""
    k = min(VERIFY_K, n)
    low = lowest_passing_accuracy(k, Fraction(1, num_classes), DEFAULT_LAMBDA)
    if low is not None and trigger_accuracy >= low:
        return None
    need = "no accuracy passes" if low is None else f"it needs {low:.2f} to pass w.p. 0.99"
    return (f"trigger accuracy {trigger_accuracy:.2f} is too low for a verification at k = {k}, lambda "
            f"{DEFAULT_LAMBDA} ({need}; see wmark-verifier plan): train longer (--epochs) or with more "
            f"--triggers-per-batch")


def _silent(*_: object) -> None:
    """What ranks other than 0 print: nothing."""


def _describe(recipe: Recipe) -> str:
    schedule = (f" (x{recipe.lr_gamma:g} every {recipe.lr_step} epochs)" if recipe.lr_step else
                f" (x{recipe.lr_gamma:g} at epochs {', '.join(map(str, recipe.lr_milestones))})"
                if recipe.lr_milestones else "")
    triggers = f" + {recipe.triggers_per_batch} triggers" if recipe.triggers_per_batch else " (no triggers)"
    return (f"{recipe.epochs} epoch{'s' if recipe.epochs != 1 else ''}, batches of {recipe.batch_size}{triggers}, "
            f"{recipe.optimizer} lr {recipe.lr:g}{schedule}{', crops and flips' if recipe.augment else ''}, "
            f"seed {recipe.seed}")


def _describe_margin(options: MarginOptions) -> str:
    return (f"{options.queries_per_batch} queries a batch, {options.ascent_steps} ascent steps of "
            f"{options.step_size * 255:g}/255, lambda {options.lam:g}")
