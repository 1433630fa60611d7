"""The two corruption benchmarks: BraTS-C for MRI and common corruptions of natural images, and ``corrupt``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robustseg.corruptions import geometric, mri, natural
from robustseg.corruptions.base import Corruption, Setting

__all__ = [
    "BENCHMARKS",
    "BRATS_C",
    "CORRUPTIONS",
    "NATURAL_C",
    "brain_mask",
    "corrupt",
    "corrupt_with_label",
    "get_corruption",
]


def _ladder(**steps: Sequence[float]) -> tuple[dict[str, float], ...]:
    names = list(steps)
    return tuple({n: float(steps[n][s]) for n in names} for s in range(5))


def _linear(first: float, last: float) -> list[float]:
    return [first + (last - first) * i / 4 for i in range(5)]


BRATS_C: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption(
            "bias_field",
            "mri",
            _ladder(coefficient=_linear(0.3, 1.5)),
            mri.bias_field,
            True,
            about="smooth multiplicative intensity field (Legendre, degree <= 3)",
        ),
        Corruption(
            "rician_noise",
            "mri",
            _ladder(std=_linear(0.16, 0.8)),
            mri.rician_noise,
            True,
            about="magnitude noise of std s x the channel's foreground std",
        ),
        Corruption(
            "smoothing",
            "mri",
            _ladder(sigma_mm=_linear(0.8, 4.0)),
            mri.gaussian_smoothing,
            True,
            about="Gaussian blur, std in mm",
        ),
        Corruption(
            "contrast_compression",
            "mri",
            _ladder(gamma=_linear(0.86, 0.30)),
            mri.contrast_gamma,
            True,
            about="gamma < 1 on each channel's foreground range",
        ),
        Corruption(
            "contrast_expansion",
            "mri",
            _ladder(gamma=_linear(1.4, 3.0)),
            mri.contrast_gamma,
            True,
            about="gamma > 1 on each channel's foreground range",
        ),
        Corruption(
            "ghosting",
            "mri",
            _ladder(ghosts=[3, 5, 7, 9, 11], intensity=_linear(0.5, 2.5)),
            mri.ghosting,
            True,
            about="motion ghosts: k-space planes of the phase-encoding axis scaled",
        ),
        Corruption(
            "downsampling",
            "mri",
            _ladder(factor=_linear(2.8, 10.0)),
            mri.downsampling,
            True,
            about="thick slices: one axis downsampled and interpolated back",
        ),
        Corruption(
            "motion",
            "mri",
            _ladder(degrees=_linear(1.0, 5.0), translation_mm=_linear(2.0, 10.0), transforms=[2, 4, 6, 8, 10]),
            mri.motion,
            True,
            about="head motion during the scan: k-space segments acquired in other rigid poses",
        ),
        Corruption(
            "affine",
            "mri",
            _ladder(degrees=_linear(6.0, 30.0), translation_mm=_linear(8.0, 40.0)),
            geometric.affine,
            True,
            about="the head moved rigidly (angles, shifts in mm per axis); the label moves with it",
            moves_label=True,
        ),
        Corruption(
            "elastic",
            "mri",
            _ladder(displacement_mm=_linear(6.0, 30.0)),
            geometric.elastic,
            True,
            about="a smooth elastic deformation (B-spline, coefficients in mm); the label moves with it",
            moves_label=True,
        ),
        Corruption(
            "sequence_swap",
            "mri",
            _ladder(share=_linear(0.2, 1.0)),
            mri.sequence_swap,
            False,
            (2, 3),
            about="two sequences exchanged (T2 and FLAIR by default; 5: swapped files)",
        ),
        Corruption(
            "missing_sequence",
            "mri",
            _ladder(share=_linear(0.2, 1.0)),
            mri.missing_sequence,
            False,
            (3,),
            about="slices of one sequence (FLAIR by default) zeroed; 5: the sequence is missing",
        ),
        Corruption(
            "misregistration",
            "mri",
            _ladder(shift_mm=_linear(2.0, 10.0)),
            mri.misregistration,
            False,
            (3,),
            about="one sequence (FLAIR by default) shifted, in mm",
        ),
        Corruption(
            "skull_strip",
            "mri",
            _ladder(thickness_mm=_linear(2.0, 10.0)),
            mri.skull_strip,
            False,
            about="incomplete skull stripping: bright tissue around the brain, thickness in mm",
        ),
    )
}
"""BraTS-C: the ROOD-MRI ladders (the geometric ones, affine and elastic, move the label with the image) and the
failures of BraTS pipelines."""

NATURAL_C: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", "natural", _ladder(std=[0.08, 0.12, 0.18, 0.26, 0.38]), natural.gaussian_noise),
        Corruption("gaussian_blur", "natural", _ladder(sigma=[1, 2, 3, 4, 6]), natural.gaussian_blur),
        Corruption("contrast", "natural", _ladder(factor=[0.4, 0.3, 0.2, 0.1, 0.05]), natural.contrast),
        Corruption("brightness", "natural", _ladder(shift=[0.1, 0.2, 0.3, 0.4, 0.5]), natural.brightness),
        Corruption(
            "fog", "natural", _ladder(thickness=[1.5, 2.0, 2.5, 2.5, 3.0], decay=[2.0, 2.0, 1.7, 1.5, 1.4]), natural.fog
        ),
        Corruption("jpeg", "natural", _ladder(quality=[25, 18, 15, 10, 7]), natural.jpeg),
    )
}
"""Common corruptions of natural images: noise, blur, weather-like contrast, brightness and fog, JPEG."""

BENCHMARKS: dict[str, dict[str, Corruption]] = {"brats-c": BRATS_C, "natural-c": NATURAL_C}
CORRUPTIONS: dict[str, Corruption] = {**BRATS_C, **NATURAL_C}


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name``; a KeyError names the known ones."""
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def brain_mask(x: torch.Tensor) -> torch.Tensor:
    """The voxels nonzero in some channel ``(B, 1, *spatial)``: a skull-stripped case's brain (through a float
    reduction, which the CPU runs about 10 x faster than ``any`` over a boolean volume; NaN counts as nonzero)."""
    return x.abs().amax(1, keepdim=True) != 0


def _prepared(
    image: torch.Tensor,
    name: str,
    severity: int,
    seed: int,
    spacing: Sequence[float] | None,
    channels: Sequence[int] | None,
    pixel_max: float,
) -> tuple[Corruption, torch.Tensor, torch.Tensor]:
    """The corruption, the plain float batch and the function's output (an image, or a sampling grid)."""
    corruption = get_corruption(name)
    parameters = corruption.parameters(int(severity))
    if not torch.is_floating_point(image):
        image = image.float()
    x = image.as_subclass(torch.Tensor)
    chosen = corruption.channels if channels is None else tuple(int(c) for c in channels)
    setting = Setting(torch.Generator().manual_seed(int(seed)), spacing, chosen, float(pixel_max))
    return corruption, x, corruption.function(x, **parameters, setting=setting)


def corrupt(
    image: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    spacing: Sequence[float] | None = None,
    channels: Sequence[int] | None = None,
    pixel_max: float = 255.0,
) -> torch.Tensor:
    """Corruption ``name`` at ``severity`` (1..5) on a raw batch ``(B, C, *spatial)``.

    Args:
        seed: seeds the corruption's random draws.
        spacing: voxel size in mm per spatial axis (MRI; ``None``: 1 mm).
        channels: the sequences it acts on (default: the corruption's own, e.g. FLAIR for ``missing_sequence``).
        pixel_max: white in raw natural-image pixels.

    A geometric corruption moves the image only here; :func:`corrupt_with_label` moves its label too.
    """
    corruption, x, out = _prepared(image, name, severity, seed, spacing, channels, pixel_max)
    if corruption.moves_label:
        return _moved(corruption, x, out)
    if corruption.on_brain:
        out = out * brain_mask(x)
    return out.to(x.dtype)


def corrupt_with_label(
    image: torch.Tensor,
    label: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    spacing: Sequence[float] | None = None,
    channels: Sequence[int] | None = None,
    pixel_max: float = 255.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`corrupt`, and ``label`` (a class map ``(B, 1, *spatial)``) as the corruption leaves it: moved on the same
    grid when it ``moves_label`` (:func:`~robustseg.corruptions.geometric.move_labels`), else unchanged."""
    corruption = get_corruption(name)
    if not corruption.moves_label:
        return corrupt(image, name, severity, seed=seed, spacing=spacing, channels=channels, pixel_max=pixel_max), label
    _, x, grid = _prepared(image, name, severity, seed, spacing, channels, pixel_max)
    plain = label.as_subclass(torch.Tensor)
    if plain.shape[0] != x.shape[0] or plain.shape[1] != 1 or plain.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{name} moves the label with the image, but the label {tuple(plain.shape)} does not match the image "
            f"{tuple(x.shape)} (a class map (B, 1, *spatial) on the image's grid is needed)."
        )
    return _moved(corruption, x, grid), geometric.move_labels(plain, grid.to(plain.device))


def _moved(corruption: Corruption, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``x`` on ``grid``; for a corruption ``on_brain``, on the moved brain (its indicator moved linearly, >= 1/2):
    the head moved before skull stripping, so the stripped brain has no rim of values interpolated with the zeros
    around it (after z-scoring over the nonzero voxels, such a rim is a dark shell no scan has)."""
    if not corruption.on_brain:
        return geometric.move(x, grid)
    moved = geometric.move(torch.cat([x, brain_mask(x).to(x.dtype)], 1), grid)  # one resampling, the mask with it
    return moved[:, :-1] * (moved[:, -1:] >= 0.5)
