"""The threat model: which perturbations an attacker may add to a model's input.

A :class:`ThreatModel` states the norm (L-inf or L2), the budget ``eps`` and its unit, optional per-channel clip bounds
and a perturbation mask. Perturbations live in the model's input space, after intensity normalisation: for z-scored
MRI ``eps`` is in standard deviations of the input, for natural images in [0, 1] pixel units. Every operation works
per case on ``(N, C, *spatial)`` tensors with any number of spatial dims.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["NORMS", "ThreatModel", "per_sample_norm", "psnr_db"]

NORMS: tuple[str, ...] = ("linf", "l2")
"""The norms a :class:`ThreatModel` can bound."""

MASK_POLICIES: tuple[str, ...] = ("nonzero", "none")

NOISES: tuple[str, ...] = ("uniform", "gaussian")
"""Distributions of :meth:`ThreatModel.noise`."""

_TINY = 1e-12

Bound = float | Sequence[float] | torch.Tensor


def per_sample_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Norm of each case of ``t`` ``(N, ...)`` over all non-batch dims, shape ``(N,)``.

    Args:
        t: any tensor with the batch first.
        norm: ``"linf"`` (largest absolute value) or ``"l2"`` (Euclidean norm).
    """
    flat = t.reshape(t.shape[0], -1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(t.shape[0])
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    raise ValueError(f"norm must be one of {list(NORMS)} but is {norm!r}.")


def psnr_db(clean: torch.Tensor, perturbation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR ``(N,)`` in dB of ``clean + perturbation`` against ``clean`` over the masked voxels.

    The peak is the clean masked intensity range (max - min over channels and masked voxels); ``inf`` when nothing
    changed.
    """
    m = mask.expand_as(clean).bool()
    out = []
    for c, d, k in zip(clean, perturbation, m, strict=True):
        values, changes = c[k], d[k]
        mse = float((changes.double() ** 2).mean()) if changes.numel() else 0.0
        if mse == 0.0:
            out.append(math.inf)
            continue
        peak = float(values.max() - values.min())
        out.append(10 * math.log10(peak**2 / mse) if peak > 0 else -math.inf)
    return torch.tensor(out, dtype=torch.float64)


def _per_batch(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-case values ``(N,)`` to broadcast over ``like`` ``(N, ...)``."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass
class ThreatModel:
    """An eps-ball in the model's input space, restricted to a mask and to clip bounds.

    Args:
        norm: ``"linf"`` or ``"l2"``. The L2 norm of a case is taken over all its channels and voxels.
        eps: radius of the ball, > 0, in ``unit``.
        unit: what one unit of ``eps`` is, quoted in reports: ``"std of z-scored input"`` for normalised MRI,
            ``"[0,1] pixel"`` for natural images.
        clip_min: lower bound of the perturbed input: a float, one value per channel, or a tensor broadcastable to
            the input; ``None`` for no bound.
        clip_max: upper bound, like ``clip_min``.
        mask: where the attacker may act. ``"nonzero"`` (default, for MRI): voxels where any channel is non-zero,
            i.e. the brain, because perturbing the zero background is trivially detectable; ``"none"``: everywhere;
            or a tensor broadcastable to ``(N, 1, *spatial)``, non-zero where perturbing is allowed.

    Example:
        >>> threat = ThreatModel("linf", eps=0.05, unit="std of z-scored input")
        >>> x = torch.randn(2, 4, 16, 16, 16)
        >>> delta = threat.project(torch.randn_like(x), x)
        >>> bool(delta.abs().max() <= 0.05)
        True
    """

    norm: str
    eps: float
    unit: str = "std of z-scored input"
    clip_min: Bound | None = None
    clip_max: Bound | None = None
    mask: str | torch.Tensor = "nonzero"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)} but is {self.norm!r}.")
        eps = float(self.eps)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0 but is {self.eps!r}.")
        self.eps = eps
        if isinstance(self.mask, str) and self.mask not in MASK_POLICIES:
            raise ValueError(f"mask must be one of {list(MASK_POLICIES)} or a tensor but is {self.mask!r}.")
        if not isinstance(self.mask, str | torch.Tensor):
            raise ValueError(
                f"mask must be one of {list(MASK_POLICIES)} or a tensor but is {type(self.mask).__name__}."
            )

    def describe(self) -> str:
        """One line for reports, e.g. ``"linf eps=0.05 (std of z-scored input), mask=nonzero"``."""
        mask = self.mask if isinstance(self.mask, str) else "tensor"
        return f"{self.norm} eps={self.eps:g} ({self.unit}), mask={mask}"

    def mask_for(self, x: torch.Tensor) -> torch.Tensor:
        """Perturbation mask ``(N, 1, *spatial)`` (float 0/1) for the clean input ``x`` ``(N, C, *spatial)``."""
        shape = (x.shape[0], 1, *x.shape[2:])
        if isinstance(self.mask, torch.Tensor):
            m = self.mask.to(device=x.device)
            try:
                ok = m.ndim <= len(shape) and torch.broadcast_shapes(m.shape, shape) == torch.Size(shape)
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"mask of shape {tuple(m.shape)} does not broadcast to (N, 1, *spatial) = {shape} "
                    f"of the input {tuple(x.shape)}."
                )
            return (m != 0).to(x.dtype).expand(shape)
        if self.mask == "none":
            return x.new_ones(shape)
        return (x != 0).any(dim=1, keepdim=True).to(x.dtype)

    def bounds_for(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Clip bounds broadcastable to ``x`` ``(N, C, *spatial)``, or ``None`` where there is no bound."""
        return self._bound(self.clip_min, x, "clip_min"), self._bound(self.clip_max, x, "clip_max")

    @staticmethod
    def _bound(value: Bound | None, x: torch.Tensor, name: str) -> torch.Tensor | None:
        if value is None:
            return None
        t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            return t
        if t.ndim == 1:
            if t.numel() != x.shape[1]:
                raise ValueError(f"{name} has {t.numel()} values but the input has {x.shape[1]} channels.")
            return t.reshape(1, -1, *([1] * (x.ndim - 2)))
        try:
            torch.broadcast_shapes(t.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast to the input {tuple(x.shape)}."
            ) from None
        return t

    def project(self, delta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Make ``delta`` an allowed perturbation of ``x``: masked, inside the eps-ball per case, inside clip bounds.

        The steps run in this order: zero ``delta`` outside the mask; project each case onto the ball (clamp for L-inf,
        rescale for L2); clamp ``x + delta`` into the clip bounds. Clamping only shrinks each component of ``delta``, so
        the result stays in the ball and zero outside the mask. A clean voxel that already lies outside the bounds is
        neither moved further out nor pulled in. For L2 with clip bounds this is a feasible point, not the exact
        Euclidean projection onto the intersection.

        Args:
            delta: perturbation ``(N, C, *spatial)``.
            x: clean input ``(N, C, *spatial)``.

        Returns:
            The projected perturbation, same shape as ``delta``.
        """
        delta = delta * self.mask_for(x)
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            factor = (self.eps / per_sample_norm(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)
            delta = delta * _per_batch(factor, delta)
        lo, hi = self.bounds_for(x)
        if lo is None and hi is None:
            return delta
        adv = x + delta
        if lo is not None:
            adv = torch.maximum(adv, torch.minimum(lo, x))
        if hi is not None:
            adv = torch.minimum(adv, torch.maximum(hi, x))
        return adv - x

    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random allowed perturbation of ``x``: uniform in the L-inf ball, or uniform in the L2 ball.

        For L2 the direction is an isotropic Gaussian over the masked entries, normalised, and the radius is
        ``eps * U^(1/d)`` with ``d`` the number of masked entries, which is uniform in the ball's volume. The draw is
        masked and projected (clip bounds).

        Args:
            x: clean input ``(N, C, *spatial)``.
            generator: the source of randomness (drawn on its own device, then moved to ``x``'s).
        """
        mask = self.mask_for(x)
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
            return self.project((2 * u - 1) * self.eps * mask, x)
        g = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device) * mask
        u = torch.rand(x.shape[0], generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        d = (mask.reshape(x.shape[0], -1).sum(dim=1) * x.shape[1]).clamp_min(1)
        radius = self.eps * u ** (1.0 / d)
        direction = g / _per_batch(per_sample_norm(g, "l2").clamp_min(_TINY), g)
        return self.project(direction * _per_batch(radius, g), x)

    def noise(self, x: torch.Tensor, generator: torch.Generator, distribution: str | None = None) -> torch.Tensor:
        """Random noise of exactly this norm and budget on the masked voxels, then clipped: the baseline of an attack.

        The draw is ``uniform`` in [-1, 1] (default for L-inf) or ``gaussian`` (default for L2) per masked entry,
        scaled per case so that its norm is exactly ``eps``; clipping to the bounds can only shrink it. An attack
        that lowers Dice no more than this noise is not using its gradient.

        Args:
            x: clean input ``(N, C, *spatial)``.
            generator: the source of randomness (drawn on its own device, then moved to ``x``'s).
            distribution: ``uniform`` or ``gaussian``; ``None`` for the norm's default.
        """
        distribution = distribution or ("uniform" if self.norm == "linf" else "gaussian")
        if distribution not in NOISES:
            raise ValueError(f"noise distribution must be one of {list(NOISES)} but is {distribution!r}.")
        if distribution == "uniform":
            draw = 2 * torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype) - 1
        else:
            draw = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        draw = draw.to(x.device) * self.mask_for(x)
        size = per_sample_norm(draw, self.norm).clamp_min(_TINY)
        return self.project(draw * _per_batch(self.eps / size, draw), x)

    def step(self, grad: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Steepest-ascent direction of unit size for the norm: ``sign(grad)`` (L-inf) or ``grad / ||grad||_2`` (L2).

        Args:
            grad: gradient of the loss w.r.t. the input, ``(N, C, *spatial)``.
            mask: optional ``(N, 1, *spatial)`` mask applied before normalising, so the L2 step is not wasted on
                voxels that :meth:`project` zeroes.
        """
        if mask is not None:
            grad = grad * mask
        if self.norm == "linf":
            return grad.sign()
        return grad / _per_batch(per_sample_norm(grad, "l2").clamp_min(_TINY), grad)
