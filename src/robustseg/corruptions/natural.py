"""Common corruptions of natural images (Hendrycks & Dietterich's ImageNet-C, their ladders), batched in torch.

Each function takes raw RGB pixels ``(B, 3, H, W)`` in [0, ``setting.pixel_max``] (before the bundle scales them),
works on ``u = x / pixel_max`` and returns pixels of the same scale, clipped to the valid range:

- ``gaussian_noise``: ``u + n``, n Gaussian of std 0.08 .. 0.38;
- ``gaussian_blur``: a separable Gaussian of std 1 .. 6 pixels (taps to 3 std, mirrored borders);
- ``contrast``: ``(u - mean) c + mean`` per channel, c = 0.4 .. 0.05;
- ``brightness``: the HSV value raised by 0.1 .. 0.5 (hue and saturation kept);
- ``fog``: ``(u + t f) max(u) / (max(u) + t)``, f a seeded fractal field in [0, 1] of octave decay d, (t, d) = (1.5, 2)
  .. (3, 1.4);
- ``jpeg``: JPEG at quality 25 .. 7 (Pillow's encoder, 8-bit).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robustseg.corruptions.base import Setting
from robustseg.sensitivity.perturbations import gaussian

__all__ = ["brightness", "contrast", "fog", "fog_field", "gaussian_blur", "gaussian_noise", "jpeg"]


def _unit(x: torch.Tensor, setting: Setting) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"natural-image corruptions take RGB batches (B, 3, H, W) but got shape {tuple(x.shape)}.")
    return x / setting.pixel_max


def _pixels(u: torch.Tensor, setting: Setting) -> torch.Tensor:
    return u.clamp(0.0, 1.0) * setting.pixel_max


def gaussian_noise(x: torch.Tensor, std: float, setting: Setting) -> torch.Tensor:
    u = _unit(x, setting)
    noise = torch.randn(u.shape, generator=setting.generator, dtype=u.dtype).to(u.device)
    return _pixels(u + std * noise, setting)


def gaussian_blur(x: torch.Tensor, sigma: float, setting: Setting) -> torch.Tensor:
    return _pixels(gaussian(_unit(x, setting), sigma, padding="reflect"), setting)


def contrast(x: torch.Tensor, factor: float, setting: Setting) -> torch.Tensor:
    u = _unit(x, setting)
    mean = u.mean(dim=(2, 3), keepdim=True)
    return _pixels((u - mean) * factor + mean, setting)


def brightness(x: torch.Tensor, shift: float, setting: Setting) -> torch.Tensor:
    """HSV value + ``shift`` (clipped to 1): every channel scaled by V'/V, a black pixel becomes grey V'."""
    u = _unit(x, setting).clamp(0, 1)
    value = u.amax(1, keepdim=True)
    raised = (value + shift).clamp(max=1.0)
    scaled = torch.where(value > 0, u * raised / value.clamp(min=1e-12), raised.expand_as(u))
    return _pixels(scaled, setting)


def fog_field(shape: tuple[int, int, int], decay: float, g: torch.Generator) -> torch.Tensor:
    """``(B, 1, H, W)`` fractal noise in [0, 1]: octaves of bilinearly upsampled uniform noise on grids of 2, 4, ..
    cells, the octave of 2^k cells weighted by decay^-k (a larger decay: smoother fog)."""
    b, h, w = shape
    octaves = max(1, math.ceil(math.log2(max(h, w))))
    field = torch.zeros((b, 1, h, w), dtype=torch.float64)
    for k in range(1, octaves + 1):
        cells = 2**k
        noise = torch.rand((b, 1, cells + 1, cells + 1), generator=g, dtype=torch.float64)
        field += decay ** (-k) * F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=True)
    lo = field.flatten(1).min(1).values.view(b, 1, 1, 1)
    hi = field.flatten(1).max(1).values.view(b, 1, 1, 1)
    return (field - lo) / (hi - lo).clamp(min=1e-12)


def fog(x: torch.Tensor, thickness: float, decay: float, setting: Setting) -> torch.Tensor:
    u = _unit(x, setting)
    field = fog_field((u.shape[0], u.shape[2], u.shape[3]), decay, setting.generator).to(u.device, u.dtype)
    peak = u.flatten(1).amax(1).view(-1, 1, 1, 1)
    return _pixels((u + thickness * field) * peak / (peak + thickness), setting)


def jpeg(x: torch.Tensor, quality: float, setting: Setting) -> torch.Tensor:
    """Each image through Pillow's JPEG encoder at ``quality`` and back (8 bits)."""
    u = _unit(x, setting).clamp(0, 1)
    out = torch.empty_like(u)
    for b in range(u.shape[0]):
        pixels = (u[b].permute(1, 2, 0).detach().cpu().numpy() * 255 + 0.5).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=round(quality))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
        out[b] = torch.from_numpy(decoded).permute(2, 0, 1).to(u)
    return _pixels(out, setting)
