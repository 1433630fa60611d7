"""The one Dice and its empty-region policies, against MONAI's own Dice metric and the official BraTS conventions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from monai.metrics import DiceMetric, compute_dice

from robustseg.data.datalist import empty_policy_of
from robustseg.evaluation.dice import get_policy, monai_ignore_empty, region_dice
from robustseg.evaluation.metrics import RegionDiceMetric, region_metrics


def masks(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 3, 8, 8, 8) random region masks with empty truths, empty predictions and both empty among them."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(4, 3, 8, 8, 8, generator=g) > 0.7
    label = torch.rand(4, 3, 8, 8, 8, generator=g) > 0.6
    label[0, 0] = False  # empty truth, a false positive
    pred[1, 1] = False  # a miss
    pred[2, 2] = label[2, 2] = False  # both empty
    return pred, label


@pytest.mark.parametrize("policy", ["brats", "brats2023", "ignore"])
def test_region_dice_equals_monai_compute_dice_with_the_policy_s_ignore_empty(policy: str) -> None:
    pred, label = masks(0)
    ours = region_dice(pred, label, policy=policy)
    reference = compute_dice(
        pred.float(), label.float(), include_background=True, ignore_empty=monai_ignore_empty(policy)
    )
    torch.testing.assert_close(ours, reference.double(), equal_nan=True)


def test_the_policies_score_empty_regions_as_their_sources_do() -> None:
    pred, label = masks(1)
    for policy in ("brats", "brats2023"):
        dice = region_dice(pred, label, policy=policy)
        assert dice[0, 0] == 0.0 and dice[1, 1] == 0.0 and dice[2, 2] == 1.0  # FP on empty, miss, both empty
    ignore = region_dice(pred, label, policy="ignore")
    assert math.isnan(ignore[0, 0]) and ignore[1, 1] == 0.0 and math.isnan(ignore[2, 2])
    # HD95 when exactly one mask is empty: 373.13 (BraTS 2018-2022) or 374 (the BraTS 2023 package's inf)
    for policy, miss in (("brats", 373.13), ("brats2023", 374.0)):
        rows = region_metrics(pred[:3], label[:3], ("a", "b", "c"), empty_policy=policy)
        assert rows[0]["a_hd95"] == miss and rows[1]["b_hd95"] == miss and rows[2]["c_hd95"] == 0.0
    with pytest.raises(ValueError, match="empty_policy must be one of"):
        get_policy("zero")


@pytest.mark.parametrize("policy", ["brats", "ignore"])
def test_the_training_metric_aggregates_like_monai_dice_metric(policy: str) -> None:
    pred, label = masks(2)
    ours, reference = (
        RegionDiceMetric(policy),
        DiceMetric(include_background=True, ignore_empty=monai_ignore_empty(policy)),
    )
    for b in range(2):  # two batches, as an evaluator feeds them
        ours(pred[2 * b : 2 * b + 2].float(), label[2 * b : 2 * b + 2].float())
        reference(pred[2 * b : 2 * b + 2].float(), label[2 * b : 2 * b + 2].float())
    assert float(ours.aggregate()) == pytest.approx(float(reference.aggregate()), abs=1e-6)
    torch.testing.assert_close(ours.get_buffer(), reference.get_buffer().float(), equal_nan=True)


def test_a_datalist_gets_the_policy_of_its_layout_s_challenge_era(tmp_path: Path) -> None:
    def datalist(*layouts: str) -> Path:
        path = tmp_path / f"{'_'.join(layouts) or 'none'}.json"
        path.write_text(json.dumps({"training": [{"layout": lay} for lay in layouts], "testing": [{}]}))
        return path

    assert empty_policy_of(datalist("brats2023")) == "brats2023"
    assert empty_policy_of(datalist("brats2021", "brats2021")) == "brats"
    assert empty_policy_of(datalist("decathlon")) == "brats"
    assert empty_policy_of(datalist()) == "brats" and empty_policy_of(tmp_path / "missing.json") == "brats"
    assert empty_policy_of(datalist("brats2021", "brats2023")) == "brats"  # mixed eras: the default
