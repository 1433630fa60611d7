"""Synthetic nested tumours, a 2-D natural-image stand-in and a small conv net shared by the workflow tests."""

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


def ringed_disc(rng: np.random.Generator, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D RGB image with a disc (class 1) inside a ring (class 2) on a textured background, Pascal VOC style:
    a one-pixel void band (255, not scored) around the object's outline."""
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 2, indexing="ij"))
    centre = rng.uniform(8, size - 8, size=2)[:, None, None]
    r = np.sqrt(((grid - centre) ** 2).sum(0))
    label = np.where(r < 3, 1, np.where(r < 5.5, 2, 0))
    label[(r >= 5.5) & (r < 6.5)] = 255
    colours = np.array([[0.2, 0.5, 0.3], [1.8, 0.4, 0.2], [0.3, 0.6, 1.9]])  # z-scored RGB of each class
    image = colours[np.where(label == 255, 0, label)].transpose(2, 0, 1) + 0.15 * rng.standard_normal((3, size, size))
    return torch.tensor(image, dtype=torch.float32), torch.tensor(label[None], dtype=torch.long)


def small_conv_net(out_channels: int, in_channels: int = 4, spatial_dims: int = 3) -> torch.nn.Sequential:
    """Three 'same' convolutions from ``in_channels`` to ``out_channels`` logits (classes or sigmoid regions)."""
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(in_channels, 8, 3, padding=1),
        torch.nn.ReLU(),
        conv(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        conv(8, out_channels, 1),
    )
