"""``wmark import-model``: a trained network's weights become a model directory."""

from __future__ import annotations

import argparse

import torch

from wmark.console import add_command
from wmark.errors import InvalidInput
from wmark.watermark.archsizes import OWN_ARCHITECTURES, check_arch
from wmark.watermark.cli.keygen import parse_shape
from wmark.watermark.importing import import_weights, parse_channel_values, read_class_names
from wmark.watermark.modelio import ModelConfig, Preprocessing, check_writable, save_model

EPILOG = """\
examples:
  wmark import-model --weights resnet.pt --arch torchvision:resnet18 --num-classes 10 \\
      --input-shape 3x32x32 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out models/mine
  wmark import-model --weights net.safetensors --arch resnet18_cifar --num-classes 100 \\
      --input-shape 3x32x32 --class-names classes.txt --out models/mine
  wmark embed --mk keys/mk.wmk --pretrained models/mine --dataset imagefolder --data-root photos \\
      --out models/mine-marked

--weights is a safetensors file or a state_dict saved with
torch.save(net.state_dict(), FILE); the latter is read with
torch.load(weights_only=True), which builds tensors only and refuses a file
holding any other object (a pickled module, code). Every tensor's name and
shape must fit --arch with --num-classes outputs; the first misfits are named.

The model takes uint8 pixels p and feeds the network (p / 255 - mean) / std
per channel: give the --mean and --std the network was trained with (on the
0..1 scale; one number for every channel, or one per channel). The defaults,
0 and 1, mean the network takes pixels scaled to [0, 1].

Writes MODEL_DIR/model.safetensors and MODEL_DIR/model.json, as `wmark embed`
does (no watermark recorded), all at once."""


def register(subparsers) -> None:
    p = add_command(subparsers, "import-model", 
                    description="Bring your own model: check a safetensors file or a PyTorch state_dict "
                                "against an architecture and write it as a model directory that embed "
                                "(--pretrained), eval, serve-model and the verifier take.",
                    epilog=EPILOG, func=run)
    p.add_argument("--weights", required=True, metavar="FILE", help="safetensors file or torch.save'd state_dict")
    p.add_argument("--arch", required=True, metavar="NAME",
                   help=f"{', '.join(OWN_ARCHITECTURES)} or torchvision:NAME (e.g. torchvision:resnet18)")
    p.add_argument("--num-classes", required=True, type=int, metavar="L", help="the network's number of outputs")
    p.add_argument("--input-shape", required=True, type=parse_shape, metavar="CxHxW",
                   help="the images it takes, e.g. 3x32x32")
    p.add_argument("--mean", default="0", metavar="M", help="per-channel mean on the 0..1 scale")
    p.add_argument("--std", default="1", metavar="S", help="per-channel standard deviation on the 0..1 scale")
    p.add_argument("--class-names", metavar="FILE", help="a text file with one class name a line, in class order")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to")
    p.add_argument("--force", action="store_true", help="replace an existing model in MODEL_DIR")


def run(args: argparse.Namespace) -> int:
    check_writable(args.out, overwrite=args.force)
    check_arch(args.arch)
    channels = args.input_shape[0]
    config = ModelConfig(
        arch=args.arch, num_classes=args.num_classes, input_shape=args.input_shape,
        preprocessing=Preprocessing(parse_channel_values(args.mean, channels, what="--mean"),
                                    parse_channel_values(args.std, channels, what="--std")),
        class_names=read_class_names(args.class_names) if args.class_names else None)
    imported = import_weights(args.weights, config)
    _check_runs(imported.model, config)
    save_model(args.out, imported.model, overwrite=args.force)
    print(f"weights   {args.weights}: {sum(t.numel() for t in imported.model.net.state_dict().values()):,} "
          f"values{''.join(f'; {note}' for note in imported.notes)}")
    print(f"model     {config.describe()}, preprocessing (p/255 - {_values(config.preprocessing.mean)}) / "
          f"{_values(config.preprocessing.std)}")
    if config.class_names:
        print(f"classes   {', '.join(config.class_names[:5])}{', ...' if len(config.class_names) > 5 else ''}")
    print(f"wrote     {args.out} (no watermark recorded; mark it with wmark embed --pretrained {args.out})")
    return 0


def _check_runs(model, config: ModelConfig) -> None:
    """One forward pass on a blank image: an architecture that fits the weights may still
    not take this input size (and the answer must have one score per class)."""
    try:
        with torch.inference_mode():
            logits = model(torch.zeros((1, *config.input_shape), dtype=torch.uint8))
    except RuntimeError as exc:
        raise InvalidInput(f"{config.arch} does not run on {config.shape_text} images "
                           f"({str(exc).splitlines()[0][:200]})") from None
    if tuple(logits.shape) != (1, config.num_classes):
        raise InvalidInput(f"{config.arch} answers a {config.shape_text} image with shape {list(logits.shape)}, "
                           f"not [1, {config.num_classes}]")


def _values(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)
