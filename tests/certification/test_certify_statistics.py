"""Binomial p-values, Holm and Bonferroni over voxels, and the power table, against scipy and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from robustseg.certification import (
    binomial_pvalue_table,
    binomial_pvalues,
    certify_counts,
    power_table,
    reject_bonferroni,
    reject_holm,
    votes_needed,
)
from robustseg.evaluation.statistics import holm

BRATS_VOXELS = 240 * 240 * 155


@pytest.mark.parametrize(("n", "tau"), [(10, 0.6), (100, 0.75), (1000, 0.9)])
def test_pvalues_match_scipy_binomtest(n: int, tau: float) -> None:
    ks = sorted({0, 1, n // 2, int(tau * n), n - 1, n})
    expected = [stats.binomtest(k, n, tau, alternative="greater").pvalue for k in ks]
    np.testing.assert_allclose(binomial_pvalues(np.array(ks), n, tau), expected, rtol=1e-9, atol=1e-300)
    table = binomial_pvalue_table(n, tau)
    assert table[0] == pytest.approx(1.0) and np.all(np.diff(table) <= 0)


def test_holm_and_bonferroni_by_hand() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    # Holm at 0.05, m = 5: sorted 0.005 <= 0.01, 0.01 <= 0.0125, 0.03 > 0.0167 -> stop; rejects 0.005 and 0.01
    assert reject_holm(p, 0.05).tolist() == [True, False, False, True, False]
    # Bonferroni: p <= 0.01
    assert reject_bonferroni(p, 0.05).tolist() == [True, False, False, True, False]
    q = np.array([0.001, 0.011, 0.012, 0.9])
    # Holm: 0.001 <= 0.0125, 0.011 <= 0.01667, 0.012 <= 0.025, 0.9 > 0.05; Bonferroni only p <= 0.0125
    assert reject_holm(q, 0.05).tolist() == [True, True, True, False]
    assert reject_bonferroni(q, 0.05).tolist() == [True, True, True, False]
    assert reject_bonferroni(np.array([0.001, 0.013, 0.014, 0.9]), 0.05).tolist() == [True, False, False, False]
    assert reject_holm(np.array([0.001, 0.013, 0.014, 0.9]), 0.05).tolist() == [True, True, True, False]


def test_holm_with_ties_matches_adjusted_pvalues() -> None:
    rng = np.random.default_rng(0)
    p = rng.choice(np.r_[np.full(5, 1e-6), rng.uniform(0, 0.01, 40), rng.uniform(0, 1, 200)], size=245, replace=False)
    p[:30] = 1e-6  # a big tie
    np.testing.assert_array_equal(reject_holm(p, 0.01), holm(p) <= 0.01)


@pytest.mark.parametrize("n", [20, 100])
def test_holm_over_the_count_histogram_equals_holm_over_pvalues(n: int) -> None:
    rng = np.random.default_rng(n)
    counts = np.where(rng.uniform(size=(30, 40)) < 0.6, n, rng.integers(0, n + 1, size=(30, 40)))
    counts[0, :5] = n - 1
    for alpha in (1e-3, 0.05):
        certified, pvalues = certify_counts(counts, n, 0.75, alpha, "holm")
        assert certified.shape == counts.shape
        np.testing.assert_array_equal(certified, holm(pvalues.ravel()).reshape(counts.shape) <= alpha)
        bonferroni, _ = certify_counts(counts, n, 0.75, alpha, "bonferroni")
        np.testing.assert_array_equal(bonferroni, pvalues <= alpha / counts.size)
        assert (certified >= bonferroni).all()  # Holm never certifies less


def test_votes_needed_for_brats_and_minimality() -> None:
    assert votes_needed(BRATS_VOXELS, 100, 0.75, 1e-4) == 99
    k = votes_needed(BRATS_VOXELS, 1000, 0.75, 1e-4)
    assert k == 839
    threshold = 1e-4 / BRATS_VOXELS
    assert stats.binom.sf(k - 1, 1000, 0.75) <= threshold < stats.binom.sf(k - 2, 1000, 0.75)
    assert votes_needed(BRATS_VOXELS, 10, 0.75, 1e-4) is None  # 10 samples can never certify
    rows = power_table([1000, BRATS_VOXELS], [100, 1000], [0.75, 0.9])
    assert len(rows) == 8 and {r["votes_needed"] for r in rows if r["n"] == 100 and r["tau"] == 0.9} == {
        None
    }  # 0.9^100 = 2.7e-5
    brats = next(r for r in rows if r["num_voxels"] == BRATS_VOXELS and r["n"] == 1000 and r["tau"] == 0.75)
    assert brats["share_needed"] == pytest.approx(0.839)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 0.5}, "tau must lie in"),
        ({"tau": 1.0}, "tau must lie in"),
        ({"alpha": 0.0}, "alpha must lie in"),
        ({"alpha": 1.5}, "alpha must lie in"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"correction": "bh"}, "correction must be one of"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    args = {"n": 10, "tau": 0.75, "alpha": 0.01, "correction": "holm", **kwargs}
    with pytest.raises(ValueError, match=message):
        certify_counts(np.array([1, 2]), args["n"], args["tau"], args["alpha"], args["correction"])
