"""Randomized smoothing for segmentation: SegCertify (Fischer et al., ICML 2021), optionally denoised (Laousy et al.).

The smoothed segmenter labels voxel ``v`` with the class the base model predicts most often at ``v`` under Gaussian
noise ``N(0, sigma^2 I)`` added to the whole input. :meth:`SegmentationSmoother.certify` follows SegCertify:

1. draw ``n0`` noisy samples and take each voxel's most frequent class ``c_v``;
2. draw ``n`` fresh samples and count ``k_v``, how often ``c_v`` came up at ``v``;
3. test ``H0: p_{c_v} <= tau`` per voxel (one-sided binomial), correct over all voxels (Holm or Bonferroni) at
   family-wise level ``alpha``; voxels whose test does not reject get :data:`ABSTAIN`.

Guarantee: with probability at least ``1 - alpha`` over the noise, every voxel not abstained keeps its class under
any perturbation ``delta`` of the input with ``||delta||_2 < R = sigma * PhiInv(tau)``. The radius is in the model's
input units (standard deviations of the z-scored MRI).

Votes are counted as the samples stream in batches (memory does not grow with ``n``), every sample of a batch gets its
own noise draw (the public SegCertify code reused one draw per batch, which made its votes dependent), and the noise
comes from a seeded ``torch.Generator``: the same seed gives the same certificate. A denoiser (e.g.
:class:`robustseg.certification.denoiser.DiffusionDenoiser`) called as ``denoiser(noisy, sigma)`` may clean each
sample before the base model sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch
from monai.transforms import RandGaussianNoised
from scipy import stats
from torch import nn

from robustseg.certification.statistics import (
    certify_counts,
    check_alpha,
    check_correction,
    check_count,
    check_tau,
    reject,
)
from robustseg.labels import BRATS, LabelScheme

__all__ = ["ABSTAIN", "Certificate", "SegmentationSmoother", "certified_radius", "check_sigma", "noise_augmentation"]

ABSTAIN = -1
"""Class of a voxel the smoothed segmenter does not certify (or, in ``predict``, does not decide)."""

Inferer = Callable[[torch.Tensor, nn.Module], torch.Tensor]
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0 but is {sigma}; it is in the model's input units.")
    return sigma


def noise_augmentation(sigma: float, keys: str = "image") -> RandGaussianNoised:
    """The training augmentation of a base model for smoothing: Gaussian noise of exactly ``sigma`` on every sample.

    Unlike MONAI's default, the std is not drawn from ``[0, sigma]`` (``sample_std=False``): the model must learn the
    noise level it will be smoothed with (Cohen et al.). Noise covers the whole input, as in smoothing.
    """
    return RandGaussianNoised(keys=keys, prob=1.0, mean=0.0, std=check_sigma(sigma), sample_std=False)


def certified_radius(sigma: float, tau: float) -> float:
    """``R = sigma * PhiInv(tau)``: the L2 radius of every certified voxel (sigma 0.25, tau 0.75 -> 0.169)."""
    return float(sigma) * float(stats.norm.ppf(check_tau(tau)))


@dataclass(frozen=True)
class Certificate:
    """The certified segmentation of one case at one ``tau``.

    Attributes:
        classes: ``(*spatial)`` int64 class map, :data:`ABSTAIN` where not certified.
        counts: ``(*spatial)`` votes for each voxel's top class among the ``n`` samples.
        pvalues: ``(*spatial)`` one-sided binomial p-values (uncorrected), float64 numpy.
        sigma, tau, alpha, n0, n, correction: the settings; ``radius`` is ``sigma * PhiInv(tau)``.
    """

    classes: torch.Tensor
    counts: torch.Tensor
    pvalues: np.ndarray
    sigma: float
    tau: float
    alpha: float
    n0: int
    n: int
    correction: str

    @property
    def radius(self) -> float:
        return certified_radius(self.sigma, self.tau)

    @property
    def certified(self) -> torch.Tensor:
        return self.classes != ABSTAIN

    @property
    def abstain_rate(self) -> float:
        return float((self.classes == ABSTAIN).float().mean())


class SegmentationSmoother:
    """A base segmenter smoothed with Gaussian noise, with SegCertify's certificate and Cohen et al.'s prediction.

    Args:
        model: the base segmenter (logits out); use one trained with Gaussian noise of the same ``sigma``.
        sigma: noise standard deviation, > 0, in the model's input units.
        inferer: how the model is run, e.g. the bundle's ``SlidingWindowInferer``; default: ``model(x)``.
        head: ``softmax`` or ``sigmoid`` (read through ``scheme``).
        scheme: label scheme that turns logits into class maps.
        denoiser: optional ``denoiser(noisy, sigma)`` applied to every noisy sample before the model.
        batch_size: noise samples per forward pass.
        seed: seed of the noise generator; each call of :meth:`certify` / :meth:`predict` restarts from it.

    Example:
        >>> import torch
        >>> from robustseg.certification import SegmentationSmoother
        >>> net = torch.nn.Conv3d(4, 4, 1)
        >>> smoother = SegmentationSmoother(net, sigma=0.25, batch_size=10)
        >>> cert = smoother.certify(torch.randn(1, 4, 8, 8, 8), n0=10, n=100, alpha=0.001, tau=0.75)
        >>> cert.classes.shape, round(cert.radius, 3)
        (torch.Size([8, 8, 8]), 0.169)
    """

    def __init__(
        self,
        model: nn.Module,
        sigma: float,
        *,
        inferer: Inferer | None = None,
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        denoiser: Denoiser | None = None,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module but is {type(model).__name__}.")
        self.sigma = check_sigma(sigma)
        self.head = scheme.check_head(head)
        self.model = model
        self.inferer = inferer
        self.scheme = scheme
        self.denoiser = denoiser
        self.batch_size = check_count(batch_size, "batch_size")
        self.seed = int(seed)

    # ------------------------------------------------------------------ sampling

    def _generator(self, device: torch.device, seed: int | None) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed if seed is None else int(seed))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5) or x.shape[0] != 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be one case (1, C, *spatial) with 2 or 3 spatial dims but is {shape}.")
        if not torch.isfinite(x).all():
            raise ValueError("x has NaN or infinite values; check the case's intensities.")
        return x.as_subclass(torch.Tensor)

    def noisy_batches(self, x: torch.Tensor, num: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """``num`` noisy copies of ``x`` in batches; each copy gets its own draw of ``N(0, sigma^2 I)``.

        The batches are written into one reused buffer (no allocation per batch): use each before asking for the next.
        """
        buffer = torch.empty((min(self.batch_size, num), *x.shape[1:]), device=x.device, dtype=x.dtype)
        remaining = num
        while remaining > 0:
            noisy = buffer[: min(self.batch_size, remaining)]
            torch.randn(noisy.shape, generator=generator, out=noisy)
            yield torch.add(x, noisy, alpha=self.sigma, out=noisy)  # x + sigma * z in one pass
            remaining -= len(noisy)

    def _classes(self, noisy: torch.Tensor) -> torch.Tensor:
        """Class maps ``(b, *spatial)`` of a batch of noisy inputs (denoised first when a denoiser is set)."""
        if self.denoiser is not None:
            noisy = self.denoiser(noisy, self.sigma)
        logits = self.inferer(noisy, self.model) if self.inferer is not None else self.model(noisy)
        return self.scheme.class_map_from_logits(torch.as_tensor(logits), head=self.head)[:, 0]

    @torch.no_grad()
    def class_counts(self, x: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """Votes per class and voxel ``(K, *spatial)`` (int32) over ``num`` noisy samples."""
        k = self.scheme.num_classes
        counts = torch.zeros((k, x[0, 0].numel()), dtype=torch.int32, device=x.device)
        ones = torch.ones((min(self.batch_size, num), x[0, 0].numel()), dtype=torch.int32, device=x.device)
        for noisy in self.noisy_batches(x, num, generator):
            classes = self._classes(noisy).reshape(len(noisy), -1)
            counts.scatter_add_(0, classes, ones[: len(noisy)])
        return counts.reshape(k, *x.shape[2:])

    @torch.no_grad()
    def votes_for(self, x: torch.Tensor, num: int, classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Votes for the given class of each voxel ``(*spatial)`` (int32) over ``num`` noisy samples."""
        votes = torch.zeros(classes.shape, dtype=torch.int32, device=x.device)
        for noisy in self.noisy_batches(x, num, generator):
            votes += (self._classes(noisy) == classes).sum(0, dtype=torch.int32)
        return votes

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The input as a plain tensor, with the model put in eval mode (its mode is restored by the caller)."""
        was_training = self.model.training
        self.model.eval()
        return self._check_input(x), was_training

    # ------------------------------------------------------------------ SegCertify and Cohen's predict

    @overload
    def certify(
        self,
        x: torch.Tensor,
        n0: int = ...,
        n: int = ...,
        alpha: float = ...,
        tau: float = ...,
        correction: str = ...,
        seed: int | None = ...,
    ) -> Certificate: ...

    @overload
    def certify(
        self,
        x: torch.Tensor,
        n0: int = ...,
        n: int = ...,
        alpha: float = ...,
        *,
        tau: Sequence[float],
        correction: str = ...,
        seed: int | None = ...,
    ) -> list[Certificate]: ...

    def certify(
        self,
        x: torch.Tensor,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 1e-4,
        tau: float | Sequence[float] = 0.75,
        correction: str = "holm",
        seed: int | None = None,
    ) -> Certificate | list[Certificate]:
        """SegCertify on one case ``(1, C, *spatial)``; a list of certificates when ``tau`` is a sequence.

        The ``n0`` selection samples and the ``n`` counting samples are drawn once and shared by every ``tau``.
        """
        taus = [check_tau(t) for t in (tau if isinstance(tau, Sequence) else [tau])]
        n0, n, alpha = check_count(n0, "n0"), check_count(n, "n"), check_alpha(alpha)
        check_correction(correction)
        x, was_training = self._run(x)
        try:
            generator = self._generator(x.device, seed)
            top = self.class_counts(x, n0, generator).max(dim=0).indices
            votes = self.votes_for(x, n, top, generator)
        finally:
            self.model.train(was_training)
        out = []
        for t in taus:
            certified, pvalues = certify_counts(votes, n, t, alpha, correction)
            classes = torch.where(torch.as_tensor(certified, device=top.device), top, torch.full_like(top, ABSTAIN))
            out.append(Certificate(classes, votes, pvalues, self.sigma, t, alpha, n0, n, correction))
        return out if isinstance(tau, Sequence) else out[0]

    def predict(
        self,
        x: torch.Tensor,
        n: int = 100,
        alpha: float = 1e-3,
        correction: str = "holm",
        seed: int | None = None,
    ) -> torch.Tensor:
        """Cohen et al.'s PREDICT per voxel: the smoothed class map ``(*spatial)``, :data:`ABSTAIN` where undecided.

        With ``n_A`` and ``n_B`` the votes of a voxel's top two classes, the voxel keeps its top class when the
        two-sided binomial test of ``n_A`` out of ``n_A + n_B`` at ``p = 1/2`` rejects, after the correction over all
        voxels at level ``alpha``; then, with probability at least ``1 - alpha``, every decided voxel agrees with the
        smoothed segmenter. No radius is claimed.
        """
        n, alpha = check_count(n, "n"), check_alpha(alpha)
        check_correction(correction)
        x, was_training = self._run(x)
        try:
            counts = self.class_counts(x, n, self._generator(x.device, seed))
        finally:
            self.model.train(was_training)
        top2 = counts.topk(2, dim=0)
        n_a, n_b = top2.values[0].cpu().numpy(), top2.values[1].cpu().numpy()
        pvalues = np.minimum(1.0, 2.0 * stats.binom.cdf(n_b, n_a + n_b, 0.5))
        pvalues[n_a == n_b] = 1.0
        decided = reject(pvalues, alpha, correction)
        top = top2.indices[0]
        return torch.where(torch.as_tensor(decided, device=top.device), top, torch.full_like(top, ABSTAIN))
