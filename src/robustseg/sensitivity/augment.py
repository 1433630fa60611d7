"""Augmenting training batches: the sensitivity-adaptive policy and the baselines it is compared with.

A policy turns a batch ``(B, C, *spatial)`` with its labels into an augmented one, on the batch's device, one
sample at a time, with the draws of sample ``i`` of training step ``t`` seeded by ``(seed, t, i)``: a resumed
training draws what the uninterrupted one would have, and the draws do not depend on the batch size. Policies:

- :class:`SampledAugmentation` around a sampler: :class:`~robustseg.sensitivity.sampler.SensitivitySampler` (the
  seed's adaptive policy, rebuilt at every refresh), :class:`UniformSampler` (an op and a level uniformly at
  random: the plain baseline) or :class:`TrivialAugmentSampler` (TrivialAugment's policy: one op or none, uniformly,
  at one of 31 magnitudes), each over the same basis perturbations, label-aware (geometric ops move the label);
- :class:`MonaiAugmentation`: MONAI's standard random intensity transforms (bias field, Gaussian noise and
  smoothing, contrast, intensity scaling and shifting), the 3-D baseline.

Z-scored MRI (the bundle's input) is not what the scanner-physics ops are defined on: :func:`perturb_normalised`
shifts each channel's foreground to a raw-like nonnegative range, applies the op and z-scores the foreground again,
as the bundle's ``NormalizeIntensityd(nonzero=True, channel_wise=True)`` would after a real artefact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from robustseg.seeds import derive_seed
from robustseg.sensitivity.perturbations import OPS, check_request, perturb
from robustseg.sensitivity.sampler import Draw

__all__ = [
    "MonaiAugmentation",
    "SampledAugmentation",
    "Sampler",
    "TrivialAugmentSampler",
    "UniformSampler",
    "perturb_normalised",
    "z_score_foreground",
]


def z_score_foreground(x: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Each channel z-scored over ``foreground`` ``(B, 1, *spatial)``; zero outside it."""
    inside = foreground.expand_as(x).flatten(2)
    flat = x.flatten(2)
    count = inside.sum(-1).clamp(min=1)
    mean = (flat * inside).sum(-1) / count
    var = (((flat - mean.unsqueeze(-1)) * inside) ** 2).sum(-1) / count
    std = var.sqrt().clamp(min=1e-8)
    shape = (*x.shape[:2], *([1] * (x.ndim - 2)))
    return ((x - mean.view(shape)) / std.view(shape)) * foreground


def perturb_normalised(
    image: torch.Tensor,
    label: torch.Tensor | None,
    op: str,
    magnitude: float,
    *,
    seed: int = 0,
    channels: Sequence[int] | None = None,
    label_fill: int = 0,
    renormalise: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`~robustseg.sensitivity.perturbations.perturb`, and for z-scored MRI (``renormalise``) on a raw-like
    image: each channel's foreground (voxels nonzero in some channel) shifted to start at 1, the op applied, the
    result z-scored over the same foreground. Without ``renormalise`` it is ``perturb``."""
    if not renormalise or magnitude == 0.0 or OPS[check_request(op, magnitude).name].domain != "mri":
        return perturb(image, label, op, magnitude, seed=seed, channels=channels, label_fill=label_fill)
    foreground = image.ne(0).any(1, keepdim=True)
    big = torch.finfo(image.dtype).max
    low = torch.where(foreground, image, big).flatten(2).min(-1).values
    shape = (*image.shape[:2], *([1] * (image.ndim - 2)))
    raw = (image - low.view(shape) + 1.0) * foreground
    moved, moved_label = perturb(raw, label, op, magnitude, seed=seed, channels=channels, label_fill=label_fill)
    out = z_score_foreground(moved, foreground)
    if channels is not None:  # the other sequences stay exactly as they were
        keep = [c for c in range(image.shape[1]) if c not in set(channels)]
        out[:, keep] = image[:, keep]
    return out, moved_label


class Sampler(Protocol):
    """Anything that draws (op, level) pairs from a generator."""

    def draw_with(self, generator: torch.Generator) -> Draw: ...


class UniformSampler:
    """An op uniformly among ``ops`` and a level uniformly in [0, 1] (the plain baseline)."""

    def __init__(self, ops: Sequence[str]) -> None:
        if not ops:
            raise ValueError("the uniform policy needs at least one op.")
        for op in ops:
            check_request(op, 0.0)
        self.ops = sorted(ops)

    def draw_with(self, generator: torch.Generator) -> Draw:
        op = self.ops[int(torch.randint(0, len(self.ops), (1,), generator=generator))]
        return Draw(op, float(torch.rand(1, generator=generator, dtype=torch.float64)))

    def table(self) -> list[dict[str, Any]]:
        return [{"op": op, "level": "U(0, 1)", "p": 1 / len(self.ops)} for op in self.ops]


class TrivialAugmentSampler:
    """TrivialAugment (Mueller & Hutter 2021): one op uniformly among ``ops`` and the identity, at one of ``bins``
    magnitudes uniformly in [0, 1]; with label-aware ops."""

    def __init__(self, ops: Sequence[str], bins: int = 31) -> None:
        self.uniform = UniformSampler(ops)
        self.bins = int(bins)

    def draw_with(self, generator: torch.Generator) -> Draw:
        k = int(torch.randint(0, len(self.uniform.ops) + 1, (1,), generator=generator))
        b = int(torch.randint(0, self.bins, (1,), generator=generator))
        if k == len(self.uniform.ops):
            return Draw(None, 0.0)
        return Draw(self.uniform.ops[k], b / (self.bins - 1))

    def table(self) -> list[dict[str, Any]]:
        p = 1 / (len(self.uniform.ops) + 1)
        return [{"op": None, "level": 0.0, "p": p}] + [
            {"op": op, "level": f"k/{self.bins - 1}", "p": p} for op in self.uniform.ops
        ]


class SampledAugmentation:
    """Each sample of a batch perturbed by a drawn (op, level), on the batch's device.

    Args:
        sampler: what draws the op and level; replaced at every refresh of the adaptive policy (:meth:`use`).
        seed: with the step and the sample's index, seeds its draw and its perturbation.
        channels: the MRI sequences the MRI ops act on (default all).
        label_fill: the label of voxels a geometric op brings in from outside (255 for VOC's void).
        renormalise: the inputs are z-scored MRI (see :func:`perturb_normalised`).
    """

    def __init__(
        self,
        sampler: Sampler,
        seed: int = 0,
        channels: Sequence[int] | None = None,
        label_fill: int = 0,
        renormalise: bool = False,
    ) -> None:
        self.sampler = sampler
        self.seed = int(seed)
        self.channels = None if channels is None else list(channels)
        self.label_fill = int(label_fill)
        self.renormalise = bool(renormalise)
        self.counts: dict[str, int] = {}

    def use(self, sampler: Sampler) -> None:
        """Draw from ``sampler`` from now on."""
        self.sampler = sampler

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor | None, step: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out_images, out_labels = [], []
        for i in range(images.shape[0]):
            seed = derive_seed(self.seed, f"{step}|{i}")
            draw = self.sampler.draw_with(torch.Generator().manual_seed(seed))
            image, label = images[i : i + 1], None if labels is None else labels[i : i + 1]
            name = draw.op or "clean"
            self.counts[name] = self.counts.get(name, 0) + 1
            if draw.op is not None and draw.level > 0:
                with torch.no_grad():
                    image, moved = perturb_normalised(
                        image.as_subclass(torch.Tensor),
                        None if label is None else label.as_subclass(torch.Tensor),
                        draw.op,
                        draw.level,
                        seed=seed,
                        channels=self.channels,
                        label_fill=self.label_fill,
                        renormalise=self.renormalise,
                    )
                label = moved if moved is not None else label
            out_images.append(image.as_subclass(torch.Tensor))
            out_labels.append(None if label is None else label.as_subclass(torch.Tensor))
        stacked = torch.cat(out_images).to(images.dtype)
        return stacked, None if labels is None else torch.cat([x for x in out_labels if x is not None]).to(labels.dtype)


class MonaiAugmentation:
    """MONAI's random intensity transforms applied to each sample, seeded by ``(seed, step, index)``.

    Args:
        transforms: array transforms (``Randomizable``), e.g. ``RandBiasField``, ``RandGaussianNoise``; default
            :meth:`standard`.
        seed: seeds each sample's draws with the step and its index.
    """

    def __init__(self, transforms: Sequence[Any] | None = None, seed: int = 0) -> None:
        self.transforms = list(transforms) if transforms is not None else self.standard()
        self.seed = int(seed)

    @staticmethod
    def standard() -> list[Any]:
        """The intensity augmentations of MONAI's BraTS tutorials and model zoo bundles, and the MRI artefacts MONAI
        has: bias field, Gaussian noise, Gaussian smoothing, contrast (gamma), intensity scaling and shifting."""
        from monai.transforms import (
            RandAdjustContrast,
            RandBiasField,
            RandGaussianNoise,
            RandGaussianSmooth,
            RandScaleIntensity,
            RandShiftIntensity,
        )

        return [
            RandBiasField(prob=0.3, coeff_range=(0.0, 0.5)),
            RandGaussianNoise(prob=0.3, std=0.1),
            RandGaussianSmooth(prob=0.2, sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5), sigma_z=(0.5, 1.5)),
            RandAdjustContrast(prob=0.3, gamma=(0.7, 1.5)),
            RandScaleIntensity(factors=0.1, prob=1.0),
            RandShiftIntensity(offsets=0.1, prob=1.0),
        ]

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor | None, step: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = []
        for i in range(images.shape[0]):
            x = images[i].as_subclass(torch.Tensor)
            for k, t in enumerate(self.transforms):
                t.set_random_state(seed=derive_seed(self.seed, f"{step}|{i}|{k}") % (2**32))
                x = torch.as_tensor(t(x)).as_subclass(torch.Tensor)
            out.append(x.to(images.device, images.dtype))
        return torch.stack(out), labels
