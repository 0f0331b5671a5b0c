"""The committed table of architecture sizes (wmark.watermark.archtable) against torch itself."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from wmark.errors import InvalidInput
from wmark.watermark.archsizes import check_arch, state_size, torchvision_classifiers
from wmark.watermark.models import state_shapes

# Every kind of row: our own networks (each cells rule, channels), torchvision's
# convolutional, attention and regnet families (regnet cannot be built under
# torch.device("meta") alone), and two with auxiliary heads (googlenet, inception_v3).
ARCHES = ["small_cnn", "zk_cnn", "fashion_cnn", "fashion_zk", "resnet18_cifar", "torchvision:resnet18",
          "torchvision:mobilenet_v3_small", "torchvision:regnet_x_400mf", "torchvision:googlenet",
          "torchvision:inception_v3", "torchvision:vit_b_16", "torchvision:squeezenet1_1"]


def _counted(arch: str, num_classes: int, shape: tuple[int, int, int]) -> int:
    return sum(math.prod(s) for s in state_shapes(arch, num_classes, shape).values())


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("arch", ARCHES)
def test_the_table_counts_what_torch_builds(arch):
    points = [(10, (3, 32, 32)), (1000, (3, 224, 224))] if arch.startswith("torchvision:") else [
        (10, (1, 8, 8)), (43, (3, 32, 32)), (5, (4, 28, 17)), (100, (2, 512, 9))]
    for num_classes, shape in points:
        assert state_size(arch, num_classes, shape) == _counted(arch, num_classes, shape), (arch, num_classes, shape)


def test_the_table_names_every_torchvision_classifier_and_no_other():
    from torchvision import models

    assert torchvision_classifiers() == sorted(models.list_models(module=models))


def test_unknown_architectures_are_refused_by_name():
    for arch in ("torchvision:not_a_net", "resnet9000", ""):
        with pytest.raises(InvalidInput):
            check_arch(arch)
        with pytest.raises(InvalidInput):
            state_size(arch, 10, (3, 32, 32))


@pytest.mark.slow
def test_the_committed_table_is_what_the_generator_writes():
    result = subprocess.run([sys.executable, "-m", "wmark.watermark.archsizes"], capture_output=True, text=True,
                            check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_torch_free_list_of_own_architectures_is_the_models_registry():
    """The --help texts and the torch-free checks name architectures from archsizes, without importing torch."""
    from wmark.watermark.archsizes import OWN_ARCHITECTURES
    from wmark.watermark.models import ARCHITECTURES

    assert set(OWN_ARCHITECTURES) == set(ARCHITECTURES)
