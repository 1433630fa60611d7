"""The statistics of SegCertify: one-sided binomial tests per voxel, corrected over all voxels, and their power.

A voxel whose top class ``c`` came up ``k`` times in ``n`` noise samples is certified when the one-sided binomial
test rejects ``H0: p_c <= tau``. Its p-value is ``P(X >= k)`` for ``X ~ Binomial(n, tau)``. With millions of voxels
tested at once, the family-wise error is held at ``alpha`` by Holm's step-down procedure or by Bonferroni.

Every p-value depends on the count alone, so the ``n + 1`` possible values are computed once with
``scipy.stats.binom.sf`` (not ``scipy.stats.binom_test``, which SciPy removed), and Holm's procedure runs over the
histogram of counts: it is exact and costs O(n), not a sort of every voxel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from scipy import stats

__all__ = [
    "CORRECTIONS",
    "binomial_pvalue_table",
    "binomial_pvalues",
    "certify_counts",
    "check_alpha",
    "check_correction",
    "check_count",
    "check_tau",
    "power_table",
    "reject",
    "reject_bonferroni",
    "reject_holm",
    "votes_needed",
]

CORRECTIONS = ("holm", "bonferroni")
"""Multiple-testing corrections over the voxels of one case."""


def check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0.5 < tau < 1.0:
        raise ValueError(f"tau must lie in (0.5, 1) but is {tau}; SegCertify's default is 0.75.")
    return tau


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) but is {alpha}; SegCertify's default is 1e-4.")
    return alpha


def check_count(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise ValueError(f"{name} must be an integer >= 1 but is {n!r}.")
    return int(n)


def check_correction(correction: str) -> str:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {list(CORRECTIONS)} but is {correction!r}.")
    return correction


def _as_counts(counts: torch.Tensor | np.ndarray, n: int) -> np.ndarray:
    k = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts, dtype=np.int64)
    if k.size and (k.min() < 0 or k.max() > n):
        raise ValueError(f"counts must lie in [0, {n}] but range over [{k.min()}, {k.max()}].")
    return k


def binomial_pvalue_table(n: int, tau: float) -> np.ndarray:
    """``table[k] = P(X >= k)`` for ``X ~ Binomial(n, tau)``, ``k = 0..n``: the p-value of ``k`` consistent votes."""
    n, tau = check_count(n), float(tau)
    return stats.binom.sf(np.arange(n + 1) - 1, n, tau)


def binomial_pvalues(counts: torch.Tensor | np.ndarray, n: int, tau: float) -> np.ndarray:
    """One-sided p-values of ``H0: p <= tau`` for each count of consistent votes out of ``n`` (float64 array)."""
    return binomial_pvalue_table(n, tau)[_as_counts(counts, n)]


def reject_bonferroni(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Reject where ``p <= alpha / m`` (m: number of tests); boolean array of the input's shape."""
    p = np.asarray(pvalues, dtype=float)
    return p <= check_alpha(alpha) / max(p.size, 1)


def _holm_groups(values: np.ndarray, sizes: np.ndarray, m: int, alpha: float) -> np.ndarray:
    """Holm's step-down over groups of tied p-values, ``values`` ascending with ``sizes`` members each (none empty).

    The first member of a group faces ``alpha / (m - rejected before)``; if it passes, the rest of the group (with
    looser thresholds) pass too. Returns which groups are rejected.
    """
    rejected_before = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.logical_and.accumulate(values <= alpha / (m - rejected_before))


def reject_holm(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections at family-wise level ``alpha``; boolean array of the input's shape.

    Sorted ascending, ``p(i)`` (1-based) is rejected while ``p(j) <= alpha / (m - j + 1)`` for every ``j <= i``.
    """
    p = np.asarray(pvalues, dtype=float)
    values, inverse, sizes = np.unique(p.ravel(), return_inverse=True, return_counts=True)
    return _holm_groups(values, sizes, p.size, check_alpha(alpha))[inverse].reshape(p.shape)


def reject(pvalues: np.ndarray, alpha: float, correction: str = "holm") -> np.ndarray:
    """Rejections at family-wise level ``alpha`` with ``holm`` or ``bonferroni``."""
    if check_correction(correction) == "bonferroni":
        return reject_bonferroni(pvalues, alpha)
    return reject_holm(pvalues, alpha)


def certify_counts(
    counts: torch.Tensor | np.ndarray, n: int, tau: float, alpha: float, correction: str = "holm"
) -> tuple[np.ndarray, np.ndarray]:
    """Which voxels are certified: ``(certified bool array, p-values)`` for the counts of their top class.

    Args:
        counts: consistent votes per voxel, integers in ``[0, n]``.
        n: noise samples drawn for the counts.
        tau: the threshold of ``H0: p_c <= tau``.
        alpha: family-wise error level over all voxels of the case.
        correction: ``holm`` (step-down; never certifies fewer voxels than Bonferroni) or ``bonferroni``.
    """
    correction = check_correction(correction)
    n, tau, alpha = check_count(n), check_tau(tau), check_alpha(alpha)
    k = _as_counts(counts, n)
    table = binomial_pvalue_table(n, tau)
    pvalues = table[k]
    if correction == "bonferroni":
        return reject_bonferroni(pvalues, alpha), pvalues
    # Holm through the histogram of counts: the p-value falls with the count, so most votes come first (O(n), no sort)
    histogram = np.bincount(k.ravel(), minlength=n + 1)
    seen = np.flatnonzero(histogram)[::-1]
    certified_counts = np.zeros(n + 1, dtype=bool)
    certified_counts[seen] = _holm_groups(table[seen], histogram[seen], k.size, alpha)
    return certified_counts[k], pvalues


def votes_needed(num_voxels: int, n: int, tau: float, alpha: float) -> int | None:
    """The fewest consistent votes out of ``n`` that certify a voxel whatever the other voxels' counts.

    That is the smallest ``k`` with ``P(X >= k) <= alpha / num_voxels`` for ``X ~ Binomial(n, tau)``: Bonferroni's
    threshold and Holm's first step (Holm may certify later voxels with fewer votes once others are certified).
    ``None`` when even ``n`` of ``n`` votes do not suffice: draw more samples.
    """
    num_voxels, n = check_count(num_voxels, "num_voxels"), check_count(n)
    table = binomial_pvalue_table(n, check_tau(tau))
    ok = np.flatnonzero(table <= check_alpha(alpha) / num_voxels)
    return int(ok[0]) if ok.size else None


def power_table(
    num_voxels: Iterable[int], ns: Iterable[int], taus: Iterable[float], alpha: float = 1e-4
) -> list[dict[str, Any]]:
    """Rows ``num_voxels, n, tau, alpha, votes_needed, share_needed`` for choosing ``n`` knowingly.

    Example (BraTS, 240 x 240 x 155 voxels, tau 0.75, alpha 1e-4): n = 100 needs 99 votes (99 %), n = 1000 needs
    839 (84 %; the seed paper's "about 835" is a rounded figure: 835 votes give p = 5.7e-11 > 1.1e-11).
    """
    rows = []
    for m in num_voxels:
        for n in ns:
            for tau in taus:
                k = votes_needed(m, n, tau, alpha)
                rows.append(
                    {
                        "num_voxels": int(m),
                        "n": int(n),
                        "tau": float(tau),
                        "alpha": float(alpha),
                        "votes_needed": k,
                        "share_needed": None if k is None else k / n,
                    }
                )
    return rows
