"""How many numbers a named architecture's weights hold, without torch (docs/design.md section 5).

A model directory naming a huge network must be refused before torch is
imported (importing torch and torchvision alone takes seconds and most of a
gigabyte), so the size of every architecture :mod:`wmark.watermark.models`
builds is a committed table, :mod:`wmark.watermark.archtable`, generated from
the installed torchvision by::

    python -m wmark.watermark.archsizes --write

Every architecture's ``state_dict`` holds

    fixed + per_class * num_classes + per_channel * channels + per_cell * cells(H, W)

numbers, where ``cells`` is the architecture's rule for the input's spatial
size (``none`` for the networks that pool adaptively, whose size does not
depend on it).  The generator solves for the four coefficients on the meta
device and checks the formula at another point; tests/test_archsizes.py checks
it against torch for several architectures.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from wmark.errors import InvalidInput

TORCHVISION_PREFIX = "torchvision:"
OWN_ARCHITECTURES = ("small_cnn", "zk_cnn", "fashion_cnn", "fashion_zk", "resnet18_cifar", "resnet34_cifar")
# How a network's dense layer grows with the input (docs/design.md section 5):
# zk_cnn has two stride-2 convolutions (ceil), fashion_cnn three 2x2 max-pools (floor),
# fashion_zk one 4x4 stride-4 convolution (floor).
CELLS: dict[str, Callable[[int, int], int]] = {
    "none": lambda h, w: 0,
    "ceil4": lambda h, w: -(-h // 4) * -(-w // 4),
    "floor4": lambda h, w: (h // 4) * (w // 4),
    "floor8": lambda h, w: (h // 8) * (w // 8),
}
OWN_CELLS = {"zk_cnn": "ceil4", "fashion_cnn": "floor8", "fashion_zk": "floor4"}


def _table() -> dict[str, tuple[int, int, int, int, str]]:
    from wmark.watermark.archtable import SIZES

    return SIZES


def torchvision_classifiers() -> list[str]:
    """torchvision's classifiers, as the table knows them (the test checks it is torchvision's list)."""
    return sorted(name[len(TORCHVISION_PREFIX):] for name in _table() if name.startswith(TORCHVISION_PREFIX))


def check_arch(arch: str) -> None:
    """Raise :class:`InvalidInput` unless ``arch`` names a known architecture."""
    if arch in _table():
        return
    if arch.startswith(TORCHVISION_PREFIX):
        raise InvalidInput(f"{arch[len(TORCHVISION_PREFIX):]!r} is not a torchvision classifier "
                           f"(some are: {', '.join(torchvision_classifiers()[:8])}, ...)")
    raise InvalidInput(f"unknown architecture {arch!r} "
                       f"(choose from {', '.join(OWN_ARCHITECTURES)} or {TORCHVISION_PREFIX}NAME)")


def channel_problem(arch: str, input_shape: tuple[int, int, int]) -> str | None:
    """Why ``arch`` cannot take ``input_shape``'s channels (torchvision's classifiers take RGB), or None."""
    if arch.startswith(TORCHVISION_PREFIX) and input_shape[0] != 3:
        return f"{arch} takes 3-channel images, not {input_shape[0]}-channel ones"
    return None


def state_size(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> int:
    """How many numbers the ``state_dict`` of ``arch`` holds (parameters and buffers)."""
    check_arch(arch)
    fixed, per_class, per_channel, per_cell, cells = _table()[arch]
    channels, height, width = input_shape
    return fixed + per_class * num_classes + per_channel * channels + per_cell * CELLS[cells](height, width)


def _measured(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> int:
    from wmark.watermark.models import state_shapes  # torch: only to generate the table

    return sum(math.prod(shape) for shape in state_shapes(arch, num_classes, input_shape).values())


def coefficients(arch: str) -> tuple[int, int, int, int, str]:
    """Solve for an architecture's row of the table on the meta device, and check it elsewhere."""
    torchvision = arch.startswith(TORCHVISION_PREFIX)
    cells = "none" if torchvision else OWN_CELLS.get(arch, "none")
    # torchvision's classifiers take 3 channels; our own networks any number.
    base_channels, base_side, wider = (3, 224, 3) if torchvision else (1, 16, 2)
    base = _measured(arch, 2, (base_channels, base_side, base_side))
    per_class = _measured(arch, 3, (base_channels, base_side, base_side)) - base
    per_channel = 0 if torchvision else _measured(arch, 2, (wider, base_side, base_side)) - base
    rule = CELLS[cells]
    grown = 2 * base_side
    delta_cells = rule(grown, grown) - rule(base_side, base_side)
    per_cell = 0 if cells == "none" else (_measured(arch, 2, (base_channels, grown, grown)) - base) // delta_cells
    fixed = base - 2 * per_class - base_channels * per_channel - per_cell * rule(base_side, base_side)
    row = (fixed, per_class, per_channel, per_cell, cells)
    check = (7, (3, 40, 24)) if not torchvision else (1000, (3, 224, 224))
    formula = fixed + per_class * check[0] + per_channel * check[1][0] + per_cell * rule(*check[1][1:])
    if formula != _measured(arch, *check):
        raise RuntimeError(f"{arch}: its size is not of the form the table assumes")
    return row


def render(rows: dict[str, tuple[int, int, int, int, str]]) -> str:
    lines = [f"    {name!r}: {row!r}," for name, row in sorted(rows.items())]
    return ('"""Generated by `python -m wmark.watermark.archsizes --write` from the installed torchvision;\n'
            'do not edit.  Row: (fixed, per_class, per_channel, per_cell, cells) (see wmark.watermark.archsizes)."""\n'
            "\n"
            "SIZES: dict[str, tuple[int, int, int, int, str]] = {\n" + "\n".join(lines) + "\n}\n")


def generate() -> dict[str, tuple[int, int, int, int, str]]:
    import warnings

    from torchvision import models

    names = [*OWN_ARCHITECTURES, *(TORCHVISION_PREFIX + n for n in sorted(models.list_models(module=models)))]
    with warnings.catch_warnings():  # googlenet and inception_v3 warn about their default initialisation
        warnings.simplefilter("ignore", FutureWarning)
        return {name: coefficients(name) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate (or check) wmark/watermark/archtable.py.")
    parser.add_argument("--write", action="store_true", help="write the table (default: check it)")
    args = parser.parse_args(argv)
    target = Path(__file__).with_name("archtable.py")
    text = render(generate())
    if args.write:
        from wmark.files import atomic_write

        atomic_write(target, text.encode("utf-8"))
        return 0
    same = target.exists() and target.read_text(encoding="utf-8") == text
    print("archtable.py is up to date" if same else "archtable.py differs from torchvision: run with --write")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
