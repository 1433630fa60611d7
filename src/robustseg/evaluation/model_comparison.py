"""Paired tests between models scored on the same cases under the same conditions, one Holm family.

The defence comparison scores several checkpoints of one bundle with one condition sweep each; its long table holds
one row per model x case x condition x region. :func:`compare_models` tests, per region:

* on clean data, each model against the baseline (two-sided: a defence that costs clean Dice must show it);
* under every other condition, every pair of models (or each model against the baseline, ``pairs="baseline"``), on
  the attacked score (``measure="score"``) and on the case's drop from its own clean score (``measure="drop"``:
  clean - attacked, lower is more robust).

Every test is a two-sided paired Wilcoxon signed-rank test over the cases both models scored, with the rank-biserial
effect size and a seeded bootstrap interval of the median difference (model A - model B); Holm's correction runs over
the whole family of the call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from robustseg.evaluation.statistics import compare_conditions, holm

__all__ = ["MEASURES", "PAIRS", "compare_models", "model_scores"]

MEASURES = ("score", "drop")
"""What is compared between models: the score under the condition, or its drop from the model's clean score."""

PAIRS = ("all", "baseline")
"""Which models are tested under each condition: every pair, or each model against the baseline."""

CLEAN = "clean"


def model_scores(
    rows: Iterable[Mapping[str, Any]], metric: str = "dice"
) -> dict[tuple[str, str, str], dict[str, float]]:
    """``{(model, condition, region): {case_id: score}}`` from rows with ``model``, ``case_id``, ``condition``,
    ``region`` and ``metric``; a case twice under one key is refused."""
    scores: dict[tuple[str, str, str], dict[str, float]] = {}
    for i, row in enumerate(rows):
        try:
            key = (str(row["model"]), str(row["condition"]), str(row["region"]))
            case_id, value = str(row["case_id"]), float(row[metric])
        except KeyError as e:
            raise ValueError(f"row {i} needs model, case_id, condition, region and {metric!r} but lacks {e}.") from None
        cases = scores.setdefault(key, {})
        if case_id in cases:
            raise ValueError(f"case {case_id!r} appears twice for model {key[0]!r}, {key[1]!r}, region {key[2]!r}.")
        cases[case_id] = value
    return scores


def _check(value: str, name: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)} but is {value!r}.")


def compare_models(
    rows: Iterable[Mapping[str, Any]],
    models: Sequence[str],
    conditions: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    metric: str = "dice",
    measures: Sequence[str] = MEASURES,
    pairs: str = "all",
    alpha: float = 0.05,
    n_resamples: int = 10000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The paired tests between models (see the module docstring); ``models[0]`` is the baseline.

    Args:
        rows: per-case rows with ``model``, ``case_id``, ``condition``, ``region`` and the ``metric`` column.
        models: the models in report order, the baseline first; each must have rows.
        conditions: the conditions besides ``clean`` to test under, in order; default: all in the rows.
        regions: the regions, in order; default: all in the rows, in order of first appearance.
        metric: the score column (``dice``, or ``iou`` for natural images).
        measures: a subset of :data:`MEASURES` for the conditions (clean is always tested on the score).
        pairs: one of :data:`PAIRS`.
        alpha: family-wise level of the ``significant`` flag.
        n_resamples, seed: the bootstrap of the median difference.

    Returns:
        One dict per test: ``measure``, ``condition``, ``region``, ``model_a``, ``model_b``, ``n``, ``mean_a``,
        ``mean_b``, ``median_a``, ``median_b``, ``median_difference`` (of A - B per case) with ``median_difference_low``
        and ``median_difference_high``, ``statistic``, ``p_value``, ``p_holm``, ``significant``, ``rank_biserial``
        (positive: A scores higher), ``better`` (the model with the higher score, or the lower drop, when significant;
        else empty), ``n_missing``, ``n_nan``, ``alpha``, ``note``.
    """
    _check(pairs, "pairs", PAIRS)
    for m in measures:
        _check(m, "measure", MEASURES)
    models = [str(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"a comparison needs two or more models but has {models}.")
    if len(set(models)) != len(models):
        raise ValueError(f"the models {models} name one model twice.")
    scores = model_scores(rows, metric)
    present = {m for m, _, _ in scores}
    lacking = [m for m in models if m not in present]
    if lacking:
        raise ValueError(f"models {lacking} have no scored rows.")
    seen_conditions = list(dict.fromkeys(c for _, c, _ in scores))
    if conditions is None:
        conditions = [c for c in seen_conditions if c != CLEAN]
    if regions is None:
        regions = list(dict.fromkeys(r for _, _, r in scores))

    def values(model: str, condition: str, region: str, measure: str) -> dict[str, float]:
        attacked = scores.get((model, condition, region), {})
        if measure == "score":
            return attacked
        clean = scores.get((model, CLEAN, region), {})
        return {case: clean[case] - v for case, v in attacked.items() if case in clean}

    def tests(measure: str, condition: str, chosen: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        out = []
        for a, b in chosen:
            table = [
                {"case_id": case, "condition": model, "region": region, "value": v}
                for region in regions
                for model in (a, b)
                for case, v in values(model, condition, region, measure).items()
            ]
            if not any(t["condition"] == a for t in table) or not any(t["condition"] == b for t in table):
                continue  # neither model (or only one) was scored under this condition
            tested = compare_conditions(table, a, regions, "two-sided", "value", n_resamples=n_resamples, seed=seed)
            out += [_as_pair(r, measure, condition, a, b) for r in tested]
        return out

    baseline = models[0]
    results = tests("score", CLEAN, [(baseline, m) for m in models[1:]])
    if pairs == "all":
        chosen = [(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
    else:
        chosen = [(baseline, m) for m in models[1:]]
    for condition in conditions:
        for measure in measures:
            results += tests(measure, condition, chosen)
    adjusted = holm([r["p_value"] for r in results]) if results else np.array([])
    for r, p in zip(results, adjusted, strict=True):
        r["p_holm"] = float(p)
        r["significant"] = bool(p <= alpha)
        r["alpha"] = alpha
        r["better"] = _better(r) if r["significant"] else ""
    return results


def _as_pair(r: Mapping[str, Any], measure: str, condition: str, a: str, b: str) -> dict[str, Any]:
    """A row of :func:`~robustseg.evaluation.statistics.compare_conditions` (A as its baseline) as a model pair."""
    return {
        "measure": measure,
        "condition": condition,
        "region": r["region"],
        "model_a": a,
        "model_b": b,
        "n": r["n"],
        "mean_a": r["mean_baseline"],
        "mean_b": r["mean_condition"],
        "median_a": r["median_baseline"],
        "median_b": r["median_condition"],
        "median_difference": r["median_drop"],
        "median_difference_low": r["median_drop_low"],
        "median_difference_high": r["median_drop_high"],
        "statistic": r["statistic"],
        "p_value": r["p_value"],
        "rank_biserial": r["rank_biserial"],
        "n_missing": r["n_missing"],
        "n_nan": r["n_nan"],
        "note": r["note"],
    }


def _better(r: Mapping[str, Any]) -> str:
    """The model a significant test favours: the higher score, or the lower drop (by the paired effect's sign)."""
    effect = float(r["rank_biserial"])
    if math.isnan(effect) or effect == 0:
        return ""
    a_higher = effect > 0
    if r["measure"] == "drop":
        a_higher = not a_higher
    return str(r["model_a"] if a_higher else r["model_b"])
