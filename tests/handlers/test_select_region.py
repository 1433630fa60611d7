"""Tests for :func:`robustseg.handlers.metrics.select_region` with MONAI's own ``MeanDice`` handler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MeanDice

from robustseg.handlers.metrics import select_region

# two iterations of two decollated items each, region masks (R=3, 4, 4)
GEN = np.random.default_rng(0)
BATCHES = [
    [{"pred": GEN.random((3, 4, 4)) > 0.5, "label": GEN.random((3, 4, 4)) > 0.4} for _ in range(2)] for _ in range(2)
]


def hand_dice(pred: np.ndarray, label: np.ndarray) -> float:
    return 2.0 * np.logical_and(pred, label).sum() / (pred.sum() + label.sum())


def run_mean_dice(index: int) -> float:
    def step(engine: Engine, batch: list[dict]) -> list[dict]:
        return [{k: torch.as_tensor(v, dtype=torch.float32) for k, v in item.items()} for item in batch]

    evaluator = Engine(step)
    MeanDice(output_transform=select_region(index)).attach(evaluator, "dice")
    evaluator.run(BATCHES, max_epochs=1)
    return float(evaluator.state.metrics["dice"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_mean_dice_of_selected_region(index: int) -> None:
    items = [item for batch in BATCHES for item in batch]
    expected = np.mean([hand_dice(item["pred"][index], item["label"][index]) for item in items])
    assert run_mean_dice(index) == pytest.approx(expected, rel=1e-6)


def test_regions_score_differently() -> None:
    # guards the test above: if every channel had the same Dice, a wrong channel would go unnoticed
    items = [item for batch in BATCHES for item in batch]
    per_region = [np.mean([hand_dice(it["pred"][r], it["label"][r]) for it in items]) for r in range(3)]
    assert len(set(np.round(per_region, 6))) == 3


def test_single_dict_output_is_accepted() -> None:
    item = {"pred": torch.ones(3, 2, 2), "label": torch.zeros(3, 2, 2)}
    preds, labels = select_region(1)(item)
    assert len(preds) == len(labels) == 1
    assert preds[0].shape == (1, 2, 2)
    torch.testing.assert_close(labels[0], item["label"][1:2])
