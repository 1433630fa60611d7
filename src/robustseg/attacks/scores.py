"""How strong an attack was on each case: hard Dice against the labels, agreement with a target.

Attacks use these to keep the worst of several restarts per case. Dice comes from the one home of Dice,
:func:`robustseg.evaluation.dice.region_dice`; the audit's own per-region metrics live in :mod:`robustseg.evaluation`.
"""

from __future__ import annotations

import torch

from robustseg.evaluation.dice import region_dice
from robustseg.labels import LabelScheme

__all__ = ["agreement_per_case", "dice_per_case"]


def _squeeze(class_map: torch.Tensor) -> torch.Tensor:
    """``(N, 1, *spatial)`` or ``(N, *spatial)`` to ``(N, *spatial)``."""
    return class_map[:, 0] if class_map.ndim >= 3 and class_map.shape[1] == 1 else class_map


def dice_per_case(pred_regions: torch.Tensor, labels: torch.Tensor, scheme: LabelScheme) -> torch.Tensor:
    """Hard Dice per case ``(N,)``, the mean over the scheme's regions (empty in both: 1; ignored voxels left out).

    Args:
        pred_regions: predicted region masks ``(N, R, *spatial)``, as
            :meth:`~robustseg.labels.LabelScheme.regions_from_logits` gives them for either head.
        labels: ground-truth class map ``(N, 1, *spatial)`` or ``(N, *spatial)``.
        scheme: the regions to score.
    """
    lab = _squeeze(labels).long()
    return region_dice(pred_regions, scheme.to_regions(lab), scheme.valid_mask(lab)).mean(dim=1).float()


def agreement_per_case(prediction: torch.Tensor, target: torch.Tensor, scheme: LabelScheme) -> torch.Tensor:
    """Fraction of voxels ``(N,)`` where the prediction equals the target map, ignored target voxels left out."""
    pred, tgt = _squeeze(prediction).long(), _squeeze(target).long()
    valid = scheme.valid_mask(tgt)
    dims = tuple(range(1, pred.ndim))
    hits = ((pred == tgt) & valid).sum(dims).float()
    return hits / valid.sum(dims).float().clamp_min(1)
