"""Paired tests between models: against scipy's Wilcoxon and a hand Holm; the family, the pairs, the drop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from robustseg.evaluation.model_comparison import compare_models


def _rows(scores: dict[tuple[str, str], list[float]], region: str = "WT") -> list[dict]:
    return [
        {"model": m, "condition": c, "region": region, "case_id": f"c{i}", "dice": v}
        for (m, c), values in scores.items()
        for i, v in enumerate(values)
    ]


RNG = np.random.default_rng(0)
CLEAN_A = list(0.8 + 0.05 * RNG.random(12))
CLEAN_B = list(np.array(CLEAN_A) - 0.02 + 0.01 * RNG.random(12))
ATT_A = list(0.3 + 0.1 * RNG.random(12))
ATT_B = list(0.6 + 0.1 * RNG.random(12))
SCORES = {("base", "clean"): CLEAN_A, ("def", "clean"): CLEAN_B, ("base", "pgd@1"): ATT_A, ("def", "pgd@1"): ATT_B}


def _one(results: list[dict], **where: str) -> dict:
    found = [r for r in results if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1
    return found[0]


def test_each_test_is_scipys_two_sided_wilcoxon_and_holm_runs_over_the_family() -> None:
    results = compare_models(_rows(SCORES), ["base", "def"], n_resamples=200)
    assert [(r["measure"], r["condition"]) for r in results] == [
        ("score", "clean"),
        ("score", "pgd@1"),
        ("drop", "pgd@1"),
    ]
    drop_a = np.array(CLEAN_A) - np.array(ATT_A)
    drop_b = np.array(CLEAN_B) - np.array(ATT_B)
    expected = [
        stats.wilcoxon(CLEAN_A, CLEAN_B, alternative="two-sided", zero_method="zsplit").pvalue,
        stats.wilcoxon(ATT_A, ATT_B, alternative="two-sided", zero_method="zsplit").pvalue,
        stats.wilcoxon(drop_a, drop_b, alternative="two-sided", zero_method="zsplit").pvalue,
    ]
    np.testing.assert_allclose([r["p_value"] for r in results], expected, rtol=1e-10)
    order = np.argsort(expected)  # Holm by hand: (m - rank) * p, running maximum
    holm = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * expected[i]))
        holm[i] = running
    np.testing.assert_allclose([r["p_holm"] for r in results], holm, rtol=1e-10)
    attacked = _one(results, measure="score", condition="pgd@1")
    assert attacked["better"] == "def" and attacked["rank_biserial"] == -1.0  # B higher on every case
    assert attacked["median_difference"] < 0 and attacked["mean_a"] == pytest.approx(np.mean(ATT_A))
    assert _one(results, measure="drop", condition="pgd@1")["better"] == "def"  # the lower drop
    clean = _one(results, measure="score", condition="clean")
    assert clean["better"] == "base"  # the defence's clean cost, significant here


def test_pairs_all_tests_every_pair_and_baseline_only_those_with_the_first_model() -> None:
    scores = {**SCORES, ("other", "clean"): CLEAN_B, ("other", "pgd@1"): ATT_A}
    every = compare_models(_rows(scores), ["base", "def", "other"], measures=["score"], n_resamples=50)
    pairs = {(r["model_a"], r["model_b"]) for r in every if r["condition"] == "pgd@1"}
    assert pairs == {("base", "def"), ("base", "other"), ("def", "other")}
    assert {(r["model_a"], r["model_b"]) for r in every if r["condition"] == "clean"} == {
        ("base", "def"),
        ("base", "other"),
    }
    against = compare_models(
        _rows(scores), ["base", "def", "other"], measures=["score"], pairs="baseline", n_resamples=50
    )
    assert {(r["model_a"], r["model_b"]) for r in against} == {("base", "def"), ("base", "other")}


def test_cases_are_paired_by_id_not_by_position() -> None:
    rows = _rows(SCORES)
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    a = compare_models(rows, ["base", "def"], n_resamples=100)
    b = compare_models(shuffled, ["base", "def"], n_resamples=100)
    assert [r["p_value"] for r in a] == [r["p_value"] for r in b]


@pytest.mark.parametrize(
    ("models", "kwargs", "message"),
    [
        (["base"], {}, "two or more models"),
        (["base", "base"], {}, "twice"),
        (["base", "missing"], {}, r"\['missing'\] have no scored rows"),
        (["base", "def"], {"pairs": "some"}, "pairs must be one of"),
        (["base", "def"], {"measures": ["auc"]}, "measure must be one of"),
    ],
)
def test_bad_requests_are_refused(models: list[str], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_models(_rows(SCORES), models, **kwargs)
