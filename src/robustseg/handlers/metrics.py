"""Output transforms that let MONAI's metric handlers score one region of a region-mask output."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["loss_from_output", "select_region"]


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
