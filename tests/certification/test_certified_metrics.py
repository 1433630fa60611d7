"""Certified accuracy, abstain rate and certified Dice against hand counts (abstain counts as wrong)."""

from __future__ import annotations

import math

import pytest
import torch

from robustseg.certification import ABSTAIN, certified_metrics
from robustseg.labels import BRATS, LabelScheme


def test_abstentions_count_as_wrong_and_leave_every_region() -> None:
    label = torch.tensor([[0, 0, 1, 2], [2, 3, 3, 0]])
    classes = torch.tensor([[0, ABSTAIN, 1, 2], [ABSTAIN, 3, ABSTAIN, 0]])
    m = certified_metrics(classes, label[None], BRATS)
    assert m["certified_accuracy"] == pytest.approx(5 / 8)
    assert m["abstain_rate"] == pytest.approx(3 / 8)
    # ET {3}: pred 1 voxel, truth 2, overlap 1 -> 2/3; TC {1,3}: pred 2, truth 3, overlap 2 -> 4/5;
    # WT {1,2,3}: pred 3, truth 5, overlap 3 -> 6/8
    assert m["certified_dice_ET"] == pytest.approx(2 / 3)
    assert m["certified_dice_TC"] == pytest.approx(4 / 5)
    assert m["certified_dice_WT"] == pytest.approx(6 / 8)


def test_mask_restricts_accuracy_and_ignore_index_is_left_out() -> None:
    label = torch.tensor([0, 0, 1, 1, 255, 255])
    classes = torch.tensor([0, 1, 1, ABSTAIN, 1, ABSTAIN])
    scheme = LabelScheme(class_names=("background", "object"), ignore_index=255)
    m = certified_metrics(classes, label, scheme)
    assert m["certified_accuracy"] == pytest.approx(2 / 4) and m["abstain_rate"] == pytest.approx(1 / 4)
    assert m["certified_dice_object"] == pytest.approx(2 * 1 / (2 + 2))
    inside = torch.tensor([False, False, True, True, True, True])
    m = certified_metrics(classes, label, scheme, mask=inside)
    assert m["certified_accuracy"] == pytest.approx(1 / 2) and m["abstain_rate"] == pytest.approx(1 / 2)


def test_empty_regions_follow_the_brats_policy_and_shapes_must_match() -> None:
    label = torch.zeros(3, 3, dtype=torch.long)
    assert certified_metrics(torch.zeros(3, 3), label, BRATS)["certified_dice_ET"] == 1.0
    assert certified_metrics(torch.full((3, 3), 3), label, BRATS)["certified_dice_ET"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        certified_metrics(torch.zeros(3, 4), label, BRATS)


def test_certified_iou_counts_abstentions_as_misses_and_skips_absent_classes() -> None:
    """IoU per class by hand: an abstained pixel is in no class, void (255) is left out, an absent class has no IoU."""
    classes_of = ("background", "cat", "dog", "bird")
    scheme = LabelScheme(classes_of, regions={n: (i,) for i, n in enumerate(classes_of)}, ignore_index=255)
    label = torch.tensor([[0, 0, 1, 1], [1, 2, 255, 255]])
    classes = torch.tensor([[0, 1, 1, ABSTAIN], [1, 0, 1, ABSTAIN]])
    m = certified_metrics(classes, label, scheme, iou=True)
    # scored pixels: the first 6. background: pred {0, 5}, truth {0, 1} -> 1/3; cat: pred {1, 2, 4}, truth {2, 3, 4}
    # -> 2/4 (pixel 6, void, predicted cat, is left out); dog: pred {}, truth {5} -> 0; bird in neither -> NaN,
    # left out of the mIoU
    assert m["certified_iou_background"] == pytest.approx(1 / 3)
    assert m["certified_iou_cat"] == pytest.approx(2 / 4)
    assert m["certified_iou_dog"] == 0.0
    assert math.isnan(m["certified_iou_bird"])
    assert m["certified_iou_mIoU"] == pytest.approx((1 / 3 + 2 / 4 + 0.0) / 3)
    assert m["certified_accuracy"] == pytest.approx(3 / 6) and m["abstain_rate"] == pytest.approx(1 / 6)
    assert "certified_iou_cat" not in certified_metrics(classes, label, scheme)
