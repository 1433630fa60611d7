"""The adaptive sensitivity curve of one basis perturbation (seed 000, Zheng et al.).

For a trained model and an op, each evaluated level ``l`` in [0, 1] gives the score drop it causes and the KID it
moves the model's features by. The sensitivity objective of a level is ``drop / drop_max + 2 l - KID / KID_max``
(the maxima over the levels evaluated so far; a zero maximum drops its term), which runs from 0 at ``l = 0`` to
about 2 at ``l = 1``. The curve is the monotone PCHIP interpolant of the isotonic fit of the objective, so it can be
inverted: :meth:`SensitivityCurve.levels_at` gives the levels at the targets (0.4, 0.8, 1.2, 1.6 by default).

:func:`adaptive_curve` starts from levels 0 and 1, splits [0, 1] at 1/2, and goes on splitting intervals at their
midpoints, one evaluation at a time. An interval's estimated error is half the *surplus* of the split that made it:
how far the new evaluation lay from the curve before it (a hierarchical surplus, as in adaptive sparse grids). Where
the curve bends or jumps, a split lands far from the coarser curve and its two halves are split again; where it is
straight, the surplus is small and the refinement stops. It stops when no interval's estimate exceeds ``tol`` (0.05)
or the budget of evaluations is spent. (A curve's departure from its own chord is no estimate: through three points
on a late cliff the monotone interpolant is nearly straight, and the cliff goes unseen.) At equal true error this
places levels about as well as a uniform sweep does (``scripts/bench_sensitivity.py``), not the paper's 10x better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq, isotonic_regression

__all__ = [
    "DEFAULT_TARGETS",
    "AdaptiveCurve",
    "SensitivityCurve",
    "SensitivityPoint",
    "adaptive_curve",
    "interval_errors",
    "objective",
    "surpluses",
]

DEFAULT_TARGETS = (0.4, 0.8, 1.2, 1.6)


@dataclass(frozen=True)
class SensitivityPoint:
    """One evaluated level of an op: the score drop it caused and the KID of the features it moved."""

    level: float
    drop: float
    kid: float


def objective(points: Sequence[SensitivityPoint]) -> np.ndarray:
    """``drop / drop_max + 2 level - KID / KID_max`` of every point, normalised over the points given."""
    levels = np.array([p.level for p in points], dtype=float)
    drops = np.array([p.drop for p in points], dtype=float)
    kids = np.array([p.kid for p in points], dtype=float)
    drop_max, kid_max = drops.max(initial=0.0), kids.max(initial=0.0)
    value = 2.0 * levels
    if drop_max > 0:
        value += drops / drop_max
    if kid_max > 0:
        value -= kids / kid_max
    return value


@dataclass(frozen=True)
class SensitivityCurve:
    """A monotone curve through an op's evaluated levels: objective against level."""

    points: tuple[SensitivityPoint, ...]
    levels: np.ndarray = field(init=False, repr=False)
    values: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len({p.level for p in self.points}) < 2:
            raise ValueError("a sensitivity curve needs at least two distinct levels")
        ordered = sorted(self.points, key=lambda p: p.level)
        object.__setattr__(self, "points", tuple(ordered))
        object.__setattr__(self, "levels", np.array([p.level for p in ordered], dtype=float))
        object.__setattr__(self, "values", isotonic_regression(objective(ordered)).x)

    def __call__(self, level: float | np.ndarray) -> np.ndarray:
        return PchipInterpolator(self.levels, self.values)(level)

    def levels_at(self, targets: Sequence[float] = DEFAULT_TARGETS) -> list[float]:
        """The level where the curve reaches each target (the ends of the evaluated range beyond them)."""
        lo, hi = float(self.levels[0]), float(self.levels[-1])
        found = []
        for target in targets:
            if target <= self.values[0]:
                found.append(lo)
            elif target >= self.values[-1]:
                found.append(hi)
            else:
                found.append(float(brentq(lambda x, t=target: float(self(x)) - t, lo, hi, xtol=1e-6)))
        return found


def surpluses(points: Sequence[SensitivityPoint]) -> np.ndarray:
    """Each point's hierarchical surplus, ``points`` in the order they were evaluated (the ends 0 and 1 first).

    The surplus of point ``k`` is |curve of all points - curve of the points before ``k``| at its level, both on the
    normalisation of all points (the maxima of drop and KID move as levels are added). The first two are 0.
    """
    levels = np.array([p.level for p in points], dtype=float)
    values = objective(points)
    order = np.argsort(levels, kind="stable")
    fitted = np.empty_like(values)
    fitted[order] = isotonic_regression(values[order]).x
    out = np.zeros(len(points))
    for k in range(2, len(points)):
        before = np.argsort(levels[:k], kind="stable")
        coarse = PchipInterpolator(levels[:k][before], isotonic_regression(values[:k][before]).x)
        out[k] = abs(float(coarse(levels[k])) - fitted[k])
    return out


def interval_errors(points: Sequence[SensitivityPoint]) -> np.ndarray:
    """Per interval between the sorted levels of ``points`` (in evaluation order): its estimated error, half the
    surplus of whichever end was evaluated later (the split that made the interval).

    Half, because halving an interval halves the interpolation error at a kink (a slope that jumps, as at the corner of
    a cliff), the slowest case for a monotone curve of bounded slope; where the curve is smooth it falls faster.
    """
    rank = np.argsort(np.array([p.level for p in points], dtype=float), kind="stable")
    surplus = surpluses(points)
    born = np.arange(len(points))
    left, right = rank[:-1], rank[1:]
    return 0.5 * np.where(born[left] > born[right], surplus[left], surplus[right])


@dataclass(frozen=True)
class AdaptiveCurve:
    """The result of :func:`adaptive_curve`: the curve, its levels at the targets, and how it was reached."""

    curve: SensitivityCurve
    targets: tuple[float, ...]
    levels: tuple[float, ...]
    error: float
    evaluations: int

    def to_dict(self) -> dict:
        return {
            "points": [vars(p) for p in self.curve.points],
            "objective": self.curve.values.tolist(),
            "targets": list(self.targets),
            "levels": list(self.levels),
            "error": self.error,
            "evaluations": self.evaluations,
        }


def adaptive_curve(
    evaluate: Callable[[float], tuple[float, float]],
    *,
    tol: float = 0.05,
    max_evaluations: int = 12,
    min_width: float = 1.0 / 64,
    targets: Sequence[float] = DEFAULT_TARGETS,
) -> AdaptiveCurve:
    """Evaluate ``evaluate(level) -> (drop, kid)`` at adaptively chosen levels until the curve's error is below ``tol``.

    Args:
        evaluate: the model's score drop and feature KID at one level of the op (level 0 gives the clean drop, 0).
        tol: stop when no interval's estimated error (:func:`interval_errors`) exceeds it.
        max_evaluations: the budget, the first three levels included.
        min_width: intervals narrower than this are not split again.
        targets: objective values whose levels the result reports.
    """
    if max_evaluations < 3:
        raise ValueError(f"max_evaluations must be at least 3 (levels 0, 1/2 and 1), got {max_evaluations}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    points = [SensitivityPoint(level, *map(float, evaluate(level))) for level in (0.0, 1.0, 0.5)]
    while True:
        curve = SensitivityCurve(tuple(points))
        widths = np.diff(curve.levels)
        errors = np.where(widths >= 2 * min_width, interval_errors(points), 0.0)
        worst = int(np.argmax(errors))
        if errors[worst] < tol or len(points) >= max_evaluations:
            break
        level = float((curve.levels[worst] + curve.levels[worst + 1]) / 2)
        points.append(SensitivityPoint(level, *map(float, evaluate(level))))
    return AdaptiveCurve(curve, tuple(targets), tuple(curve.levels_at(targets)), float(errors.max()), len(points))
