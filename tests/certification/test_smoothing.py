"""SegCertify and PREDICT on models whose behaviour under noise is known exactly (2-D and 3-D)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer
from scipy import stats
from torch import nn

from robustseg.certification import ABSTAIN, SegmentationSmoother, certified_radius
from robustseg.labels import BRATS, LabelScheme

TWO = LabelScheme(class_names=("background", "object"))
SHAPE = {2: (12, 10), 3: (6, 8, 5)}


class Constant(nn.Module):
    """Logits that favour one class everywhere, whatever the input."""

    def __init__(self, cls: int, classes: int = 4) -> None:
        super().__init__()
        self.cls, self.classes = cls, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((x.shape[0], self.classes, *x.shape[2:]))
        logits[:, self.cls] = 5.0
        return logits


class RandomClasses(nn.Module):
    """Uniformly random classes per voxel and call, from its own generator: the input does not matter."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.classes, self.generator = classes, torch.Generator().manual_seed(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand((x.shape[0], self.classes, *x.shape[2:]), generator=self.generator)


class SignOfNoise(nn.Module):
    """Class 1 where the first channel is positive: on a zero input, each voxel's class is the sign of its noise."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return torch.cat([-x[:, :1], x[:, :1]], dim=1)


class KnownProbabilities(nn.Module):
    """Class 0 at voxel v with probability p[v] under the smoother's noise on a zero input (x + sigma z)."""

    def __init__(self, p: torch.Tensor, sigma: float) -> None:
        super().__init__()
        self.p, self.sigma = p, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.special.ndtr(x[:, 0] / self.sigma)  # uniform on (0, 1) per voxel and sample
        class0 = (u < self.p).float()
        return torch.stack([class0, 1 - class0], dim=1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("sigma", "radius"), [(0.25, 0.169), (0.5, 0.337), (1.0, 0.674)])
def test_a_constant_model_certifies_every_voxel_with_the_stated_radius(dims: int, sigma: float, radius: float) -> None:
    smoother = SegmentationSmoother(Constant(2), sigma, batch_size=7)
    cert = smoother.certify(torch.randn(1, 4, *SHAPE[dims]), n0=10, n=100, alpha=1e-3, tau=0.75)
    assert cert.classes.shape == SHAPE[dims]
    assert (cert.classes == 2).all() and (cert.counts == 100).all() and cert.abstain_rate == 0.0
    assert cert.radius == pytest.approx(radius, abs=5e-4)  # REFERENCES: 0.169, 0.337, 0.674 at tau 0.75
    assert cert.radius == pytest.approx(sigma * stats.norm.ppf(0.75))
    assert (smoother.predict(torch.randn(1, 4, *SHAPE[dims]), n=50) == 2).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_a_model_with_random_classes_abstains_almost_everywhere(dims: int) -> None:
    smoother = SegmentationSmoother(RandomClasses(), 0.25, batch_size=16)
    cert = smoother.certify(torch.randn(1, 4, *SHAPE[dims]), n0=20, n=200, alpha=1e-3, tau=0.75)
    assert cert.abstain_rate > 0.99
    assert (smoother.predict(torch.randn(1, 4, *SHAPE[dims]), n=100, alpha=1e-3) == ABSTAIN).float().mean() > 0.99


def test_every_sample_in_a_batch_gets_fresh_noise() -> None:
    n = 400
    model = SignOfNoise()
    smoother = SegmentationSmoother(model, 0.5, scheme=TWO, batch_size=n)  # all samples in one batch
    counts = smoother.class_counts(torch.zeros(1, 1, 20, 20), n, torch.Generator().manual_seed(0))
    assert model.batch_sizes == [n]
    ones = counts[1].flatten().double()
    # shared noise would give each voxel 0 or n votes; fresh noise gives Binomial(n, 1/2) votes
    assert ((ones > 0) & (ones < n)).all()
    assert ones.mean() == pytest.approx(n / 2, rel=0.02)
    assert ones.var() == pytest.approx(n / 4, rel=0.25)
    batch = next(smoother.noisy_batches(torch.zeros(1, 1, 20, 20), 50, torch.Generator().manual_seed(0)))
    correlation = np.corrcoef(batch.reshape(50, -1).numpy())
    assert np.abs(correlation[~np.eye(50, dtype=bool)]).max() < 0.35  # independent draws, 400 voxels each


def test_votes_stream_in_batches_whatever_n() -> None:
    model = SignOfNoise()
    smoother = SegmentationSmoother(model, 0.5, scheme=TWO, batch_size=32)
    smoother.certify(torch.zeros(1, 1, 6, 6), n0=10, n=1000, alpha=0.01)
    assert max(model.batch_sizes) == 32 and sum(model.batch_sizes) == 1010


def test_the_same_seed_gives_the_same_certificate_and_the_model_mode_is_restored() -> None:
    model = KnownProbabilities(torch.full((8, 8), 0.9), 0.5).train()
    x = torch.zeros(1, 1, 8, 8)
    a = SegmentationSmoother(model, 0.5, scheme=TWO, batch_size=10, seed=3).certify(x, n0=10, n=100, alpha=0.05)
    b = SegmentationSmoother(model, 0.5, scheme=TWO, batch_size=25, seed=3).certify(x, n0=10, n=100, alpha=0.05)
    c = SegmentationSmoother(model, 0.5, scheme=TWO, batch_size=10, seed=4).certify(x, n0=10, n=100, alpha=0.05)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.classes, b.classes)  # batch size does not matter
    assert not torch.equal(a.counts, c.counts)
    assert model.training


def test_several_taus_share_one_set_of_samples() -> None:
    model = KnownProbabilities(torch.linspace(0.5, 1.0, 64).reshape(8, 8), 0.5)
    smoother = SegmentationSmoother(model, 0.5, scheme=TWO, batch_size=50)
    low, high = smoother.certify(torch.zeros(1, 1, 8, 8), n0=20, n=500, alpha=0.01, tau=[0.6, 0.9])
    assert torch.equal(low.counts, high.counts)
    assert high.radius > low.radius and high.abstain_rate > low.abstain_rate
    assert (high.certified <= low.certified).all()  # certified at the larger tau implies at the smaller


def test_sliding_window_inferer_and_denoiser_are_used() -> None:
    calls: list[tuple[tuple[int, ...], float]] = []

    def denoiser(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        calls.append((tuple(noisy.shape), sigma))
        return torch.zeros_like(noisy)  # a perfect denoiser for a zero input

    inferer = SlidingWindowInferer(roi_size=(4, 4, 4), sw_batch_size=2)
    smoother = SegmentationSmoother(SignOfNoise(), 0.5, inferer=inferer, scheme=TWO, denoiser=denoiser, batch_size=8)
    cert = smoother.certify(torch.zeros(1, 1, 9, 7, 6), n0=8, n=40, alpha=0.01)
    assert calls and all(shape == (8, 1, 9, 7, 6) and sigma == 0.5 for shape, sigma in calls)
    assert (cert.classes == 0).all()  # zero logits after denoising: class 0 every time, certified


def test_guarantee_holds_in_simulation() -> None:
    """Voxels exactly at p = tau (H0 true, the worst case): runs with any certified voxel stay at or below alpha."""
    sigma, tau, alpha, runs = 0.5, 0.75, 0.1, 300
    model = KnownProbabilities(torch.full((5, 10), tau), sigma)
    smoother = SegmentationSmoother(model, sigma, scheme=TWO, batch_size=110)
    x = torch.zeros(1, 1, 5, 10)
    corrected, uncorrected = [], []
    for seed in range(runs):
        cert = smoother.certify(x, n0=10, n=100, alpha=alpha, tau=tau, seed=seed)
        corrected.append(bool(cert.certified.any()))  # every certificate here is wrong: p_c <= tau everywhere
        uncorrected.append(bool((cert.pvalues <= alpha).any()))
    rate = np.mean(corrected)
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)
    assert np.mean(uncorrected) > 2 * alpha  # without the correction over voxels the guarantee would fail


def test_predict_agrees_with_the_majority_where_it_decides() -> None:
    p = torch.tensor([[0.95, 0.5, 0.05, 0.99]])
    smoother = SegmentationSmoother(KnownProbabilities(p, 0.5), 0.5, scheme=TWO, batch_size=100)
    predicted = smoother.predict(torch.zeros(1, 1, 1, 4), n=400, alpha=1e-3)
    assert predicted.tolist() == [[0, ABSTAIN, 1, 0]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0.0}, "sigma must be a finite number > 0"),
        ({"sigma": -1.0}, "sigma must be a finite number > 0"),
        ({"tau": 0.4}, "tau must lie in"),
        ({"n0": 0}, "n0 must be an integer >= 1"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"alpha": 1.0}, "alpha must lie in"),
        ({"correction": "fdr"}, "correction must be one of"),
    ],
)
def test_bad_settings_fail_before_any_sampling(kwargs: dict, message: str) -> None:
    model = SignOfNoise()
    with pytest.raises(ValueError, match=message):
        smoother = SegmentationSmoother(model, kwargs.pop("sigma", 0.5), scheme=TWO)
        smoother.certify(torch.zeros(1, 1, 4, 4), **{"n0": 5, "n": 10, **kwargs})
    assert model.batch_sizes == []


def test_bad_inputs_are_refused() -> None:
    smoother = SegmentationSmoother(Constant(1), 0.25, scheme=BRATS)
    with pytest.raises(ValueError, match="one case"):
        smoother.certify(torch.zeros(2, 4, 4, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        smoother.certify(torch.full((1, 4, 4, 4, 4), float("nan")))
    assert certified_radius(0.25, 0.9) == pytest.approx(0.25 * 1.2815515655446004)
    with pytest.raises(ValueError, match="sigmoid head needs a LabelScheme with sigmoid_regions"):
        SegmentationSmoother(Constant(1, classes=2), 0.25, head="sigmoid", scheme=TWO)
