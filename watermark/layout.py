"""The memory order image batches reach a model in (docs/design.md section 5).

PyTorch's CPU convolutions, batch normalisation and max-pooling follow the
memory order of their input, and in channels-first order they are much
slower: a fashion_cnn training step took about 1.4x as long, its inference
about 1.45x.  Which order a batch had was an accident of its strides: task
images gathered from the loader's arrays kept channels-last strides, but
appending rendered trigger images made a channels-first batch, so marking
cost +45 % CPU time on Fashion-MNIST; test images carried yet other strides.
Training and inference therefore put every CPU batch in channels-last order.
On CUDA a batch is left as it comes.
"""

from __future__ import annotations

import torch


def for_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` (N x C x H x W) in channels-last memory order on the CPU, as it is elsewhere."""
    if device.type != "cpu" or x.dim() != 4:
        return x
    # Not x.contiguous(memory_format=torch.channels_last): a one-channel
    # channels-first tensor already counts as channels-last contiguous and
    # comes back unchanged, while the kernels read its strides as
    # channels-first.  empty_like writes the strides they read as channels-last.
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
