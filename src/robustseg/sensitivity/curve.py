"""The adaptive sensitivity curve of one basis perturbation (seed 000, Zheng et al.).

For a trained model and an op, each evaluated level ``l`` in [0, 1] gives the score drop it causes and the KID it
moves the model's features by. The sensitivity objective of a level is ``drop / drop_max + 2 l - KID / KID_max``
(the maxima over the levels evaluated so far; a zero maximum drops its term), which runs from 0 at ``l = 0`` to
about 2 at ``l = 1``. The curve is the monotone PCHIP interpolant of the isotonic fit of the objective, so it can be
inverted: :meth:`SensitivityCurve.levels_at` gives the levels at the targets (0.4, 0.8, 1.2, 1.6 by default).

:func:`adaptive_curve` starts from levels 0, 1/2 and 1 and adds one evaluation at a time, at the midpoint of the
interval where the curve departs most from the chord between its ends (the estimated error of the curve there),
until that estimate is below ``tol`` (0.05) or the budget of evaluations is spent. Where a uniform sweep spends
evaluations on stretches where the curve is straight, the adaptive one spends them where it bends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq, isotonic_regression

__all__ = ["DEFAULT_TARGETS", "AdaptiveCurve", "SensitivityCurve", "SensitivityPoint", "adaptive_curve", "objective"]

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

    def interval_errors(self) -> np.ndarray:
        """Per interval between evaluated levels: |curve - chord| at its midpoint, the curve's estimated error there."""
        mids = (self.levels[:-1] + self.levels[1:]) / 2
        chord = (self.values[:-1] + self.values[1:]) / 2
        return np.abs(self(mids) - chord)

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
        tol: stop when no interval's estimated error (:meth:`SensitivityCurve.interval_errors`) exceeds it.
        max_evaluations: the budget, the first three levels included.
        min_width: intervals narrower than this are not split again.
        targets: objective values whose levels the result reports.
    """
    if max_evaluations < 3:
        raise ValueError(f"max_evaluations must be at least 3 (levels 0, 1/2 and 1), got {max_evaluations}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    points = [SensitivityPoint(level, *map(float, evaluate(level))) for level in (0.0, 0.5, 1.0)]
    while True:
        curve = SensitivityCurve(tuple(points))
        errors = curve.interval_errors()
        widths = np.diff(curve.levels)
        errors = np.where(widths >= 2 * min_width, errors, 0.0)
        worst = int(np.argmax(errors))
        if errors[worst] < tol or len(points) >= max_evaluations:
            break
        level = float((curve.levels[worst] + curve.levels[worst + 1]) / 2)
        points.append(SensitivityPoint(level, *map(float, evaluate(level))))
    return AdaptiveCurve(curve, tuple(targets), tuple(curve.levels_at(targets)), float(errors.max()), len(points))
