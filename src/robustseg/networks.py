"""Network wrappers: mean/std normalisation inside the model, so natural-image inputs stay in [0, 1] pixel units.

For natural images the threat model's budgets are in pixel units (2/255, 4/255, 8/255) and clipping to [0, 1] is
exact only if the model itself takes [0, 1] RGB. :class:`Normalized` puts the ImageNet-style per-channel
standardisation in front of any network, as the first layer, so attacks, noise and smoothing act on the pixels::

    net = Normalized(UNet(spatial_dims=2, in_channels=3, out_channels=21, ...), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    logits = net(images_in_0_1)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalized"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet's RGB pixels in [0, 1], the usual choice for VOC, Cityscapes and Context."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet's RGB pixels in [0, 1]."""


class Normalized(nn.Module):
    """``network((x - mean) / std)``: a network that takes inputs in their natural units.

    Args:
        network: the wrapped network (its input is the standardised image).
        mean: per-channel mean, one value per input channel.
        std: per-channel standard deviation (> 0), one value per input channel.

    The statistics are buffers (saved in the checkpoint, moved with ``.to``), not parameters: training and attacks
    never change them.
    """

    def __init__(
        self, network: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std need one value per channel each, got {list(mean)} and {list(std)}.")
        if any(s <= 0 for s in std):
            raise ValueError(f"every std must be > 0 but std is {list(std)}.")
        self.network = network
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]))
        self.register_buffer("std", torch.tensor([float(s) for s in std]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        if x.shape[1] != mean.numel():
            raise ValueError(f"the input has {x.shape[1]} channels but mean/std have {mean.numel()}.")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.network((x - mean.view(shape)) / std.view(shape))
