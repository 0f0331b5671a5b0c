"""Network architectures, found by name (as torchvision's ``get_model``).

* ``small_cnn``: two 3x3 convolutions, a max-pool and two dense layers; made
  for digits (8x8, trains in seconds on two cores) and usable at any input
  size (an adaptive pool fixes the dense layer's width).
* ``zk_cnn``: two stride-2 3x3 convolutions and two dense layers, 3.7k
  parameters on digits (94% test accuracy, all 100 triggers): small enough
  that a zero-knowledge proof of one inference (docs/design.md section 4c) takes
  seconds, where ``small_cnn`` needs 2^20 circuit rows.
* ``fashion_zk``: a 4x4 stride-4 convolution (16 channels, the image cut
  into 7x7 patches), a 64-unit dense layer and the classifier, ReLU only
  (51k parameters on Fashion-MNIST): made to be proven.
  ezkl spends ~30 circuit rows on each element a rescale and a ReLU touch and
  ~41 on each hashed input element, so the network is a single wide cut
  (784 activations) before the dense layers, no pooling layer (each costs a
  rescale per element) and nothing that needs a lookup (max, sigmoid): its
  circuit is 101k rows (2^17) against the 2^18 and more of a convolution at
  full resolution (docs/design.md section 4c).
* ``fashion_cnn``: three 3x3 convolutions with batch normalisation, each
  followed by a 2x2 max-pool, and two dense layers (0.4M parameters); the
  default for Fashion-MNIST, chosen to reach 91% test accuracy within ten
  minutes on two CPU cores (benchmarks/results/fashion-embed.md).
* ``resnet18_cifar``: the ResNet-18 of Adi et al. 2018 (and of the
  WatermarkNN code it ships with) for 32x32 images: torchvision's ResNet-18
  with a 3x3 stride-1 stem and no stem max-pool.
* ``resnet34_cifar``: the same for ResNet-34, the network of Kim et al.'s
  margin-based watermark (2023).
* ``torchvision:NAME``: any torchvision classifier (``resnet50``,
  ``mobilenet_v3_small``, ...), randomly initialised, with ``num_classes``
  outputs; these take 3-channel images.

A network here takes normalised float input; :class:`wmark.watermark.modelio.Classifier`
puts the preprocessing in front of it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import torch
from torch import nn

from wmark.errors import InvalidInput
from wmark.watermark.archsizes import TORCHVISION_PREFIX, channel_problem, check_arch

# The dense layer of small_cnn sees a POOLED x POOLED map whatever the input size.
POOLED = 4


def small_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(POOLED),
        nn.Flatten(),
        nn.Linear(64 * POOLED * POOLED, 256),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(256, num_classes),
    )


def zk_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    channels, height, width = input_shape
    # Strides instead of pooling: a pooling layer costs circuit rows and buys
    # nothing at 8x8.  Each stride-2 convolution takes a side n to ceil(n / 2).
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * -(-height // 4) * -(-width // 4), 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )


def fashion_zk(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    channels, height, width = input_shape
    # Non-overlapping 4x4 patches: 28 -> 7 with every pixel used once (a side n
    # to floor(n / 4)).  ezkl makes every column 2^logrows tall, so rows below
    # 2^17 are free: 64 dense units (101k rows) rather than 32 (88k) buy half a
    # point of accuracy at the same cost, where 20 channels (109k) buy nothing more.
    return nn.Sequential(
        nn.Conv2d(channels, 16, 4, stride=4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * (height // 4) * (width // 4), 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def fashion_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    channels, height, width = input_shape

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        # No bias before batch normalisation: its shift replaces it.
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.MaxPool2d(2)]

    # 28 -> 14 -> 7 -> 3: three halvings (floor) of each side.
    side = (height // 8) * (width // 8)
    return nn.Sequential(
        *block(channels, 32), *block(32, 64), *block(64, 128),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(128 * side, 256),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(256, num_classes),
    )


def _cifar_resnet(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    from torchvision import models

    net = models.get_model(name, weights=None, num_classes=num_classes)
    # ImageNet's 7x7 stride-2 stem and max-pool would shrink a 32x32 image to
    # 8x8 before the first block; CIFAR ResNets keep full resolution.
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def resnet18_cifar(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return _cifar_resnet("resnet18", num_classes, input_shape)


def resnet34_cifar(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return _cifar_resnet("resnet34", num_classes, input_shape)


ARCHITECTURES: dict[str, Callable[[int, tuple[int, int, int]], nn.Module]] = {
    "small_cnn": small_cnn,
    "zk_cnn": zk_cnn,
    "fashion_cnn": fashion_cnn,
    "fashion_zk": fashion_zk,
    "resnet18_cifar": resnet18_cifar,
    "resnet34_cifar": resnet34_cifar,
}


def build_model(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """A freshly initialised network (initialisation draws from torch's global RNG)."""
    if num_classes < 2:
        raise InvalidInput(f"a classifier needs at least 2 classes, got {num_classes}")
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch](num_classes, input_shape)
    from torchvision import models

    # torchvision's own list decides here (this also builds wmark.watermark.archtable);
    # the table's check gives the message for a name neither knows.
    name = arch[len(TORCHVISION_PREFIX):]
    if not arch.startswith(TORCHVISION_PREFIX) or name not in models.list_models(module=models):
        check_arch(arch)
        raise InvalidInput(f"{name!r} is not a classifier of this torchvision ({models.__name__}); "
                           f"wmark's table of architectures was generated from another version")
    if problem := channel_problem(arch, input_shape):
        raise InvalidInput(problem)
    return models.get_model(name, weights=None, num_classes=num_classes)


_PATCHING = threading.Lock()


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter and buffer a module registers goes to torch's meta device.

    ``torch.device("meta")`` alone breaks builders that compute with tensors
    (regnet's block widths call ``.tolist()``); here each tensor is made where
    the builder makes it, unwritten (``torch.empty`` touches no memory), and
    moved at once, as accelerate's ``init_empty_weights`` does (written here
    to spare a dependency).  It patches ``nn.Module`` for every thread, so it is
    used only for the builders that fail on the meta device, one at a time."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter = parameter  # type: ignore[method-assign, assignment]
    nn.Module.register_buffer = buffer  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def state_shapes(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in the network's ``state_dict``, on the meta
    device: no memory and no initialisation, whatever the architecture's size."""
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):
                net = build_model(arch, num_classes, input_shape)
        except NotImplementedError:  # a builder that computes with tensors (regnet): "no data" on meta
            with _PATCHING, _parameters_on_meta():
                net = build_model(arch, num_classes, input_shape)
    return {name: tuple(t.shape) for name, t in net.state_dict().items()}
