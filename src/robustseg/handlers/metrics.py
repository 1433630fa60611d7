"""Metric handlers and output transforms for Ignite engines: Dice per region under the stated empty policy."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.handlers import IgniteMetricHandler

from robustseg.evaluation.metrics import RegionDiceMetric

__all__ = ["RegionDice", "RegionDiceTable", "loss_from_output", "select_region"]


class RegionDice(IgniteMetricHandler):
    """Mean Dice of region masks under an empty-region policy: ``MeanDice`` with robustseg's one Dice.

    MONAI's ``MeanDice`` scores an empty ground truth as NaN (left out of the mean, so a false positive there costs
    nothing); this handler scores as the audit does (:mod:`robustseg.evaluation.dice`), and saves the per-case values
    for ``MetricsSaver`` like ``MeanDice``.

    Args:
        empty_policy: ``brats``, ``brats2023`` or ``ignore``.
        output_transform: ``(y_pred, y)`` from the engine's output, e.g. ``from_engine(["pred", "label"])`` or
            :func:`select_region`.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        empty_policy: str = "brats",
        output_transform: Callable[[Any], Any] = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=RegionDiceMetric(empty_policy), output_transform=output_transform, save_details=save_details
        )


def select_region(index: int, keys: Sequence[str] = ("pred", "label")) -> Callable[[Any], tuple[list, ...]]:
    """An ``output_transform`` for ``MeanDice`` & co. that keeps channel ``index`` of each decollated item.

    The evaluator's post-processing turns predictions and labels into region masks (channels ET, TC, WT for BraTS,
    :class:`robustseg.evaluation.regions.ClassMapToRegionsd`); ``MeanDice(output_transform=select_region(0))`` then
    reports the Dice of the first region alone.
    """

    def transform(output: Any) -> tuple[list, ...]:
        items = output if isinstance(output, list) else [output]
        return tuple([item[k][index : index + 1] for item in items] for k in keys)

    return transform


def loss_from_output(output: Any) -> float | None:
    """The finite training loss in an engine's output (MONAI trainers: a list of dicts with ``loss``), or ``None``."""
    item = output[0] if isinstance(output, list | tuple) and output else output
    loss = item.get("loss") if isinstance(item, Mapping) else item
    if isinstance(loss, torch.Tensor) and loss.numel() > 0:
        loss = loss.detach().float().mean().item()
    return float(loss) if isinstance(loss, float | int) and math.isfinite(loss) else None


class RegionDiceTable:
    """Write ``dice_per_case.csv`` (case ids and region names) from ``MetricsSaver``'s per-case file as the
    evaluation's epoch ends, so the table exists before the MLflow run logs its artifacts and ends.

    Attach it after ``MetricsSaver`` (Ignite runs a event's handlers in the order they were attached).

    Args:
        metrics_dir: ``MetricsSaver``'s ``save_dir``.
        scheme: the label scheme whose regions name the columns.
    """

    def __init__(self, metrics_dir: str, scheme: Any = None) -> None:
        self.metrics_dir = metrics_dir
        self.scheme = scheme

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def write(self, engine: Any = None) -> None:
        from pathlib import Path

        from robustseg.labels import BRATS
        from robustseg.workflows.summary import read_case_dice, write_case_table

        cases = read_case_dice(self.metrics_dir, self.scheme or BRATS)
        if cases:
            write_case_table(cases, Path(self.metrics_dir) / "dice_per_case.csv")
