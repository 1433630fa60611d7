"""Synthetic nested tumours and a small 3-D conv net shared by the workflow tests."""

from __future__ import annotations

import numpy as np
import torch


def nested_tumour(rng: np.random.Generator, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4-channel volume with a spherical tumour: oedema shell, enhancing rim, necrotic core (labels 2, 3, 1)."""
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"))
    centre = rng.uniform(5, size - 5, size=3)[:, None, None, None]
    r = np.sqrt(((grid - centre) ** 2).sum(0))
    label = np.where(r < 2, 1, np.where(r < 3.2, 3, np.where(r < 4.5, 2, 0)))
    means = np.array([[1.0, 0.6, 0.9, 1.2], [0.2, 0.3, 1.8, 1.0], [0.8, 1.8, 1.3, 1.1], [0.7, 0.8, 1.6, 1.9]])
    image = means[label].transpose(3, 0, 1, 2) + 0.1 * rng.standard_normal((4, size, size, size))
    return torch.tensor(image, dtype=torch.float32), torch.tensor(label[None], dtype=torch.long)


def small_conv_net(out_channels: int) -> torch.nn.Sequential:
    """Three 'same' convolutions from 4 MR channels to ``out_channels`` logits (classes or sigmoid regions)."""
    return torch.nn.Sequential(
        torch.nn.Conv3d(4, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(8, out_channels, 1),
    )
