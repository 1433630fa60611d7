"""Certified metrics of one case: certified voxel accuracy, abstain rate and certified Dice per region.

Abstained voxels count as wrong (SegCertify's convention): they add to no region, so a tumour voxel left undecided is a
false negative, and they never count as correct in the accuracy. Dice is robustseg's one Dice under the run's
empty-region policy (:mod:`robustseg.evaluation.dice`).
"""

from __future__ import annotations

import torch

from robustseg.certification.smoothing import ABSTAIN
from robustseg.evaluation.dice import EmptyPolicy, region_dice
from robustseg.labels import LabelScheme

__all__ = ["certified_metrics"]


def certified_metrics(
    classes: torch.Tensor,
    label: torch.Tensor,
    scheme: LabelScheme,
    mask: torch.Tensor | None = None,
    empty_policy: str | EmptyPolicy = "brats",
) -> dict[str, float]:
    """Score a certified class map against the ground truth.

    Args:
        classes: certified class map ``(*spatial)`` with :data:`~robustseg.certification.ABSTAIN` where abstained.
        label: ground-truth class map ``(*spatial)`` or ``(1, *spatial)``.
        scheme: label scheme (regions and ``ignore_index``).
        mask: voxels over which accuracy and abstain rate are taken (for MRI the brain; ``None``: every voxel).
            Voxels labelled ``ignore_index`` are left out of every metric.
        empty_policy: how a region empty in the certified map or the truth is scored.

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
    dice = region_dice(scheme.to_regions(classes[None]), scheme.to_regions(label[None]), valid[None], empty_policy)
    for r, name in enumerate(scheme.region_names):
        out[f"certified_dice_{name}"] = float(dice[0, r])
    return out
