"""Tests for :mod:`robustseg.evaluation.statistics` against scipy and hand computations."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from scipy import stats

from robustseg.evaluation.statistics import (
    bootstrap_median_difference,
    compare_conditions,
    holm,
    paired_wilcoxon,
    rank_biserial,
    relative_reduction,
)


def dice_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean and attacked Dice on a 0.05 grid: ties, zero differences and a few increases."""
    rng = np.random.default_rng(seed)
    clean = np.round(rng.uniform(0.6, 0.95, n) * 20) / 20
    attacked = np.clip(clean - np.round(rng.normal(0.1, 0.1, n) * 20) / 20, 0, 1)
    attacked[:3] = clean[:3]
    return clean, attacked


@pytest.mark.parametrize("n", [10, 30])
@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
@pytest.mark.parametrize("zero_method", ["zsplit", "wilcox", "pratt"])
@pytest.mark.parametrize("method", ["auto", "asymptotic"])
def test_wilcoxon_equals_scipy(n: int, alternative: str, zero_method: str, method: str) -> None:
    x, y = dice_like(n, seed=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.wilcoxon(x, y, zero_method=zero_method, alternative=alternative, method=method)
    res = paired_wilcoxon(x, y, alternative=alternative, zero_method=zero_method, method=method)
    assert res.n == n
    assert res.statistic == pytest.approx(float(ref.statistic))
    assert res.pvalue == pytest.approx(float(ref.pvalue))


def test_wilcoxon_exact_without_ties() -> None:
    x = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = x - np.array([0.01, 0.02, 0.03, 0.04, 0.05, -0.06])
    res = paired_wilcoxon(x, y)
    assert res.statistic == pytest.approx(15.0)  # ranks 1..5 positive
    assert res.pvalue == pytest.approx(14 / 64)  # subsets of {1..6} with rank sum <= 6
    assert res.pvalue == pytest.approx(stats.wilcoxon(x, y, zero_method="zsplit", alternative="greater").pvalue)


@pytest.mark.filterwarnings("error")
def test_wilcoxon_degenerate_cases_leak_no_warnings() -> None:
    same = paired_wilcoxon([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert same.pvalue == 1.0 and same.n == 3 and "zero" in same.note
    one = paired_wilcoxon([0.8], [0.2])
    assert math.isnan(one.pvalue) and one.n == 1 and "fewer than 2" in one.note
    nan_dropped = paired_wilcoxon([0.8, np.nan, 0.9, 0.7], [0.5, 0.6, 0.4, 0.3])
    assert nan_dropped.n == 3
    # scipy itself divides by a zero standard error here (all differences zero and dropped)
    dropped = paired_wilcoxon([0.8] * 60, [0.8] * 60, zero_method="wilcox", method="asymptotic")
    assert dropped.pvalue == 1.0 and dropped.statistic == 0.0
    assert paired_wilcoxon([0.8] * 60, [0.8] * 60).statistic == pytest.approx(60 * 61 / 4)  # zsplit
    with pytest.raises(ValueError, match="alternative"):
        paired_wilcoxon([1, 2], [0, 1], alternative="bigger")


def test_holm_textbook_example() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_passes_nan_through() -> None:
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    # NaN is not counted in the family: m = 3
    np.testing.assert_allclose(holm([0.4, np.nan, 0.6, 0.2]), [0.8, np.nan, 0.8, 0.6])
    assert np.isnan(holm([np.nan])).all() and holm([]).size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_rank_biserial_hand_example() -> None:
    x, y = [3.0, -1.0, 2.0, 0.0, 5.0], [0.0] * 5
    # ranks of |d| = 3, 1, 2, 0, 5 -> 4, 2, 3, 1, 5
    assert rank_biserial(x, y) == pytest.approx((12.5 - 2.5) / 15)  # zsplit: the zero's rank 1 split 0.5 / 0.5
    assert rank_biserial(x, y, "pratt") == pytest.approx((12 - 2) / 14)  # zero ranked, then left out
    assert rank_biserial(x, y, "wilcox") == pytest.approx((9 - 1) / 10)  # zero dropped: ranks 3, 1, 2, 4


def test_rank_biserial_extremes_and_scipy_relation() -> None:
    assert rank_biserial([0.9, 0.8, 0.7], [0.1, 0.2, 0.3]) == 1.0
    assert rank_biserial([0.1, 0.2, 0.3], [0.9, 0.8, 0.7]) == -1.0
    assert rank_biserial([0.5, 0.5], [0.5, 0.5]) == 0.0
    x, y = dice_like(25, seed=3)
    total = 25 * 26 / 2
    r_plus = stats.wilcoxon(x, y, zero_method="zsplit", alternative="greater").statistic
    assert rank_biserial(x, y) == pytest.approx(2 * r_plus / total - 1)


def test_bootstrap_interval_covers_shift_and_is_seeded() -> None:
    rng = np.random.default_rng(7)
    y = rng.uniform(0.5, 0.9, 40)
    x = y + 0.2 + rng.normal(0, 0.02, 40)
    res = bootstrap_median_difference(x, y, n_resamples=2000, seed=1)
    assert res.low < 0.2 < res.high and res.low <= res.median <= res.high
    assert res.median == pytest.approx(float(np.median(x - y)))
    again = bootstrap_median_difference(x, y, n_resamples=2000, seed=1)
    other = bootstrap_median_difference(x, y, n_resamples=2000, seed=2)
    assert (again.low, again.high) == (res.low, res.high)
    assert (other.low, other.high) != (res.low, res.high)
    constant = bootstrap_median_difference([0.9, 0.8], [0.8, 0.7])
    assert constant.low == pytest.approx(0.1) and constant.high == pytest.approx(0.1)
    assert math.isnan(bootstrap_median_difference([0.9], [0.8]).low)


def test_relative_reduction() -> None:
    assert relative_reduction([0.8, 0.6], [0.4, 0.2]) == pytest.approx(0.4 / 0.7)
    assert math.isnan(relative_reduction([0.0, 0.0], [0.1, 0.2]))


CASES = [f"c{i}" for i in range(1, 8)]
CLEAN_ET = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6]
CLEAN_WT = [0.95, 0.9, 0.9, 0.85, 0.8, 0.9, 0.85]
DROPS: dict[tuple[str, str], list[float | None]] = {
    ("fgsm", "ET"): [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.55],  # all positive, no ties: p = 1/128
    ("pgd", "ET"): [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, None],  # c7 missing: 6 positive, p = 1/64
    ("fgsm", "WT"): [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, -0.07],  # R+ = 21 of 28, p = 19/128
    ("pgd", "WT"): [-0.01, -0.02, -0.03, -0.04, -0.05, -0.06, -0.07],  # all negative: p = 1
}


def table() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for region, clean in (("ET", CLEAN_ET), ("WT", CLEAN_WT)):
        scored = zip(CASES, clean, strict=True)
        rows += [{"case_id": c, "condition": "clean", "region": region, "dice": v} for c, v in scored]
    for (condition, region), drops in DROPS.items():
        clean = CLEAN_ET if region == "ET" else CLEAN_WT
        rows += [
            {"case_id": c, "condition": condition, "region": region, "dice": v - d}
            for c, v, d in zip(CASES, clean, drops, strict=True)
            if d is not None
        ]
    return rows


def test_compare_conditions_hand_checked() -> None:
    out = compare_conditions(table(), n_resamples=2000)
    assert [(r["region"], r["condition"]) for r in out] == [
        ("ET", "fgsm"),
        ("ET", "pgd"),
        ("WT", "fgsm"),
        ("WT", "pgd"),
    ]
    by = {(r["condition"], r["region"]): r for r in out}
    np.testing.assert_allclose([r["p_value"] for r in out], [1 / 128, 1 / 64, 19 / 128, 1.0])
    # Holm over the family of 4: 4/128, 3/64, 2 * 19/128, 1
    np.testing.assert_allclose([r["p_holm"] for r in out], [4 / 128, 3 / 64, 38 / 128, 1.0])
    assert [r["significant"] for r in out] == [True, True, False, False]

    et_pgd = by[("pgd", "ET")]
    assert (et_pgd["n"], et_pgd["n_missing"], et_pgd["n_nan"]) == (6, 1, 0)
    assert et_pgd["median_drop"] == pytest.approx(0.175)
    assert et_pgd["median_baseline"] == pytest.approx(0.775)
    assert et_pgd["mean_condition"] == pytest.approx(np.mean(CLEAN_ET[:6]) - 0.175)
    assert et_pgd["relative_reduction"] == pytest.approx(0.175 / np.mean(CLEAN_ET[:6]))
    assert et_pgd["median_drop_low"] <= 0.175 <= et_pgd["median_drop_high"]

    assert by[("fgsm", "ET")]["rank_biserial"] == pytest.approx(1.0)
    assert by[("fgsm", "WT")]["rank_biserial"] == pytest.approx((21 - 7) / 28)
    assert by[("pgd", "WT")]["rank_biserial"] == pytest.approx(-1.0)
    assert by[("fgsm", "WT")]["statistic"] == pytest.approx(21.0)


def test_compare_models_two_sided_and_nan_rows() -> None:
    rows = [
        dict(r, condition={"clean": "model_a", "fgsm": "model_b"}[r["condition"]])
        for r in table()
        if r["condition"] in ("clean", "fgsm") and r["region"] == "WT"
    ]
    rows[0]["dice"] = math.nan  # model_a, c1 not scored
    out = compare_conditions(rows, baseline="model_a", alternative="two-sided", n_resamples=500)
    assert len(out) == 1 and out[0]["n"] == 6 and out[0]["n_nan"] == 1
    x, y = np.array(CLEAN_WT[1:]), np.array(CLEAN_WT[1:]) - np.array(DROPS[("fgsm", "WT")][1:])
    assert out[0]["p_value"] == pytest.approx(stats.wilcoxon(x, y, zero_method="zsplit").pvalue)
    assert out[0]["p_holm"] == out[0]["p_value"]


def test_compare_conditions_rejects_bad_tables() -> None:
    rows = table()
    with pytest.raises(ValueError, match="baseline"):
        compare_conditions(rows, baseline="none")
    with pytest.raises(ValueError, match="twice"):
        compare_conditions([*rows, rows[0]])
    with pytest.raises(ValueError, match="lacks"):
        compare_conditions([{"case_id": "c1", "condition": "clean", "region": "ET"}])
