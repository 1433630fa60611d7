"""Tiny models and synthetic 'bright blob in a brain' data for the attack tests (2-D and 3-D)."""

from __future__ import annotations

import torch
from torch import nn

from robustseg.labels import LabelScheme

BLOBS = LabelScheme(class_names=("background", "blob"))
"""Two classes: background, bright blob."""

SIZE = {2: (24, 24), 3: (16, 16, 16)}
CHANNELS = 2


def conv_net(dims: int, in_channels: int = CHANNELS, out_channels: int = 2, width: int = 8) -> nn.Sequential:
    """A few 'same' convolutions: shift-equivariant, so it runs on any window size."""
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return nn.Sequential(
        conv(in_channels, width, 3, padding=1),
        nn.ReLU(),
        conv(width, width, 3, padding=1),
        nn.ReLU(),
        conv(width, out_channels, 1),
    )


def blob_batch(dims: int, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 2, *spatial)``: zero outside a central 'brain' ball, noise inside, a bright blob; labels 0/1."""
    shape = SIZE[dims]
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"))
    centre = torch.tensor([(s - 1) / 2 for s in shape]).reshape(-1, *([1] * dims))
    brain = ((grid - centre) ** 2).sum(0).sqrt() <= 0.45 * min(shape)
    images = torch.randn((n, CHANNELS, *shape), generator=generator) * 0.3
    labels = torch.zeros((n, 1, *shape), dtype=torch.long)
    for i in range(n):
        offset = (torch.rand(dims, generator=generator) - 0.5) * 0.4 * min(shape)
        radius = 2.0 + 1.5 * float(torch.rand(1, generator=generator))
        c = (centre.flatten() + offset).reshape(-1, *([1] * dims))
        blob = ((grid - c) ** 2).sum(0).sqrt() <= radius
        labels[i, 0][blob & brain] = 1
        images[i, :, blob & brain] += torch.tensor([1.2, 0.8])[:, None]
    return images * brain, labels


def train_blob_net(dims: int, steps: int = 100, seed: int = 0) -> nn.Module:
    """A tiny conv net trained to segment the bright blobs (a few seconds on CPU)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = conv_net(dims)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    weight = torch.tensor([1.0, 3.0])
    for _ in range(steps):
        images, labels = blob_batch(dims, 4, generator)
        loss = nn.functional.cross_entropy(net(images), labels[:, 0], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def hand_dice(prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice of the foreground per case, written out by hand: 2 |A & B| / (|A| + |B|), 1 when both are empty."""
    out = []
    for p, g in zip(prediction.reshape(len(prediction), -1) == 1, labels.reshape(len(labels), -1) == 1, strict=True):
        total = int(p.sum()) + int(g.sum())
        out.append(1.0 if total == 0 else 2 * int((p & g).sum()) / total)
    return torch.tensor(out)
