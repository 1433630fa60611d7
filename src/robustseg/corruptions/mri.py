"""BraTS-C: MRI corruptions on raw intensities (before normalisation), 2-D or 3-D, batched in torch.

Each function takes a batch ``(B, C, *spatial)`` of raw intensities, the severity's parameters and a
:class:`~robustseg.corruptions.base.Setting` (generator, voxel spacing in mm, the sequences it acts on), and returns
the corrupted batch. The ROOD-MRI ladders (Boone et al. 2023):

- ``bias_field``: ``x * exp(p)``, p a sum of Legendre products of degree 1..3 over the grid, coefficients uniform in
  [-c, c] (TorchIO's RandomBiasField), c = 0.3 .. 1.5;
- ``rician_noise``: ``sqrt((x + n1)^2 + n2^2)``, n Gaussian of std s times the channel's foreground std, s = 0.16 ..
  0.8 (after z-scoring, s is the noise std in the model's input unit);
- ``smoothing``: a separable Gaussian of std 0.8 .. 4 mm (taps to 4 std, as scipy's ``gaussian_filter``; zero border);
- ``contrast_compression`` / ``contrast_expansion``: the channel's foreground range rescaled to [0, 1], raised to
  gamma 0.86 .. 0.30 / 1.4 .. 3.0, scaled back;
- ``ghosting``: k-space planes of a seeded phase-encoding axis whose frequency is a non-zero multiple of n scaled by
  ``1 - a`` (TorchIO's RandomGhosting; the centre plane kept), n = 3 .. 11 ghosts, intensity a = 0.5 .. 2.5;
- ``downsampling``: a seeded axis area-downsampled by 2.8 .. 10, then linearly upsampled back (thick slices);
- ``motion``: the scan acquired in 2 .. 10 segments of k-space along a seeded phase-encoding axis, the head in
  another seeded rigid pose (rotations up to 1 .. 5 degrees, translations up to 2 .. 10 mm) during each segment but
  the one holding the k-space centre, which keeps the pose the label has (TorchIO's RandomMotion, as k-space edits).

ROOD-MRI's two geometric corruptions, ``affine`` and ``elastic``, move the label too: they are in
:mod:`robustseg.corruptions.geometric`.

Failures BraTS pipelines meet (Wang et al. 2022), on ladders of their own:

- ``sequence_swap``: two sequences exchanged, partly at low severity: ``(1 - a) x_i + a x_j``, a = 0.2 .. 1 (1: the
  files swapped);
- ``missing_sequence``: a contiguous block of a share 0.2 .. 1 of the slices (last axis) of one sequence zeroed, from a
  seeded end (1: the sequence is missing, as a pipeline that fills a missing file with zeros gives);
- ``misregistration``: one sequence shifted by 2 .. 10 mm along a seeded axis and direction (linear interpolation);
- ``skull_strip``: an incompletely stripped head: a shell of 2 .. 10 mm around the brain (box dilation) filled with
  bright tissue (each channel's nearest-rank 90th foreground percentile, a smooth seeded texture of +-20 %: the mean of
  one random profile per axis).

Scanner artefacts arise before skull stripping, which zeroes everything outside the brain: their outputs are put back
on the case's brain mask (the voxels nonzero in some sequence) by the benchmark; the four failures are not.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from robustseg.corruptions.base import Setting
from robustseg.corruptions.geometric import rigid_block, rotation_matrix, support
from robustseg.sensitivity.perturbations import foreground_std, frequencies, legendre_basis, spatial_axes

__all__ = [
    "bias_field",
    "contrast_gamma",
    "downsampling",
    "gaussian_smoothing",
    "ghosting",
    "misregistration",
    "missing_sequence",
    "motion",
    "motion_from_poses",
    "rician_noise",
    "sequence_swap",
    "skull_strip",
]


def _selected(x: torch.Tensor, setting: Setting) -> list[int]:
    chosen = list(range(x.shape[1])) if setting.channels is None else list(setting.channels)
    if any(not 0 <= c < x.shape[1] for c in chosen):
        raise ValueError(f"channels {chosen} lie outside the image's {x.shape[1]} channels.")
    return chosen


def _on_channels(x: torch.Tensor, setting: Setting, out: torch.Tensor) -> torch.Tensor:
    """``out`` on the chosen channels, ``x`` on the others."""
    chosen = _selected(x, setting)
    if len(chosen) == x.shape[1]:
        return out
    mixed = x.clone()
    mixed[:, chosen] = out[:, chosen]
    return mixed


def seeded_axis(x: torch.Tensor, g: torch.Generator) -> int:
    """A spatial axis (as a dim of ``x``) drawn from ``g``: a ghost's phase encoding, a thick slice's direction."""
    return 2 + int(torch.randint(0, x.ndim - 2, (1,), generator=g))


def bias_coefficients(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    """``(B, C, 4, .., 4)`` Legendre coefficients uniform in [-c, c], zero unless the product's degree is 1..3."""
    dims = x.ndim - 2
    coefficients = (torch.rand((*x.shape[:2], *(4,) * dims), generator=g, dtype=torch.float64) * 2 - 1) * c
    orders = torch.stack(torch.meshgrid(*[torch.arange(4)] * dims, indexing="ij")).sum(0)
    return coefficients * ((orders > 0) & (orders <= 3)).double()


def bias_field(x: torch.Tensor, coefficient: float, setting: Setting) -> torch.Tensor:
    """``x * exp(p)`` with p of seeded Legendre coefficients in [-coefficient, coefficient] (see the module)."""
    coefficients = bias_coefficients(x, coefficient, setting.generator).to(x.device)
    spatial = x.shape[2:]
    letters, axes = "ijk"[: len(spatial)], "xyz"[: len(spatial)]
    equation = f"bc{letters}," + ",".join(f"{i}{a}" for i, a in zip(letters, axes, strict=True)) + f"->bc{axes}"
    bases = [legendre_basis(n, x).to(x.dtype) for n in spatial]
    field = torch.einsum(equation, coefficients.to(x.dtype), *bases)
    return _on_channels(x, setting, x * torch.exp(field))


def rician_noise(x: torch.Tensor, std: float, setting: Setting) -> torch.Tensor:
    """Rician noise of ``std`` times each channel's foreground std, on the brain (the voxels nonzero in some channel:
    skull stripping removes the noise outside it, so it is not drawn there)."""
    sigma = (std * foreground_std(x)).flatten(1)  # (B, C)
    out = x.clone()
    for b in range(x.shape[0]):
        inside = x[b].ne(0).any(0).flatten().nonzero()[:, 0]
        values = x[b].flatten(1)[:, inside]
        noise = torch.randn((2, *values.shape), generator=setting.generator, dtype=x.dtype).to(x.device)
        noise = noise * sigma[b].view(1, -1, 1)
        out[b].view(x.shape[1], -1)[:, inside] = torch.hypot(values + noise[0], noise[1])
    return _on_channels(x, setting, out)


def gaussian_smoothing(x: torch.Tensor, sigma_mm: float, setting: Setting) -> torch.Tensor:
    """A separable Gaussian of ``sigma_mm`` (per axis in voxels by the spacing), taps to 4 std, zero borders."""
    out = x
    for axis, spacing in zip(range(2, x.ndim), setting.spacing_for(x), strict=True):
        sigma = sigma_mm / spacing
        radius = int(4.0 * sigma + 0.5)
        if radius < 1:
            continue
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        weights = (kernel / kernel.sum()).tolist()
        pad = [0, 0] * (x.ndim - 1 - axis) + [radius, radius]
        padded = F.pad(out, pad)
        n = out.shape[axis]
        total = padded.narrow(axis, 0, n) * weights[0]
        for shift in range(1, len(weights)):
            total.add_(padded.narrow(axis, shift, n), alpha=weights[shift])
        out = total
    return _on_channels(x, setting, out)


def _foreground_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)
    inside = flat != 0
    shape = (*x.shape[:2], *([1] * (x.ndim - 2)))
    big = torch.finfo(x.dtype).max
    lo = torch.where(inside, flat, big).min(-1).values
    hi = torch.where(inside, flat, -big).max(-1).values
    empty = ~inside.any(-1)
    return torch.where(empty, 0, lo).view(shape), torch.where(empty, 1, hi).view(shape)


def contrast_gamma(x: torch.Tensor, gamma: float, setting: Setting) -> torch.Tensor:
    """Each channel's foreground range mapped to [0, 1], raised to ``gamma``, mapped back."""
    lo, hi = _foreground_range(x)
    span = (hi - lo).clamp(min=1e-12)
    return _on_channels(x, setting, ((x - lo) / span).clamp(0, 1) ** gamma * span + lo)


def ghosting(x: torch.Tensor, ghosts: float, intensity: float, setting: Setting) -> torch.Tensor:
    """Every k-space plane of a seeded axis at a non-zero multiple of ``ghosts`` scaled by ``1 - intensity``."""
    axis = seeded_axis(x, setting.generator)
    axes = spatial_axes(x)
    k = torch.fft.rfftn(x, dim=axes)
    f = frequencies(x, axis, onesided=axis == axes[-1])
    planes = torch.where((f % round(ghosts) == 0) & (f != 0), 1.0 - intensity, 1.0)
    out = torch.fft.irfftn(k * planes.to(k.dtype), s=x.shape[2:], dim=axes).abs()
    return _on_channels(x, setting, out.to(x.dtype))


def downsampling(x: torch.Tensor, factor: float, setting: Setting) -> torch.Tensor:
    """A seeded axis area-downsampled by ``factor`` and linearly upsampled back."""
    axis = seeded_axis(x, setting.generator)
    size = list(x.shape[2:])
    size[axis - 2] = max(1, round(size[axis - 2] / factor))
    down = F.interpolate(x, size=size, mode="area")
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return _on_channels(x, setting, F.interpolate(down, size=x.shape[2:], mode=mode, align_corners=False))


def motion_from_poses(
    x: torch.Tensor,
    poses: list[tuple[torch.Tensor, list[float]]],
    bounds: list[int],
    axis: int,
    spacing: tuple[float, ...],
) -> torch.Tensor:
    """The magnitude image of k-space composed along ``axis`` (centred frequencies): segment ``j`` (``bounds[j]`` to
    ``bounds[j + 1]``) from ``x`` in pose ``poses[j]`` (``None``: as it is).

    Only ``axis`` is Fourier transformed: a segment is a set of whole planes of that axis, so composing them commutes
    with the transform along the other axes, and the inverse of the full transform of the composed k-space equals the
    inverse along ``axis`` of the composition of the one-axis spectra (the same image, a third of the transforms).
    Each spectrum is taken only over the lines of ``axis`` its image can be nonzero on (a brain's box is about 40 %
    of its grid; every other line's spectrum is 0), each pose resampled only where it can be nonzero
    (:func:`~robustseg.corruptions.geometric.rigid_block`). The spectra stay in FFT order: centred plane ``i`` is FFT
    plane ``(i - n // 2) % n``, so nothing is shifted."""
    n = x.shape[axis]
    source = support(x)
    if source is None:
        return x.clone()
    keep = slice(None), slice(None)
    out = torch.zeros(x.shape, dtype=torch.complex128 if x.dtype == torch.float64 else torch.complex64, device=x.device)
    lines = _lines(source, axis, n)
    out[(*keep, *lines)] = torch.fft.fft(x[(*keep, *lines)], dim=axis)
    hull = lines
    for j, pose in enumerate(poses):
        lo, hi = bounds[j], bounds[j + 1]
        if pose is None or hi <= lo:
            continue
        planes = ((torch.arange(lo, hi) - n // 2) % n).to(x.device)
        out.index_fill_(axis, planes, 0)
        box, values = rigid_block(x, pose[0], pose[1], spacing, source)
        if box is None or values is None:
            continue
        region = _lines(box, axis, n)
        block = x.new_zeros((*x.shape[:2], *(r.stop - r.start for r in region)))
        block[(*keep, *(b if d == axis - 2 else slice(None) for d, b in enumerate(box)))] = values
        spectrum = torch.fft.fft(block, dim=axis).index_select(axis, planes)
        out[(*keep, *region)].index_copy_(axis, planes, spectrum)
        hull = tuple(slice(min(h.start, r.start), max(h.stop, r.stop)) for h, r in zip(hull, region, strict=True))
    image = x.new_zeros(x.shape)
    image[(*keep, *hull)] = torch.fft.ifft(out[(*keep, *hull)], dim=axis).abs().to(x.dtype)
    return image


def _lines(box: tuple[slice, ...], axis: int, n: int) -> tuple[slice, ...]:
    """``box`` with ``axis`` (of the batch, ``n`` long) whole: every line along ``axis`` that crosses it."""
    return tuple(slice(0, n) if d == axis - 2 else b for d, b in enumerate(box))


def motion(x: torch.Tensor, degrees: float, translation_mm: float, transforms: float, setting: Setting) -> torch.Tensor:
    """Motion during the scan (see the module): ``transforms`` k-space segments, seeded poses."""
    g = setting.generator
    axis = seeded_axis(x, g)
    dims = x.ndim - 2
    size = x.shape[axis]
    n = max(1, round(transforms))
    cuts = sorted(int(c) for c in (torch.rand(n - 1, generator=g, dtype=torch.float64) * size).tolist())
    bounds = [0, *cuts, size]
    poses: list[Any] = []
    for j in range(n):
        planes = 1 if dims == 2 else 3
        angles = [
            math.radians(float(a)) for a in (torch.rand(planes, generator=g, dtype=torch.float64) * 2 - 1) * degrees
        ]
        shift = [float(t) for t in (torch.rand(dims, generator=g, dtype=torch.float64) * 2 - 1) * translation_mm]
        holds_centre = bounds[j] <= size // 2 < bounds[j + 1]
        poses.append(None if holds_centre else (rotation_matrix(angles), shift))
    return _on_channels(x, setting, motion_from_poses(x, poses, bounds, axis, setting.spacing_for(x)))


def _pair(x: torch.Tensor, setting: Setting) -> tuple[int, int]:
    chosen = _selected(x, setting)
    if len(chosen) != 2:
        raise ValueError(f"sequence_swap needs two channels (e.g. [2, 3] for T2 and FLAIR) but was given {chosen}.")
    return chosen[0], chosen[1]


def sequence_swap(x: torch.Tensor, share: float, setting: Setting) -> torch.Tensor:
    """Channels i and j of ``setting.channels`` become ``(1 - share) x_i + share x_j`` and vice versa."""
    i, j = _pair(x, setting)
    out = x.clone()
    out[:, i] = (1 - share) * x[:, i] + share * x[:, j]
    out[:, j] = (1 - share) * x[:, j] + share * x[:, i]
    return out


def missing_sequence(x: torch.Tensor, share: float, setting: Setting) -> torch.Tensor:
    """A block of ``share`` of the last axis's slices of the chosen channels zeroed, from a seeded end."""
    n = x.shape[-1]
    count = min(n, max(1, round(share * n)))
    from_top = bool(torch.randint(0, 2, (1,), generator=setting.generator))
    start = n - count if from_top else 0
    out = x.clone()
    out[:, _selected(x, setting), ..., start : start + count] = 0
    return out


def misregistration(x: torch.Tensor, shift_mm: float, setting: Setting) -> torch.Tensor:
    """The chosen channels shifted by ``shift_mm`` along a seeded axis and direction (zero fill, linear)."""
    g = setting.generator
    axis = seeded_axis(x, g)
    sign = 1.0 if bool(torch.randint(0, 2, (1,), generator=g)) else -1.0
    shift = sign * shift_mm / setting.spacing_for(x)[axis - 2]
    whole, part = math.floor(shift), shift - math.floor(shift)
    moved = (1 - part) * _roll(x, whole, axis) + part * _roll(x, whole + 1, axis)
    return _on_channels(x, setting, moved)


def _roll(x: torch.Tensor, shift: int, axis: int) -> torch.Tensor:
    """``x`` moved by ``shift`` voxels along ``axis`` (positive: to higher indices), zeros coming in."""
    n = x.shape[axis]
    out = torch.zeros_like(x)
    if abs(shift) >= n:
        return out
    if shift >= 0:
        out.narrow(axis, shift, n - shift).copy_(x.narrow(axis, 0, n - shift))
    else:
        out.narrow(axis, 0, n + shift).copy_(x.narrow(axis, -shift, n + shift))
    return out


def shell_radius(thickness_mm: float, spacing: tuple[float, ...]) -> list[int]:
    """The dilation radius in voxels per spatial axis of a shell ``thickness_mm`` thick (at least one voxel)."""
    return [max(1, round(thickness_mm / s)) for s in spacing]


def _box_dilate(mask: torch.Tensor, radius: list[int]) -> torch.Tensor:
    """``mask`` ``(B, 1, *spatial)`` dilated by a box of ``radius`` voxels per axis: a windowed sum by cumulative sums,
    one axis at a time (cheaper than max pooling on CPU)."""
    out = mask.to(torch.int32)
    for axis, r in zip(range(2, mask.ndim), radius, strict=True):
        n = out.shape[axis]
        padded = F.pad(out.movedim(axis, -1), (r + 1, r)).cumsum(-1)
        window = padded[..., 2 * r + 1 : 2 * r + 1 + n] - padded[..., :n]
        out = window.movedim(-1, axis)
    return out > 0


def _profile(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A smooth random profile in [0, 1] along an axis of ``n`` voxels (8 knots, linearly interpolated)."""
    knots = torch.rand((1, 1, 8), generator=g, dtype=dtype)
    return F.interpolate(knots, size=n, mode="linear", align_corners=True)[0, 0]


def skull_strip(x: torch.Tensor, thickness_mm: float, setting: Setting) -> torch.Tensor:
    """A shell of bright tissue ``thickness_mm`` thick around the brain (see the module)."""
    brain = x.ne(0).any(1, keepdim=True)
    shell = _box_dilate(brain, shell_radius(thickness_mm, setting.spacing_for(x))) & ~brain
    level = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
    for b in range(x.shape[0]):
        inside = brain[b, 0].flatten().nonzero()[:, 0]
        if inside.numel():  # each channel's nearest-rank 90th percentile over the brain
            values = x[b].flatten(1)[:, inside]
            level[b] = values.kthvalue(max(1, math.ceil(0.9 * inside.numel())), dim=1).values
    dims = x.ndim - 2
    texture = torch.zeros(x.shape[2:], dtype=x.dtype)
    for k, n in enumerate(x.shape[2:]):  # a smooth texture: the mean of one random profile per axis
        shape = [1] * dims
        shape[k] = n
        texture = texture + _profile(n, setting.generator, x.dtype).view(shape) / dims
    tissue = shell * (0.8 + 0.4 * texture.to(x.device))
    out = torch.addcmul(x, level.view(*x.shape[:2], *([1] * dims)), tissue)  # x is 0 on the shell
    return _on_channels(x, setting, out)
