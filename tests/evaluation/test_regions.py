"""Tests for :mod:`robustseg.evaluation.regions`: class maps to scored region masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric

from robustseg.evaluation.regions import ClassMapToRegions, ClassMapToRegionsd
from robustseg.labels import BRATS

LABEL_2D = np.array(
    [
        [0, 1, 1, 2],
        [2, 3, 3, 1],
        [0, 2, 3, 0],
    ]
)
PRED_2D = np.array(
    [
        [0, 1, 3, 2],
        [2, 3, 2, 1],
        [2, 2, 3, 1],
    ]
)


def volume(plane: np.ndarray, ndim: int) -> np.ndarray:
    return plane if ndim == 2 else np.stack([plane, np.roll(plane, 1, axis=1)], axis=-1)


def hand_dice(pred: np.ndarray, label: np.ndarray) -> float:
    return 2.0 * np.logical_and(pred, label).sum() / (pred.sum() + label.sum())


@pytest.mark.parametrize("ndim", [2, 3])
def test_class_map_to_region_masks(ndim: int) -> None:
    label = volume(LABEL_2D, ndim)
    out = ClassMapToRegions()(torch.as_tensor(label)[None])
    assert out.shape == (3, *label.shape)
    np.testing.assert_array_equal(out[0].numpy(), label == 3)  # ET
    np.testing.assert_array_equal(out[1].numpy(), np.isin(label, [1, 3]))  # TC
    np.testing.assert_array_equal(out[2].numpy(), label > 0)  # WT


@pytest.mark.parametrize("ndim", [2, 3])
def test_multichannel_input_is_argmaxed(ndim: int) -> None:
    label = volume(LABEL_2D, ndim)
    one_hot = np.stack([label == c for c in range(4)]).astype(np.float32) * 0.7 + 0.1  # (4, *spatial) soft scores
    out = ClassMapToRegions()(one_hot)
    expected = ClassMapToRegions()(torch.as_tensor(label)[None])
    assert out.shape == (3, *label.shape)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("ndim", [2, 3])
def test_monai_dice_over_regions_equals_hand_dice(ndim: int) -> None:
    pred, label = volume(PRED_2D, ndim), volume(LABEL_2D, ndim)
    d = ClassMapToRegionsd(keys=("pred", "label"))({"pred": pred[None], "label": label[None], "id": "case"})
    assert d["id"] == "case"
    metric = DiceMetric(include_background=True, reduction="none")
    dice = metric(d["pred"][None], d["label"][None])[0].numpy()
    regions = {"ET": [3], "TC": [1, 3], "WT": [1, 2, 3]}
    expected = [hand_dice(np.isin(pred, regions[r]), np.isin(label, regions[r])) for r in BRATS.region_names]
    np.testing.assert_allclose(dice, expected, rtol=1e-6)
    # the example is chosen so the three regions score differently: a mixed-up channel order would fail
    assert len(set(np.round(expected, 6))) == 3
