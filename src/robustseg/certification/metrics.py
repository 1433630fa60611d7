"""Certified metrics of one case: certified voxel accuracy, abstain rate and certified Dice (or IoU) per region.

Abstained voxels count as wrong (SegCertify's convention): they add to no region, so a tumour voxel left undecided is a
false negative, and they never count as correct in the accuracy. Dice is robustseg's one Dice under the run's
empty-region policy (:mod:`robustseg.evaluation.dice`); IoU (natural images) is NaN for a class in neither the truth
nor the certified map, and the case's mIoU averages the others, as the attack audit scores an image.
"""

from __future__ import annotations

import torch

from robustseg.certification.smoothing import ABSTAIN
from robustseg.evaluation.dice import EmptyPolicy, region_dice
from robustseg.evaluation.metrics import MEAN_IOU, mean_present, region_metrics
from robustseg.labels import LabelScheme

__all__ = ["certified_metrics"]


def certified_metrics(
    classes: torch.Tensor,
    label: torch.Tensor,
    scheme: LabelScheme,
    mask: torch.Tensor | None = None,
    empty_policy: str | EmptyPolicy = "brats",
    iou: bool = False,
) -> dict[str, float]:
    """Score a certified class map against the ground truth.

    Args:
        classes: certified class map ``(*spatial)`` with :data:`~robustseg.certification.ABSTAIN` where abstained.
        label: ground-truth class map ``(*spatial)`` or ``(1, *spatial)``.
        scheme: label scheme (regions and ``ignore_index``).
        mask: voxels over which accuracy and abstain rate are taken (for MRI the brain; ``None``: every voxel).
            Voxels labelled ``ignore_index`` are left out of every metric.
        empty_policy: how a region empty in the certified map or the truth is scored.
        iou: add ``certified_iou_<region>`` for each region and ``certified_iou_mIoU``.

    Returns:
        ``certified_accuracy``, ``abstain_rate`` and ``certified_dice_<region>`` for each region of ``scheme``.
    """
    classes = torch.as_tensor(classes).as_subclass(torch.Tensor).long()
    label = torch.as_tensor(label).as_subclass(torch.Tensor).long()
    if label.ndim == classes.ndim + 1 and label.shape[0] == 1:
        label = label[0]
    if label.shape != classes.shape:
        raise ValueError(f"classes {tuple(classes.shape)} and label {tuple(label.shape)} must have the same shape.")
    valid = scheme.valid_mask(label)
    domain = valid if mask is None else valid & torch.as_tensor(mask, device=label.device).bool().reshape(label.shape)
    size = max(int(domain.sum()), 1)
    out = {
        "certified_accuracy": int(((classes == label) & domain).sum()) / size,
        "abstain_rate": int(((classes == ABSTAIN) & domain).sum()) / size,
    }
    pred, truth = scheme.to_regions(classes[None]), scheme.to_regions(label[None])
    dice = region_dice(pred, truth, valid[None], empty_policy)
    for r, name in enumerate(scheme.region_names):
        out[f"certified_dice_{name}"] = float(dice[0, r])
    if iou:
        names = scheme.region_names
        scores = region_metrics(pred, truth, names, valid[None], empty_policy=empty_policy, hd95=False, iou=True)[0]
        for name in names:
            out[f"certified_iou_{name}"] = scores[f"{name}_iou"]
        out[f"certified_iou_{MEAN_IOU}"] = mean_present([scores[f"{name}_iou"] for name in names])
    return out
