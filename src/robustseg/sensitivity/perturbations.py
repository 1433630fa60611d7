"""Basis perturbations with a magnitude in [0, 1]: the seed's natural-image ops and MRI scanner physics.

Every op acts on a batch ``(B, C, *spatial)`` in torch, on the device the batch is on, and is the identity at
magnitude 0. Random parts (a shear's sign, a bias field's coefficients, noise) come from a generator seeded by the
caller, so the same seed gives the same output. Geometric ops move the label with the image (nearest neighbour).

Natural images (2-D, RGB in [0, 1]); the seed's factors, PIL's definitions:
- ``brightness_up`` / ``brightness_down``: ``x * f``, f = 1 + m / 1 - 0.6 m;
- ``colour_up`` / ``colour_down``: blend with the ITU-R 601 grey image, f = 1 + 2 m / 1 - 0.3 m;
- ``contrast_up`` / ``contrast_down``: blend with the grey image's mean, f = 1 + m / 1 - 0.6 m;
- ``sharpness_up`` / ``sharpness_down``: PIL's 3x3 smoothing blend, f = 1 + m / 1 - 0.6 m;
- ``posterize``: keep 8 - round(7 m) bits (the seed's int((1 - m) 4) bits is not the identity at 0);
- ``solarize``: invert values above 1 - m (kornia's solarize inverts at its threshold, so 0 would not be identity);
- ``shear_x`` / ``shear_y`` (0.3 m), ``translate_x`` / ``translate_y`` (m W / 4, m H / 4), ``rotate`` (45 m degrees),
  each of a seeded random sign, by torch's grid sampling; the label by nearest neighbour, ``label_fill`` outside;
- ``blur``: a separable Gaussian (taps to 3 sigma, reflected borders), sigma 3 m pixels;
- ``noise``: Gaussian, std 0.2 m, clipped to [0, 1] (floats, no uint8 wrap-around).

MRI (2-D or 3-D, raw intensities, before normalisation; ``channels`` picks the sequences, default all):
- ``bias_field``: ``x * exp(0.6 m p)``, p a seeded sum of Legendre products of degree <= 3 scaled to max |p| = 1;
- ``rician``: ``sqrt((x + n1)^2 + n2^2)``, n1, n2 Gaussian of std 0.5 m times the channel's foreground std;
- ``mri_blur``: the same Gaussian with zero borders, sigma 2 m voxels;
- ``gamma_up`` / ``gamma_down``: per-channel min-max rescaled, raised to 1 + 2 m / 1 - 0.7 m, rescaled back;
- ``gibbs``: k-space truncated to frequencies within (1 - 0.8 m) / 2 of the band on every axis (ringing);
- ``spike``: a k-space spike per channel at a seeded off-centre frequency and its mirror, each 0.05 m |DC|;
- ``ghosting``: every 4th k-space line of the first axis (the centre line kept) scaled by 1 - 2.5 m;
- ``low_resolution``: area-downsampled by 1 + 3 m, then linearly upsampled back.
Fourier ops use torch's batched one-sided FFT (Hermitian edits, so the image stays real) and keep the magnitude.

Measured against the libraries (scripts/bench_perturbations.py, 2 CPU cores, a 128 x 128 RGB scene and label, a
4 x 72 x 80 x 64 phantom): kornia 0.9's warp_affine took 1.0-1.7 ms and its sharpness 0.7 ms where grid_sample on one
shared grid takes 0.5 ms and the 3 x 3 blend 0.4 ms; MONAI's GaussianFilter took 11-17 ms on the phantom where
shifted weighted sums take 4.5 ms; TorchIO's k-space artefacts cost seconds per volume (REFERENCES). So these ops are
torch code here, each checked against Pillow or a k-space computation in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MRI_OPS", "NATURAL_OPS", "OPS", "BasisOp", "check_request", "perturb"]

Label = torch.Tensor | None
Channels = Sequence[int] | None
Apply = Callable[[torch.Tensor, Label, float, torch.Generator, int, Channels], tuple[torch.Tensor, Label]]


@dataclass(frozen=True)
class BasisOp:
    """One basis perturbation: its name, domain (``natural`` or ``mri``), spatial dims and whether it moves voxels."""

    name: str
    domain: str
    dims: tuple[int, ...]
    geometric: bool
    apply: Apply


def _grey(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, *([1] * (x.ndim - 2)))
    return (x * weights).sum(1, keepdim=True) if x.shape[1] == 3 else x.mean(1, keepdim=True)


def _blend(x: torch.Tensor, base: torch.Tensor, factor: float) -> torch.Tensor:
    return (base + factor * (x - base)).clamp(0.0, 1.0)


def _photometric(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Apply:
    def apply(
        x: torch.Tensor, label: Label, m: float, _g: torch.Generator, _fill: int, _c: Channels
    ) -> tuple[torch.Tensor, Label]:
        return fn(x, m), label

    return apply


def _posterize(x: torch.Tensor, m: float) -> torch.Tensor:
    shift = 8 - (8 - round(7 * m))
    levels = torch.floor(x.clamp(0, 1) * 255 + 0.5).to(torch.int32)
    return ((levels >> shift) << shift).to(x.dtype) / 255


def gaussian(x: torch.Tensor, sigma: float, padding: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of every spatial axis (taps to 3 sigma) as weighted sums of shifted views.

    Measured on the demo's cases: 4x faster than depthwise convolutions (and MONAI's GaussianFilter) on CPU.
    """
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = (kernel / kernel.sum()).tolist()
    out = F.pad(x, [radius] * (2 * (x.ndim - 2)), mode=padding if padding == "reflect" else "constant")
    for axis in range(2, x.ndim):
        n = out.shape[axis] - 2 * radius
        total = out.narrow(axis, 0, n) * weights[0]
        for shift in range(1, len(weights)):
            total.add_(out.narrow(axis, shift, n), alpha=weights[shift])
        out = total
    return out


def _sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's sharpness: blend with the image smoothed by PIL's 3x3 kernel (border pixels kept)."""
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype, device=x.device) / 13
    smooth = F.conv2d(x, kernel.expand(x.shape[1], 1, 3, 3), groups=x.shape[1]).clamp(0, 1)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return (degenerate + factor * (x - degenerate)).clamp(0, 1)


def _signs(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).double() * 2 - 1


def _warp(x: torch.Tensor, label: Label, thetas: list[list[list[float]]], fill: int) -> tuple[torch.Tensor, Label]:
    """Warp by ``(B, 2, 3)`` destination-to-source matrices in grid_sample's unit coordinates: one grid for both."""
    grid = F.affine_grid(torch.tensor(thetas, dtype=x.dtype, device=x.device), list(x.shape), align_corners=True)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if label is None:
        return moved, None
    shifted = label.to(x.dtype) - fill  # nearest neighbour; outside the image becomes the fill value
    warped = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    return moved, (warped + fill).round().to(label.dtype)


def _unit_theta(linear: np.ndarray, offset: np.ndarray, h: int, w: int) -> list[list[float]]:
    """``p -> linear (p - c) + c + offset`` in pixels (x, y), as grid_sample's destination-to-source matrix."""
    scale = np.diag([max(w - 1, 1) / 2, max(h - 1, 1) / 2])
    inverse = np.linalg.inv(np.linalg.inv(scale) @ linear @ scale)
    shift = -inverse @ np.linalg.solve(scale, offset)
    return np.concatenate([inverse, shift[:, None]], axis=1).tolist()


def _geometric(kind: str) -> Apply:
    def apply(
        x: torch.Tensor, label: Label, m: float, g: torch.Generator, fill: int, _c: Channels
    ) -> tuple[torch.Tensor, Label]:
        h, w = x.shape[-2:]
        thetas = []
        for sign in _signs(x.shape[0], g).tolist():
            linear, offset = np.eye(2), np.zeros(2)
            if kind == "shear_x":
                linear[0, 1] = 0.3 * m * sign
            elif kind == "shear_y":
                linear[1, 0] = 0.3 * m * sign
            elif kind == "translate_x":
                offset[0] = m * w / 4 * sign
            elif kind == "translate_y":
                offset[1] = m * h / 4 * sign
            else:
                angle = math.radians(45 * m * sign)
                linear = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            thetas.append(_unit_theta(linear, offset, h, w))
        return _warp(x, label, thetas, fill)

    return apply


def _noise(
    x: torch.Tensor, label: Label, m: float, g: torch.Generator, _fill: int, _c: Channels
) -> tuple[torch.Tensor, Label]:
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return (x + 0.2 * m * noise).clamp(0.0, 1.0), label


def _on_channels(fn: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]) -> Apply:
    """An MRI op on the chosen channels (all when ``channels`` is None); the label stays as it is."""

    def apply(
        x: torch.Tensor, label: Label, m: float, g: torch.Generator, _fill: int, channels: Channels
    ) -> tuple[torch.Tensor, Label]:
        chosen = list(range(x.shape[1])) if channels is None else list(channels)
        if any(not 0 <= c < x.shape[1] for c in chosen):
            raise ValueError(f"channels {chosen} outside the image's {x.shape[1]} channels")
        out = x.clone()
        out[:, chosen] = fn(x[:, chosen], m, g).to(x.dtype)
        return out, label

    return apply


def legendre_basis(n: int, x: torch.Tensor) -> torch.Tensor:
    """Legendre polynomials P_0 .. P_3 on ``n`` points of [-1, 1]: ``(4, n)``."""
    t = torch.linspace(-1, 1, n, dtype=torch.float64, device=x.device)
    return torch.stack([torch.ones_like(t), t, (3 * t**2 - 1) / 2, (5 * t**3 - 3 * t) / 2])


def _bias_field(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    spatial = x.shape[2:]
    dims = len(spatial)
    coefficients = torch.rand((x.shape[0], x.shape[1], *(4,) * dims), generator=g, dtype=torch.float64) * 2 - 1
    orders = torch.stack(torch.meshgrid(*[torch.arange(4)] * dims, indexing="ij")).sum(0)
    coefficients = coefficients * ((orders > 0) & (orders <= 3)).double()  # degree 1 .. 3 products
    bases = [legendre_basis(n, x) for n in spatial]
    letters = "ijk"[:dims]
    axes = "xyz"[:dims]
    equation = f"bc{letters}," + ",".join(f"{i}{a}" for i, a in zip(letters, axes, strict=True)) + f"->bc{axes}"
    field = torch.einsum(equation, coefficients.to(x.device, x.dtype), *(b.to(x.dtype) for b in bases))
    peak = field.flatten(2).abs().max(-1).values.clamp(min=1e-12).view(*field.shape[:2], *([1] * dims))
    return x * torch.exp(field.mul_((0.6 * m) / peak))  # in the image's precision: float64 doubled its cost


def foreground_std(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(2)
    inside = flat != 0
    count = inside.sum(-1).clamp(min=2)
    mean = (flat * inside).sum(-1) / count
    var = (((flat - mean.unsqueeze(-1)) * inside) ** 2).sum(-1) / (count - 1)
    return var.sqrt().view(*x.shape[:2], *([1] * (x.ndim - 2)))


def _rician(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    std = 0.5 * m * foreground_std(x)
    noise = torch.randn((2, *x.shape), generator=g, dtype=x.dtype).to(x.device) * std
    return torch.hypot(x + noise[0], noise[1])


def _channel_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)
    shape = (*x.shape[:2], *([1] * (x.ndim - 2)))
    return flat.min(-1).values.view(shape), flat.max(-1).values.view(shape)


def _gamma(gamma_of: Callable[[float], float]) -> Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]:
    def fn(x: torch.Tensor, m: float, _g: torch.Generator) -> torch.Tensor:
        lo, hi = _channel_range(x)
        span = (hi - lo).clamp(min=1e-12)
        return ((x - lo) / span).clamp(0, 1) ** gamma_of(m) * span + lo

    return fn


def spatial_axes(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def frequencies(x: torch.Tensor, axis: int, onesided: bool = False) -> torch.Tensor:
    """Integer frequencies of spatial ``axis`` in FFT order (one-sided on the last axis of an rfft), broadcastable."""
    n = x.shape[axis]
    f = torch.fft.rfftfreq(n, 1 / n) if onesided else torch.fft.fftfreq(n, 1 / n)
    shape = [1] * (x.ndim - 2)
    shape[axis - 2] = len(f)
    return f.round().to(x.device).view(shape)


def _gibbs(x: torch.Tensor, m: float, _g: torch.Generator) -> torch.Tensor:
    axes = spatial_axes(x)
    k = torch.fft.rfftn(x, dim=axes)
    keep = 1.0 - 0.8 * m
    mask = torch.ones(k.shape[2:], dtype=torch.bool, device=x.device)
    for axis in axes:
        half = max(1, math.floor(x.shape[axis] * keep / 2))  # |frequency| <= half: the image stays real
        mask = mask & (frequencies(x, axis, onesided=axis == axes[-1]).abs() <= half)
    return torch.fft.irfftn(k * mask, s=x.shape[2:], dim=axes).abs()


def _spike(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    axes = spatial_axes(x)
    k = torch.fft.rfftn(x, dim=axes)  # one-sided: a spike here is a spike and its mirror, so the image stays real
    dc = k.flatten(2)[..., 0].abs()
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            # a frequency between 1/8 and 1/4 of the band on every axis: off centre, inside the spectrum
            where = tuple(int(torch.randint(max(1, n // 8), max(2, n // 4), (1,), generator=g)) for n in x.shape[2:])
            k[(b, c, *where)] += 0.05 * m * dc[b, c]
    return torch.fft.irfftn(k, s=x.shape[2:], dim=axes).abs()


GHOST_SPACING = 4


def _ghosting(x: torch.Tensor, m: float, _g: torch.Generator) -> torch.Tensor:
    axes = spatial_axes(x)
    k = torch.fft.rfftn(x, dim=axes)
    f = frequencies(x, 2, onesided=len(axes) == 1)
    lines = torch.where((f % GHOST_SPACING == 0) & (f != 0), 1.0 - 2.5 * m, 1.0)  # the centre line holds the contrast
    return torch.fft.irfftn(k * lines.to(k.dtype), s=x.shape[2:], dim=axes).abs()


def _low_resolution(x: torch.Tensor, m: float, _g: torch.Generator) -> torch.Tensor:
    factor = 1.0 + 3.0 * m
    small = [max(1, round(n / factor)) for n in x.shape[2:]]
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    down = F.interpolate(x, size=small, mode="area")
    return F.interpolate(down, size=x.shape[2:], mode=mode, align_corners=False)


def _natural(name: str, apply: Apply, geometric: bool = False) -> BasisOp:
    return BasisOp(name, "natural", (2,), geometric, apply)


def _mri(name: str, fn: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]) -> BasisOp:
    return BasisOp(name, "mri", (2, 3), False, _on_channels(fn))


NATURAL_OPS: dict[str, BasisOp] = {
    op.name: op
    for op in (
        _natural("brightness_up", _photometric(lambda x, m: (x * (1 + m)).clamp(0, 1))),
        _natural("brightness_down", _photometric(lambda x, m: (x * (1 - 0.6 * m)).clamp(0, 1))),
        _natural("colour_up", _photometric(lambda x, m: _blend(x, _grey(x), 1 + 2 * m))),
        _natural("colour_down", _photometric(lambda x, m: _blend(x, _grey(x), 1 - 0.3 * m))),
        _natural(
            "contrast_up", _photometric(lambda x, m: _blend(x, _grey(x).flatten(1).mean(1).view(-1, 1, 1, 1), 1 + m))
        ),
        _natural(
            "contrast_down",
            _photometric(lambda x, m: _blend(x, _grey(x).flatten(1).mean(1).view(-1, 1, 1, 1), 1 - 0.6 * m)),
        ),
        _natural("sharpness_up", _photometric(lambda x, m: _sharpness(x, 1 + m))),
        _natural("sharpness_down", _photometric(lambda x, m: _sharpness(x, 1 - 0.6 * m))),
        _natural("posterize", _photometric(_posterize)),
        _natural("solarize", _photometric(lambda x, m: torch.where(x > 1 - m, 1 - x, x))),
        _natural("shear_x", _geometric("shear_x"), geometric=True),
        _natural("shear_y", _geometric("shear_y"), geometric=True),
        _natural("translate_x", _geometric("translate_x"), geometric=True),
        _natural("translate_y", _geometric("translate_y"), geometric=True),
        _natural("rotate", _geometric("rotate"), geometric=True),
        _natural("blur", _photometric(lambda x, m: gaussian(x, 3 * m))),
        _natural("noise", _noise),
    )
}

MRI_OPS: dict[str, BasisOp] = {
    op.name: op
    for op in (
        _mri("bias_field", _bias_field),
        _mri("rician", _rician),
        _mri("mri_blur", lambda x, m, _g: gaussian(x, 2 * m, padding="zeros")),
        _mri("gamma_up", _gamma(lambda m: 1 + 2 * m)),
        _mri("gamma_down", _gamma(lambda m: 1 - 0.7 * m)),
        _mri("gibbs", _gibbs),
        _mri("spike", _spike),
        _mri("ghosting", _ghosting),
        _mri("low_resolution", _low_resolution),
    )
}

OPS: dict[str, BasisOp] = {**NATURAL_OPS, **MRI_OPS}


def check_request(op: str, magnitude: float) -> BasisOp:
    """The op of that name, if ``magnitude`` is in [0, 1]. Raises KeyError (with the known ops) or ValueError."""
    if op not in OPS:
        raise KeyError(f"unknown basis perturbation {op!r}; known: {sorted(OPS)}")
    if not 0.0 <= magnitude <= 1.0 or math.isnan(magnitude):
        raise ValueError(f"the magnitude of {op!r} must be in [0, 1], got {magnitude}")
    return OPS[op]


def perturb(
    image: torch.Tensor,
    label: torch.Tensor | None,
    op: str,
    magnitude: float,
    *,
    seed: int = 0,
    label_fill: int = 0,
    channels: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``op`` at ``magnitude`` on a batch ``(B, C, *spatial)`` (and its label ``(B, 1, *spatial)``, moved alike).

    Args:
        seed: seeds the op's random parts.
        label_fill: the label of voxels a geometric op brings in from outside the image (e.g. 255 for VOC's void).
        channels: the sequences an MRI op acts on (default all); ignored by natural-image ops.

    Raises:
        KeyError: an unknown op, with the known ones. ValueError: a magnitude outside [0, 1], or a batch of a shape
        the op does not take.
    """
    basis = check_request(op, magnitude)
    if image.ndim - 2 not in basis.dims:
        raise ValueError(f"{op!r} takes {basis.dims}-D batches (B, C, *spatial), got shape {tuple(image.shape)}")
    if basis.domain == "natural" and image.shape[1] not in (1, 3):
        raise ValueError(f"{op!r} takes 1- or 3-channel images in [0, 1], got {image.shape[1]} channels")
    if label is not None and (label.shape[0] != image.shape[0] or label.shape[2:] != image.shape[2:]):
        raise ValueError(f"label {tuple(label.shape)} does not match image {tuple(image.shape)}")
    if magnitude == 0.0:
        return image.clone(), None if label is None else label.clone()
    generator = torch.Generator().manual_seed(seed)
    return basis.apply(image, label, float(magnitude), generator, label_fill, channels)
