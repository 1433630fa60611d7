"""robustseg.sensitivity's pure parts: KID against a hand computation, encoder features, the curve, the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import betabinom
from torch import nn

from robustseg.sensitivity import (
    EncoderFeatures,
    SensitivityCurve,
    SensitivityPoint,
    SensitivitySampler,
    adaptive_curve,
    interval_errors,
    kernel_inception_distance,
    objective,
    surpluses,
)


def _hand_kid(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^degree, written out sum by sum."""
    m, d = x.shape

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / d + 1.0) ** degree)

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_a_hand_computation_when_each_subset_is_the_whole_set() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.7, 1.3, size=(12, 5))
    mean, std = kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), subsets=4)
    assert mean == pytest.approx(_hand_kid(x, y), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)  # a permutation of the whole set: every subset gives the same MMD


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift_seeded_and_leaving_torch_rng_alone() -> None:
    g = torch.Generator().manual_seed(1)
    clean, other = torch.randn(80, 16, generator=g), torch.randn(80, 16, generator=g)
    same, _ = kernel_inception_distance(clean, other, subset_size=40)
    small, _ = kernel_inception_distance(clean, other + 0.5, subset_size=40)
    large, _ = kernel_inception_distance(clean, other + 1.0, subset_size=40)
    assert abs(same) < 0.1 * small and small < large
    state = torch.random.get_rng_state()
    assert kernel_inception_distance(clean, other + 0.5, subset_size=40)[0] == small
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError, match="subset size"):
        kernel_inception_distance(clean, clean, subset_size=81)


@pytest.mark.parametrize("dims", [2, 3])
def test_encoder_features_pool_the_named_layer_and_restore_training_mode(dims: int) -> None:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    net = nn.Sequential(conv(2, 6, 3, padding=1), nn.ReLU(), conv(6, 3, 1)).train()
    images = torch.randn((4, 2) + (5,) * dims)
    features = EncoderFeatures(net, "1")(images)
    expected = torch.relu(net[0](images)).flatten(2).mean(2)
    assert features.shape == (4, 6) and torch.allclose(features, expected, atol=1e-6)
    assert net.training
    with pytest.raises(KeyError, match="close names"):
        EncoderFeatures(net, "encoder.4")


def test_objective_and_curve_reach_their_targets_monotonically() -> None:
    points = [SensitivityPoint(level, level**2, 0.5 * level) for level in (0.0, 0.3, 0.6, 1.0)]
    np.testing.assert_allclose(objective(points), [0.0, 0.09 + 0.6 - 0.3, 0.36 + 1.2 - 0.6, 2.0])
    curve = SensitivityCurve(tuple(points))
    levels = curve.levels_at((0.4, 0.8, 1.2, 1.6))
    np.testing.assert_allclose(curve(np.array(levels)), [0.4, 0.8, 1.2, 1.6], atol=1e-5)
    assert levels == sorted(levels)
    dense = curve(np.linspace(0, 1, 201))
    assert np.all(np.diff(dense) >= -1e-12)
    assert curve.levels_at((-1.0, 3.0)) == [0.0, 1.0]


SATURATING = 1.0 - np.exp(-8.0)


def _measure(level: float) -> tuple[float, float]:
    """A drop that saturates early and a KID linear in the level: the objective is l + the normalised drop."""
    return (1.0 - np.exp(-8.0 * level)) / SATURATING, 0.5 * level


def test_adaptive_curve_meets_its_tolerance_with_fewer_evaluations_than_a_uniform_sweep() -> None:
    calls: list[float] = []

    def evaluate(level: float) -> tuple[float, float]:
        calls.append(level)
        return _measure(level)

    result = adaptive_curve(evaluate, tol=0.02, max_evaluations=30)
    grid = np.linspace(0, 1, 801)
    truth = grid + (1.0 - np.exp(-8.0 * grid)) / SATURATING

    def error(curve: SensitivityCurve) -> float:
        return float(np.abs(curve(grid) - truth).max())

    adaptive_error = error(result.curve)
    assert result.error < 0.02 and adaptive_error < 0.02
    assert result.evaluations == len(calls) == len(set(calls))
    uniform = (
        SensitivityCurve(tuple(SensitivityPoint(x, *_measure(x)) for x in np.linspace(0, 1, n))) for n in range(3, 200)
    )
    uniform_needed = next(len(curve.points) for curve in uniform if error(curve) <= adaptive_error)
    assert result.evaluations * 1.5 <= uniform_needed  # 9 evaluations against 17 uniform levels


def _late_cliff(level: float) -> tuple[float, float]:
    """A drop that stays near 0 up to level 0.6 and then falls off a cliff; a KID growing as the square."""
    return 0.8 / (1.0 + np.exp(-(level - 0.7) / 0.05)), 0.5 * level**2


def test_adaptive_curve_finds_a_late_cliff_and_meets_its_tolerance_there() -> None:
    result = adaptive_curve(_late_cliff, tol=0.05, max_evaluations=30)
    grid = np.linspace(0, 1, 801)
    drops, kids = _late_cliff(grid)
    truth = drops / drops.max() + 2 * grid - kids / kids.max()
    assert np.abs(result.curve(grid) - truth).max() <= 0.05  # through 0, 1/2, 1 the curve looks straight: 0.40 off
    levels = result.curve.levels
    widths, starts = np.diff(levels), levels[:-1]
    assert widths[(starts >= 0.5) & (starts < 0.7)].max() < widths[starts < 0.5].min()  # finest on the cliff


def test_surplus_is_the_distance_of_each_new_level_from_the_curve_before_it() -> None:
    points = [SensitivityPoint(0.0, 0.0, 0.0), SensitivityPoint(1.0, 1.0, 1.0), SensitivityPoint(0.5, 0.9, 0.1)]
    values = [0.0, 2.0, 0.9 + 1.0 - 0.1]  # the objective of each point, on the maxima of all three
    assert surpluses(points) == pytest.approx([0.0, 0.0, abs(values[2] - (values[0] + values[1]) / 2)])
    points.append(SensitivityPoint(0.75, 0.95, 0.6))
    before = SensitivityCurve(tuple(points[:3]))  # same maxima (1, 1) as all four: the same normalisation
    expected = abs(0.95 + 1.5 - 0.6 - float(before(0.75)))
    assert surpluses(points)[3] == pytest.approx(expected)
    # intervals [0, .5], [.5, .75], [.75, 1]: made by the split at .5, .75, .75; each estimated at half its surplus
    np.testing.assert_allclose(interval_errors(points), 0.5 * surpluses(points)[[2, 3, 3]])


def test_sampler_gives_the_most_damaging_level_the_most_weight_and_the_tail_to_clean() -> None:
    table = {"blur": [(0.2, 0.9), (0.4, 0.8), (0.6, 0.6), (0.8, 0.3)], "noise": [(0.5, 0.7), (1.0, 0.95)]}
    rows = SensitivitySampler(table, jitter=0.0).table()
    blur = [(r["level"], r["p"]) for r in rows if r["op"] == "blur"]
    assert [level for level, _ in blur] == [0.8, 0.6, 0.4, 0.2]  # ranked by the score kept, lowest first
    np.testing.assert_allclose([p for _, p in blur], 0.5 * betabinom.pmf(np.arange(4), 4, 0.75, 1.0))
    np.testing.assert_allclose([p for _, p in blur], [0.5 * 0.280, 0.5 * 0.210, 0.5 * 0.184, 0.5 * 0.168], atol=1e-3)
    noise = [(r["level"], r["p"]) for r in rows if r["op"] == "noise"]
    assert [level for level, _ in noise] == [0.5, 1.0]  # level 1.0 keeps more score here: it is ranked second
    clean = rows[0]
    assert clean["op"] is None
    expected_clean = 0.5 * betabinom.pmf(4, 4, 0.75, 1.0) + 0.5 * betabinom.pmf(2, 2, 0.75, 1.0)
    assert clean["p"] == pytest.approx(expected_clean)
    assert sum(r["p"] for r in rows) == pytest.approx(1.0)
    assert SensitivitySampler(table, clean_share=0.3).table()[0]["p"] == pytest.approx(0.3)


def test_sampler_draws_follow_its_probabilities_jittered_clipped_and_seeded() -> None:
    table = {"blur": [(0.1, 0.9), (0.95, 0.2)]}
    sampler = SensitivitySampler(table, jitter=0.1, seed=3)
    draws = sampler.draw(6000)
    again = SensitivitySampler(table, jitter=0.1, seed=3)
    assert draws[:100] == again.draw(40) + again.draw(60)
    clean = sum(d.op is None for d in draws) / len(draws)
    assert clean == pytest.approx(sampler.probabilities[0], abs=0.02)
    high = [d.level for d in draws if d.op == "blur" and d.level > 0.5]
    low = [d.level for d in draws if d.op == "blur" and d.level <= 0.5]
    assert len(high) > len(low)  # 0.95 keeps less score: more weight
    assert max(high) == 1.0 and min(low) >= 0.0 and np.std(low) == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError, match="clean_share"):
        SensitivitySampler(table, clean_share=1.0)
