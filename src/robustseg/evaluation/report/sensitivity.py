"""The figure of one sensitivity refresh: each op's curve, and the sampling distribution built from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from robustseg.evaluation.report.figures import _new_figure, _save

__all__ = ["plot_refresh"]


def plot_refresh(
    curves: Mapping[str, Mapping[str, Any]], table: Sequence[Mapping[str, Any]], path: str | Path, title: str = ""
) -> Path:
    """Left: each op's sensitivity curve (objective against level; dots the evaluated levels, crosses the levels at
    the targets). Right: the sampler's probability per op, stacked by level rank, and the clean share.

    Args:
        curves: per op, the analysis record (``points`` with ``level``/``drop``/``kid``, ``levels``, ``targets``).
        table: the sampler's ``{"op", "level", "p"}`` rows (op None = clean).
    """
    from robustseg.sensitivity.curve import SensitivityCurve, SensitivityPoint

    colours = matplotlib.colormaps["tab20"]
    fig = _new_figure(11.0, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.4, 1])
    grid = np.linspace(0, 1, 101)
    for k, (op, record) in enumerate(sorted(curves.items())):
        curve = SensitivityCurve(tuple(SensitivityPoint(**p) for p in record["points"]))
        colour = colours(k % 20)
        left.plot(grid, curve(grid), color=colour, label=op, linewidth=1.2)
        left.plot(curve.levels, curve.values, "o", color=colour, markersize=3)
        left.plot(record["levels"], record["targets"], "x", color=colour, markersize=5)
    left.set_xlabel("level")
    left.set_ylabel("sensitivity (drop / max + 2 level - KID / max)")
    left.grid(alpha=0.3)
    left.legend(fontsize="x-small", ncol=2)
    ops = sorted({str(r["op"]) for r in table if r["op"] is not None})
    bottoms = np.zeros(len(ops) + 1)
    names = ["clean", *ops]
    clean = sum(float(r["p"]) for r in table if r["op"] is None)
    right.bar([0], [clean], color="0.6")
    for rank in range(max((sum(1 for r in table if r["op"] == op) for op in ops), default=0)):
        heights = np.zeros(len(ops) + 1)
        for j, op in enumerate(ops):
            rows = [r for r in table if r["op"] == op]
            if rank < len(rows):
                heights[j + 1] = float(rows[rank]["p"])
        right.bar(range(len(names)), heights, bottom=bottoms, color=matplotlib.colormaps["viridis"](0.15 + 0.2 * rank))
        bottoms += heights
    right.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="x-small")
    right.set_ylabel("sampling probability (darker: more damaging level)")
    right.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize="small")
    return _save(fig, path)
