"""ThreatModel: argument checks, masks, projection, random starts and steps, in 2-D and 3-D, L-inf and L2."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import SIZE, blob_batch

from robustseg.attacks import ThreatModel, per_sample_norm

TOL = 1e-5


def _clean(dims: int, n: int = 2) -> torch.Tensor:
    images, _ = blob_batch(dims, n, torch.Generator().manual_seed(dims))
    return images


@pytest.mark.parametrize("eps", [0, -0.1, float("nan"), float("inf")])
def test_eps_must_be_positive(eps: float) -> None:
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        ThreatModel("linf", eps)


def test_unknown_norm_and_mask_policy() -> None:
    with pytest.raises(ValueError, match=r"norm must be one of \['linf', 'l2'\] but is 'l1'"):
        ThreatModel("l1", 0.1)
    with pytest.raises(ValueError, match="mask must be one of"):
        ThreatModel("linf", 0.1, mask="brain")


def test_mask_of_wrong_shape_names_both_shapes() -> None:
    x = torch.randn(2, 2, 8, 8)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 8, 9\).*\(2, 1, 8, 8\)"):
        ThreatModel("linf", 0.1, mask=torch.ones(2, 1, 8, 9)).mask_for(x)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 2, 8, 8\)"):
        ThreatModel("linf", 0.1, mask=torch.ones(2, 2, 8, 8)).mask_for(x)


def test_clip_bounds_per_channel_must_match_channels() -> None:
    with pytest.raises(ValueError, match="clip_min has 3 values but the input has 2 channels"):
        ThreatModel("linf", 0.1, clip_min=[0.0, 0.0, 0.0]).project(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))


@pytest.mark.parametrize("dims", [2, 3])
def test_mask_policies(dims: int) -> None:
    x = _clean(dims)
    brain = (x != 0).any(dim=1, keepdim=True).float()
    assert 0 < brain.mean() < 1
    torch.testing.assert_close(ThreatModel("linf", 0.1).mask_for(x), brain)
    torch.testing.assert_close(ThreatModel("linf", 0.1, mask="none").mask_for(x), torch.ones_like(brain))
    spatial_only = torch.zeros(SIZE[dims])
    spatial_only[(slice(0, 4),) * dims] = 3.0  # any non-zero value allows perturbation
    mask = ThreatModel("linf", 0.1, mask=spatial_only).mask_for(x)
    assert mask.shape == brain.shape
    assert mask.sum() == 2 * 4**dims


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dims", [2, 3])
def test_project_stays_in_ball_mask_and_per_channel_bounds(dims: int, norm: str) -> None:
    lo, hi = [-0.5, -1.0], [1.0, 0.6]
    threat = ThreatModel(norm, 0.2 if norm == "linf" else 1.5, clip_min=lo, clip_max=hi)
    x = _clean(dims)
    x = torch.stack([x[:, c].clamp(lo[c], hi[c]) for c in range(2)], dim=1)
    delta = threat.project(torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * 3, x)
    assert (per_sample_norm(delta, norm) <= threat.eps + TOL).all()
    assert (delta * (1 - threat.mask_for(x)) == 0).all()
    adv = x + delta
    for c in range(2):
        assert adv[:, c].min() >= lo[c] - TOL and adv[:, c].max() <= hi[c] + TOL
    torch.testing.assert_close(threat.project(delta, x), delta)  # idempotent on allowed perturbations
    assert (delta != 0).any()


def test_project_never_pushes_an_out_of_bounds_voxel_further_out() -> None:
    x = torch.full((1, 1, 4, 4), 2.0)  # clean input above clip_max
    threat = ThreatModel("linf", 0.5, clip_min=0.0, clip_max=1.0, mask="none")
    up = threat.project(torch.full_like(x, 0.5), x)
    down = threat.project(torch.full_like(x, -0.5), x)
    assert (up == 0).all()
    torch.testing.assert_close(down, torch.full_like(x, -0.5))


def test_l2_projection_is_per_case() -> None:
    x = torch.ones(2, 1, 4, 4)
    delta = torch.stack([torch.full((1, 4, 4), 0.01), torch.full((1, 4, 4), 10.0)])
    out = ThreatModel("l2", 1.0, mask="none").project(delta, x)
    torch.testing.assert_close(out[0], delta[0])  # inside the ball: unchanged
    torch.testing.assert_close(per_sample_norm(out, "l2")[1], torch.tensor(1.0))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dims", [2, 3])
def test_random_start_is_allowed_and_seeded(dims: int, norm: str) -> None:
    threat = ThreatModel(norm, 0.1 if norm == "linf" else 1.0)
    x = _clean(dims)
    a = threat.random_start(x, torch.Generator().manual_seed(5))
    b = threat.random_start(x, torch.Generator().manual_seed(5))
    c = threat.random_start(x, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    norms = per_sample_norm(a, norm)
    assert (norms <= threat.eps + TOL).all() and (norms > 0.5 * threat.eps).all()
    assert (a * (1 - threat.mask_for(x)) == 0).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_step_is_sign_or_unit_l2_inside_the_mask(dims: int) -> None:
    x = _clean(dims)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    mask = ThreatModel("linf", 0.1).mask_for(x)
    torch.testing.assert_close(ThreatModel("linf", 0.1).step(grad), grad.sign())
    step = ThreatModel("l2", 1.0).step(grad, mask)
    torch.testing.assert_close(per_sample_norm(step, "l2"), torch.ones(2))
    assert (step * (1 - mask) == 0).all()
    assert (ThreatModel("l2", 1.0).step(torch.zeros_like(grad)) == 0).all()  # zero gradient: no NaN


def test_describe_quotes_norm_eps_and_unit() -> None:
    text = ThreatModel("l2", 0.5, unit="[0,1] pixel", mask="none").describe()
    assert text == "l2 eps=0.5 ([0,1] pixel), mask=none"
    with pytest.raises(ValueError, match="norm must be one of"):
        per_sample_norm(torch.zeros(2, 3), "l1")
