"""Paired statistics over cases: clean vs attacked, or model A vs model B, per region.

The seed study (Liu et al. 2021) compared clean and attacked Dice with Wilcoxon signed-rank tests. This module makes
each choice of that comparison explicit:

* the test is :func:`scipy.stats.wilcoxon` on paired per-case scores, ``zero_method="zsplit"`` by default because
  ties and zero differences are common in Dice (both 1 on an empty region, both 0 on a missed one), and dropping
  them (``"wilcox"``) would test only the cases that changed and overstate the evidence;
* ``alternative="greater"`` by default: "clean Dice > attacked Dice" is the one-sided hypothesis of an attack that
  lowers Dice; comparing two models, which may go either way, asks for ``"two-sided"``;
* the family of tests of one report (every region x condition) is corrected with Holm's step-down method
  (:func:`holm`; statsmodels' default ``"hs"`` is Holm-Sidak, not Holm);
* each test reports an effect size (matched-pairs rank-biserial correlation, :func:`rank_biserial`) and the median
  paired difference with a seeded bootstrap interval (:func:`bootstrap_median_difference`), not only p.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "BootstrapResult",
    "WilcoxonResult",
    "bootstrap_median_difference",
    "compare_conditions",
    "holm",
    "paired_wilcoxon",
    "rank_biserial",
    "relative_reduction",
    "small_sample_warning",
    "smallest_wilcoxon_p",
]

ZERO_METHODS = ("zsplit", "wilcox", "pratt")
ALTERNATIVES = ("greater", "less", "two-sided")


@dataclass(frozen=True)
class WilcoxonResult:
    """Outcome of :func:`paired_wilcoxon`.

    Attributes:
        statistic: scipy's statistic (the positive-rank sum for one-sided tests, the smaller rank sum otherwise).
        pvalue: p-value, NaN when the test could not be run.
        n: number of pairs tested (pairs with a NaN are dropped first).
        note: why the result is degenerate, or warnings scipy raised; empty when all went well.
    """

    statistic: float
    pvalue: float
    n: int
    note: str = ""


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of :func:`bootstrap_median_difference`: the median of ``x - y`` and its interval."""

    median: float
    low: float
    high: float
    confidence: float
    n: int
    method: str


def _paired(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays of the pairs where neither value is NaN."""
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length but have {a.size} and {b.size}.")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)} but is {value!r}.")


def paired_wilcoxon(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    alternative: str = "greater",
    zero_method: str = "zsplit",
    method: str = "auto",
    correction: bool = False,
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of paired samples, ``scipy.stats.wilcoxon(x, y, ...)`` with stated choices.

    Args:
        x: per-case scores of the baseline (clean Dice, or model A).
        y: per-case scores of the same cases under the condition (attacked Dice, or model B).
        alternative: ``"greater"`` (default) tests "x > y", i.e. the attack lowers Dice; use ``"two-sided"`` to
            compare two models, ``"less"`` for "x < y".
        zero_method: ``"zsplit"`` (default) keeps zero differences and splits their ranks between the positive and
            negative sums, because ties and zeros are common in Dice; ``"wilcox"`` drops them, ``"pratt"`` ranks
            them and then drops them.
        method: scipy's ``method``: ``"auto"`` (exact for n <= 50 without ties or zeros, an exact permutation
            distribution for n <= 13 with them, the normal approximation otherwise), ``"exact"`` or
            ``"asymptotic"``.
        correction: continuity correction of the normal approximation (scipy's default, off).

    Returns:
        statistic, p-value and number of pairs. Pairs with a NaN are dropped. Degenerate inputs do not raise and
        leak no scipy warning: fewer than 2 pairs give NaN, all differences zero give p = 1, each with a note.
    """
    _check_choice("alternative", alternative, ALTERNATIVES)
    _check_choice("zero_method", zero_method, ZERO_METHODS)
    a, b = _paired(x, y)
    n = int(a.size)
    if n < 2:
        return WilcoxonResult(math.nan, math.nan, n, f"fewer than 2 pairs ({n}); no test.")
    d = a - b
    if not np.any(d):
        statistic = n * (n + 1) / 4 if zero_method == "zsplit" else 0.0
        return WilcoxonResult(statistic, 1.0, n, "all paired differences are zero; p set to 1.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.wilcoxon(
            a, b, zero_method=zero_method, correction=correction, alternative=alternative, method=method
        )
    note = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n, note)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, controlling the family-wise error rate.

    With the m finite p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))`` (1-based),
    which makes the adjusted values monotone in the raw ones. This is plain Holm (statsmodels ``"holm"``), not
    Holm-Sidak (statsmodels' default ``"hs"``). Reject where ``p_adj <= alpha``.

    Args:
        pvalues: raw p-values; NaN entries pass through unchanged and do not count in the family size m.

    Returns:
        Adjusted p-values in the input order.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1] but got {p[(p < 0) | (p > 1)].tolist()}.")
    out = p.copy()
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def rank_biserial(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, zero_method: str = "zsplit"
) -> float:
    """Matched-pairs rank-biserial correlation of ``x - y`` (Kerby 2014, the simple difference formula).

    ``r = (R+ - R-) / (R+ + R-)``, with R+ and R- the sums of the ranks of ``|x - y|`` (average ranks for ties)
    over positive and negative differences. Zero differences are treated as in :func:`paired_wilcoxon`:

    * ``"zsplit"`` (default): zeros are ranked with the rest and half of their ranks go to each sum, so they add
      to the total ``n (n + 1) / 2`` but not to the difference, pulling r towards 0;
    * ``"wilcox"``: zeros are dropped before ranking;
    * ``"pratt"``: zeros are ranked with the rest, then their ranks are left out of both sums.

    r is +1 when every difference is positive, -1 when every one is negative, and 0 when all are zero. Pairs with a
    NaN are dropped; no pair gives NaN.
    """
    _check_choice("zero_method", zero_method, ZERO_METHODS)
    a, b = _paired(x, y)
    d = a - b
    if zero_method == "wilcox":
        d = d[d != 0]
    if d.size == 0:
        return math.nan
    ranks = stats.rankdata(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    if zero_method == "zsplit":
        half_zero = float(ranks[d == 0].sum()) / 2
        r_plus, r_minus = r_plus + half_zero, r_minus + half_zero
    total = r_plus + r_minus
    return 0.0 if total == 0 else (r_plus - r_minus) / total


def bootstrap_median_difference(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> BootstrapResult:
    """Median of the paired differences ``x - y`` with a seeded bootstrap confidence interval.

    Cases are resampled with replacement as pairs (resampling the differences, which is what
    ``scipy.stats.bootstrap(..., paired=True)`` does), using :func:`scipy.stats.bootstrap`. The default interval is
    the percentile interval: the median is not a smooth statistic, and BCa's jackknife acceleration is unreliable
    for it on the few dozen cases of a typical evaluation; ``method="BCa"`` or ``"basic"`` are available.

    Args:
        x: per-case baseline scores.
        y: per-case scores under the condition, same cases in the same order.
        n_resamples: bootstrap resamples.
        confidence: confidence level of the two-sided interval.
        seed: seed of the generator; the same seed gives the same interval.
        method: scipy's interval method: ``"percentile"``, ``"basic"`` or ``"BCa"``.

    Returns:
        Median difference and interval. Fewer than 2 pairs give a NaN interval; identical differences give a
        zero-width interval at their value. Pairs with a NaN are dropped.
    """
    a, b = _paired(x, y)
    d = a - b
    n = int(d.size)
    median = float(np.median(d)) if n else math.nan
    if n < 2:
        return BootstrapResult(median, math.nan, math.nan, confidence, n, method)
    if np.all(d == d[0]):
        return BootstrapResult(median, median, median, confidence, n, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning of BCa on near-constant data; NaN tells the caller
        res = stats.bootstrap(
            (d,),
            np.median,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    ci = res.confidence_interval
    return BootstrapResult(median, float(ci.low), float(ci.high), confidence, n, method)


def relative_reduction(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """``(mean x - mean y) / mean x`` over the pairs without NaN: 0.65 means y is 65 % below x.

    NaN when there is no pair or ``mean x`` is 0.
    """
    a, b = _paired(x, y)
    if a.size == 0:
        return math.nan
    mean_x = float(np.mean(a))
    return math.nan if mean_x == 0 else (mean_x - float(np.mean(b))) / mean_x


def _first_seen(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def compare_conditions(
    table: Iterable[Mapping[str, Any]],
    baseline: str = "clean",
    regions: Sequence[str] | None = None,
    alternative: str = "greater",
    metric: str = "dice",
    zero_method: str = "zsplit",
    method: str = "auto",
    alpha: float = 0.05,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Paired comparison of every condition with the baseline, per region, over cases, Holm-corrected.

    For each region and each non-baseline condition, the cases scored under both are paired by ``case_id``;
    cases present under only one, or NaN in either, are dropped from that pair and counted. The family corrected by
    :func:`holm` is every region x condition of this call. Comparing two models on clean data works the same way:
    ``condition`` holds the model names, ``baseline`` names model A, and ``alternative="two-sided"``.

    Args:
        table: per-case rows with ``case_id``, ``condition``, ``region`` and the ``metric`` column (e.g. from
            :func:`robustseg.evaluation.metrics.long_rows`).
        baseline: the condition every other one is compared with.
        regions: regions to compare, in this order; default: all in the table in order of first appearance.
        alternative: Wilcoxon alternative for "baseline vs condition" (see :func:`paired_wilcoxon`).
        metric: the score column (``"dice"``; ``"hd95"`` with ``alternative="less"`` for distances).
        zero_method: zero handling of the test and of the rank-biserial correlation.
        method: scipy's Wilcoxon ``method``.
        alpha: family-wise level for the ``significant`` flag (Holm-adjusted p <= alpha).
        n_resamples: bootstrap resamples for the interval of the median drop.
        confidence: level of that interval.
        seed: bootstrap seed.

    Returns:
        One dict per region and condition: ``region``, ``condition``, ``baseline``, ``n`` (pairs), ``n_missing``
        (cases in only one of the two), ``n_nan``, ``median_baseline``, ``median_condition``, ``mean_baseline``,
        ``mean_condition``, ``median_drop`` (median of baseline - condition) with ``median_drop_low`` and
        ``median_drop_high``, ``relative_reduction``, ``statistic``, ``p_value``, ``p_holm``, ``rank_biserial``,
        ``significant``, ``alpha``, ``alternative``, ``zero_method``, ``note``.
    """
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for i, row in enumerate(table):
        try:
            key = (str(row["condition"]), str(row["region"]))
            case_id, value = str(row["case_id"]), float(row[metric])
        except KeyError as e:
            raise ValueError(f"row {i} needs case_id, condition, region and {metric!r} but lacks {e}.") from None
        cases = scores.setdefault(key, {})
        if case_id in cases:
            raise ValueError(f"case {case_id!r} appears twice for condition {key[0]!r} and region {key[1]!r}.")
        cases[case_id] = value
    conditions = _first_seen(c for c, _ in scores)
    if baseline not in conditions:
        raise ValueError(f"baseline condition {baseline!r} is not in the table, which has {conditions}.")
    regions = list(regions) if regions is not None else _first_seen(r for _, r in scores)

    results: list[dict[str, Any]] = []
    for region in regions:
        base = scores.get((baseline, region), {})
        for condition in (c for c in conditions if c != baseline):
            other = scores.get((condition, region), {})
            shared = [c for c in base if c in other]
            n_missing = len(base) + len(other) - 2 * len(shared)
            pairs = [(base[c], other[c]) for c in shared if not (math.isnan(base[c]) or math.isnan(other[c]))]
            x = np.array([p[0] for p in pairs], dtype=float)
            y = np.array([p[1] for p in pairs], dtype=float)
            test = paired_wilcoxon(x, y, alternative=alternative, zero_method=zero_method, method=method)
            boot = bootstrap_median_difference(x, y, n_resamples=n_resamples, confidence=confidence, seed=seed)
            results.append(
                {
                    "region": region,
                    "condition": condition,
                    "baseline": baseline,
                    "n": len(pairs),
                    "n_missing": n_missing,
                    "n_nan": len(shared) - len(pairs),
                    "median_baseline": float(np.median(x)) if x.size else math.nan,
                    "median_condition": float(np.median(y)) if y.size else math.nan,
                    "mean_baseline": float(np.mean(x)) if x.size else math.nan,
                    "mean_condition": float(np.mean(y)) if y.size else math.nan,
                    "median_drop": boot.median,
                    "median_drop_low": boot.low,
                    "median_drop_high": boot.high,
                    "relative_reduction": relative_reduction(x, y),
                    "statistic": test.statistic,
                    "p_value": test.pvalue,
                    "rank_biserial": rank_biserial(x, y, zero_method=zero_method),
                    "alternative": alternative,
                    "zero_method": zero_method,
                    "note": test.note,
                }
            )
    adjusted = holm([r["p_value"] for r in results])
    for r, p in zip(results, adjusted, strict=True):
        r["p_holm"] = float(p)
        r["significant"] = bool(p <= alpha)
        r["alpha"] = alpha
    return results


def smallest_wilcoxon_p(n: int, alternative: str = "greater") -> float:
    """The smallest p an exact Wilcoxon signed-rank test on ``n`` pairs can give: every difference of one sign.

    One-sided it is ``2**-n``, two-sided twice that (at most 1); with ``n = 2`` no p below 0.25 exists.
    """
    if n < 1:
        return 1.0
    p = 0.5**n
    return min(1.0, 2 * p) if alternative == "two-sided" else p


def small_sample_warning(stats_rows: Sequence[Mapping[str, Any]]) -> str | None:
    """A warning when too few cases were paired for any test of ``stats_rows`` to reach significance, else ``None``.

    The bound is the exact test's smallest p times the number of tests (Holm's smallest adjusted p); the warning
    says how many cases would be needed at the rows' alpha.
    """
    sized = [r for r in stats_rows if math.isfinite(float(r.get("n") or 0)) and int(float(r.get("n") or 0)) > 0]
    if not sized:
        return None
    tests = len(stats_rows)
    alpha = float(sized[0].get("alpha") or 0.05)
    alternative = str(sized[0].get("alternative") or "greater")
    n = max(int(float(r["n"])) for r in sized)
    best = min(1.0, tests * smallest_wilcoxon_p(n, alternative))
    if best <= alpha:
        return None
    needed = next(k for k in range(1, 64) if tests * smallest_wilcoxon_p(k, alternative) <= alpha)
    return (
        f"Too few cases for these tests: with n = {n} paired cases the smallest p an exact {alternative} Wilcoxon "
        f"signed-rank test can give is {smallest_wilcoxon_p(n, alternative):.3g}, and Holm over the {tests} tests "
        f"of this report raises it to {best:.3g}, above alpha {alpha:g}. No comparison can be significant, and "
        f"intervals from so few cases are rough. At least {needed} cases are needed."
    )
