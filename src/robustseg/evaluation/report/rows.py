"""The audit's long table: typed rows, condition names, the conditions, regions and paired scores of a report.

The input is the long table of a sweep, one row per case x condition x region (as
:class:`~robustseg.evaluation.results.ResultsStore` writes it, so values may be strings): ``case_id``, ``attack``
(``"clean"`` for the clean condition), ``eps`` (0 for clean), ``region``, ``dice``, ``hd95`` and the per-case
perturbation size ``linf``, ``l2``, ``psnr_db``. A condition is named ``"<attack>@<eps>"`` (:func:`condition_name`);
:func:`audit_rows` types the rows and adds that name as ``condition``, which makes them the table of
:func:`robustseg.evaluation.statistics.compare_conditions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["CLEAN", "audit_rows", "condition_name", "mean_interval", "select_conditions"]

CLEAN = "clean"
_NUMERIC = ("eps", "dice", "hd95", "iou", "linf", "l2", "psnr_db")
_REQUIRED = ("case_id", "attack", "eps", "region", "dice")


def condition_name(attack: str, eps: float | str) -> str:
    """The name of a condition: ``"clean"`` for the clean one, else ``f"{attack}@{eps:g}"`` (``"fgsm@0.1"``)."""
    attack = str(attack)
    return CLEAN if attack == CLEAN else f"{attack}@{float(eps):g}"


def _float(value: Any) -> float:
    """A float from a number or its CSV text; empty text and ``None`` are NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    return float(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def audit_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Typed copies of the audit rows with their ``condition`` added.

    Args:
        rows: one row per case x condition x region with ``case_id``, ``attack``, ``eps``, ``region``, ``dice`` and
            optionally ``hd95``, ``iou``, ``linf``, ``l2``, ``psnr_db``; numbers may be CSV text, empty text is NaN.

    Returns:
        New dicts: ids and names as ``str``, the numeric columns as ``float`` (missing ones NaN, ``eps`` 0 for clean),
        plus ``condition`` from :func:`condition_name`. Other keys are kept as they are.

    Raises:
        ValueError: a row lacks a required key or has a value that is not a number.
    """
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise ValueError(f"audit row {i} needs {list(_REQUIRED)} but lacks {missing}: {dict(row)}.")
        typed = dict(row)
        typed["case_id"], typed["attack"], typed["region"] = str(row["case_id"]), str(row["attack"]), str(row["region"])
        for key in _NUMERIC:
            try:
                typed[key] = _float(row.get(key))
            except (TypeError, ValueError):
                raise ValueError(
                    f"audit row {i} (case {typed['case_id']!r}): {key} must be a number but is {row.get(key)!r}."
                ) from None
        if typed["attack"] == CLEAN and math.isnan(typed["eps"]):
            typed["eps"] = 0.0
        typed["condition"] = condition_name(typed["attack"], typed["eps"])
        out.append(typed)
    return out


def _attack_eps(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Attacks in order of first appearance, each with its eps values ascending (clean left out)."""
    found: dict[str, set[float]] = {}
    for r in rows:
        if r["attack"] != CLEAN:
            found.setdefault(r["attack"], set()).add(r["eps"])
    return {a: sorted(e) for a, e in found.items()}


def _conditions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """All conditions: clean first (if present), then by attack and ascending eps."""
    attacked = [condition_name(a, e) for a, eps in _attack_eps(rows).items() for e in eps]
    return ([CLEAN] if any(r["attack"] == CLEAN for r in rows) else []) + attacked


def _regions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["region"] for r in rows))


def _scores(rows: Sequence[Mapping[str, Any]], region: str, condition: str, metric: str = "dice") -> dict[str, float]:
    """Case id -> score of one region and condition."""
    return {r["case_id"]: r[metric] for r in rows if r["region"] == region and r["condition"] == condition}


def _pairs(base: Mapping[str, float], other: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Cases scored (not NaN) under both, with their two scores."""
    cases = [c for c in base if c in other and not (math.isnan(base[c]) or math.isnan(other[c]))]
    return cases, np.array([base[c] for c in cases], dtype=float), np.array([other[c] for c in cases], dtype=float)


def select_conditions(rows: Iterable[Mapping[str, Any]], max_conditions: int = 6) -> list[str]:
    """The attacked conditions to plot: all of them, or at most ``max_conditions`` with the strongest eps first.

    When there are too many, each attack's largest eps is taken, then each attack's second largest, and so on, until
    ``max_conditions`` are chosen; the result is ordered by attack and ascending eps.
    """
    if max_conditions < 1:
        raise ValueError(f"max_conditions must be >= 1 but is {max_conditions}.")
    by_attack = _attack_eps(audit_rows(rows))
    strongest_first = {a: eps[::-1] for a, eps in by_attack.items()}
    chosen: set[tuple[str, float]] = set()
    level = 0
    while len(chosen) < max_conditions and any(level < len(e) for e in strongest_first.values()):
        for attack, eps in strongest_first.items():
            if level < len(eps) and len(chosen) < max_conditions:
                chosen.add((attack, eps[level]))
        level += 1
    return [condition_name(a, e) for a, eps in by_attack.items() for e in eps if (a, e) in chosen]


def mean_interval(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: str = "bootstrap",
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of the finite values with a two-sided interval across cases.

    Args:
        values: per-case scores; NaN is dropped.
        confidence: level of the interval.
        method: ``"bootstrap"`` (percentile interval of the mean over ``n_resamples`` seeded resamples of the cases;
            it stays inside the range of the data, which suits bounded scores like Dice) or ``"t"`` (Student t).
        n_resamples: bootstrap resamples.
        seed: bootstrap seed; the same seed gives the same interval.

    Returns:
        ``(mean, low, high)``; the interval is NaN with fewer than 2 values, all three with none.
    """
    if method not in ("bootstrap", "t"):
        raise ValueError(f"method must be 'bootstrap' or 't' but is {method!r}.")
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    if method == "t":
        half = float(stats.sem(v)) * float(stats.t.ppf((1 + confidence) / 2, v.size - 1))
        return mean, mean - half, mean + half
    index = np.random.default_rng(seed).integers(0, v.size, size=(n_resamples, v.size))
    low, high = np.quantile(v[index].mean(axis=1), [(1 - confidence) / 2, (1 + confidence) / 2])
    return mean, float(low), float(high)
