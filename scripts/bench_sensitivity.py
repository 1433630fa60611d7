"""What the adaptive sensitivity analysis saves, and what a refresh costs during training (JSON).

1. Model evaluations: for each response (a score drop and a feature KID against level), the adaptive curve
   (:func:`robustseg.sensitivity.adaptive_curve`) is built and its true error measured against the curve of a dense
   reference sweep (257 levels); then the smallest uniform sweep of levels (0, 1/(n-1), .., 1) whose curve is at least
   as close is found. The ratio is uniform / adaptive evaluations (seed 000 claims about 10x); ``within_tol`` says
   whether the adaptive curve's true error is below the tolerance its own estimate stopped at. Apart from the stopping
   rule, ``to_error`` compares where the two place their levels: the fewest evaluations each needs to bring the true
   error below 0.1, 0.05 and 0.02 (the adaptive levels in the order it adds them). Responses: shapes that
   real models show (a cliff late or early, saturation, linear, a gentle cubic), and, with ``--refreshes``, the
   measured responses of a trained model (the drops and KIDs its refresh records hold, interpolated between the
   levels evaluated there).
2. Refresh cost: with ``--refreshes`` (a training's ``sensitivity/`` folder, e.g. the sensitivity demo's), each
   refresh's seconds against the training time since the previous one (target: at most 10 %).

    python scripts/bench_sensitivity.py --refreshes bundles/brats_unet3d/models/sensitivity_demo/adaptive/sensitivity
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import isotonic_regression

from robustseg.sensitivity.curve import SensitivityPoint, adaptive_curve, objective

Response = Callable[[float], tuple[float, float]]
GRID = np.linspace(0.0, 1.0, 257)
ERRORS = (0.1, 0.05, 0.02)
LIMIT = 33


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


RESPONSES: dict[str, Response] = {
    "late_cliff": lambda v: (0.8 * _sigmoid((v - 0.7) / 0.05) - 0.8 * _sigmoid(-14), 0.5 * v**2),
    "early_cliff": lambda v: (0.7 * _sigmoid((v - 0.25) / 0.04) - 0.7 * _sigmoid(-6.25), 0.4 * v),
    "saturating": lambda v: (0.6 * (1 - math.exp(-v / 0.1)), v**0.5),
    "linear": lambda v: (0.5 * v, 0.3 * v),
    "gentle_cubic": lambda v: (0.2 * v**3, 0.1 * v**2),
}


def true_error(response: Response, levels: np.ndarray) -> float:
    """Max |curve(levels) - curve(dense)| over [0, 1], both on the dense sweep's normalisation."""
    dense = [SensitivityPoint(float(v), *response(float(v))) for v in GRID]
    drops = max(p.drop for p in dense)
    kids = max(p.kid for p in dense)

    def normalised(points: list[SensitivityPoint]) -> np.ndarray:
        return objective([*points, SensitivityPoint(10.0, drops, kids)])[:-1]  # the anchor: the dense maxima

    sparse = [SensitivityPoint(float(v), *response(float(v))) for v in sorted(levels)]
    ref = isotonic_regression(normalised(dense)).x
    fit = isotonic_regression(normalised(sparse)).x
    approx = PchipInterpolator([p.level for p in sparse], fit)(GRID)
    return float(np.max(np.abs(approx - ref)))


def compare(response: Response, tol: float, max_evaluations: int) -> dict[str, Any]:
    """Adaptive evaluations and error, and the smallest uniform sweep at least as accurate."""
    adaptive = adaptive_curve(response, tol=tol, max_evaluations=max_evaluations)
    error = true_error(response, adaptive.curve.levels)
    uniform_n = None
    for n in range(3, 258):
        if true_error(response, np.linspace(0, 1, n)) <= error:
            uniform_n = n
            break
    return {
        "adaptive_evaluations": adaptive.evaluations,
        "adaptive_error": error,
        "within_tol": error <= tol,
        "uniform_evaluations_same_error": uniform_n,
        "ratio": (uniform_n / adaptive.evaluations) if uniform_n else None,
        "to_error": {str(e): evaluations_to_reach(response, e) for e in ERRORS},
    }


def evaluations_to_reach(response: Response, error: float) -> dict[str, Any]:
    """The fewest evaluations (at most LIMIT) that bring each way's curve within ``error`` of the dense one."""
    adaptive = next(
        (
            n
            for n in range(3, LIMIT + 1)
            if true_error(response, adaptive_curve(response, tol=1e-12, max_evaluations=n).curve.levels) <= error
        ),
        None,
    )
    uniform = next((n for n in range(3, LIMIT + 1) if true_error(response, np.linspace(0, 1, n)) <= error), None)
    return {"adaptive": adaptive, "uniform": uniform, "ratio": uniform / adaptive if adaptive and uniform else None}


def recorded_responses(folder: Path) -> dict[str, Response]:
    """A trained model's responses: per op of the last refresh, its drops and KIDs, linear between levels."""
    records = sorted(folder.glob("refresh_epoch*.json"), key=lambda p: int(p.stem.split("epoch")[1]))
    if not records:
        return {}
    out: dict[str, Response] = {}
    for op, analysis in json.loads(records[-1].read_text())["analyses"].items():
        pts = sorted(analysis["points"], key=lambda p: p["level"])
        lv = [p["level"] for p in pts]
        dr = [max(0.0, p["drop"]) for p in pts]
        kd = [max(0.0, p["kid"]) for p in pts]
        out[f"recorded:{op}"] = lambda v, lv=lv, dr=dr, kd=kd: (
            float(np.interp(v, lv, dr)),
            float(np.interp(v, lv, kd)),
        )
    return out


def refresh_costs(folder: Path) -> dict[str, Any]:
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("refresh_epoch*.json"))]
    if not records:
        return {}
    ratios = [float(r["refresh_ratio"]) for r in records]
    return {
        "refreshes": len(records),
        "seconds": [round(float(r["seconds"]), 2) for r in records],
        "training_seconds_since_last": [round(float(r["training_seconds_since_last"]), 2) for r in records],
        "ratio": [round(x, 4) for x in ratios],
        "median_ratio": statistics.median(ratios),
        "max_ratio": max(ratios),
        "target_ratio": 0.10,
        "meets_target": max(ratios) <= 0.10,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tol", type=float, default=0.05, help="the adaptive curve's tolerance")
    parser.add_argument("--max-evaluations", type=int, default=12)
    parser.add_argument("--refreshes", type=Path, default=None, help="a training's sensitivity/ folder")
    args = parser.parse_args(argv)
    responses = dict(RESPONSES)
    if args.refreshes is not None:
        responses.update(recorded_responses(args.refreshes))
    rows = {name: compare(r, args.tol, args.max_evaluations) for name, r in responses.items()}
    ratios = [r["ratio"] for r in rows.values() if r["ratio"] is not None]
    to_error = {}
    for e in ERRORS:
        found = [r["to_error"][str(e)]["ratio"] for r in rows.values() if r["to_error"][str(e)]["ratio"] is not None]
        to_error[str(e)] = {
            "median_ratio": statistics.median(found) if found else None,
            "min_ratio": min(found, default=None),
            "max_ratio": max(found, default=None),
            "responses": len(found),
        }
    report: dict[str, Any] = {
        "tol": args.tol,
        "max_evaluations": args.max_evaluations,
        "evaluations": rows,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "within_tol": sum(r["within_tol"] for r in rows.values()),
        "responses": len(rows),
        "to_error": to_error,
        "paper_claim_ratio": 10,
    }
    if args.refreshes is not None:
        report["refresh_cost"] = refresh_costs(args.refreshes)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
