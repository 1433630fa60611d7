"""How strong an attack was on each case: hard Dice against the labels, agreement with a target.

Attacks use these to keep the worst of several restarts per case; reports use them as quick per-case summaries.
The audit's own per-region metrics live in :mod:`robustseg.evaluation`.
"""

from __future__ import annotations

import torch

from robustseg.labels import LabelScheme

__all__ = ["agreement_per_case", "dice_per_case"]


def _squeeze(class_map: torch.Tensor) -> torch.Tensor:
    """``(N, 1, *spatial)`` or ``(N, *spatial)`` to ``(N, *spatial)``."""
    return class_map[:, 0] if class_map.ndim >= 3 and class_map.shape[1] == 1 else class_map


def _valid(labels: torch.Tensor, scheme: LabelScheme) -> torch.Tensor:
    if scheme.ignore_index is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return labels != scheme.ignore_index


def dice_per_case(prediction: torch.Tensor, labels: torch.Tensor, scheme: LabelScheme) -> torch.Tensor:
    """Hard Dice per case ``(N,)``, the mean over the scheme's regions.

    A region empty in both prediction and labels scores 1. Voxels labelled ``ignore_index`` are left out.

    Args:
        prediction: class map ``(N, 1, *spatial)`` or ``(N, *spatial)``.
        labels: class map of the same shape.
        scheme: the regions to score.
    """
    pred, lab = _squeeze(prediction).long(), _squeeze(labels).long()
    valid = _valid(lab, scheme).unsqueeze(1)
    p = scheme.to_regions(pred).bool() & valid
    g = scheme.to_regions(lab).bool() & valid
    dims = tuple(range(2, p.ndim))
    inter = (p & g).sum(dims).float()
    total = p.sum(dims).float() + g.sum(dims).float()
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
    return dice.mean(dim=1)


def agreement_per_case(prediction: torch.Tensor, target: torch.Tensor, scheme: LabelScheme) -> torch.Tensor:
    """Fraction of voxels ``(N,)`` where the prediction equals the target map, ignored target voxels left out."""
    pred, tgt = _squeeze(prediction).long(), _squeeze(target).long()
    valid = _valid(tgt, scheme)
    dims = tuple(range(1, pred.ndim))
    hits = ((pred == tgt) & valid).sum(dims).float()
    return hits / valid.sum(dims).float().clamp_min(1)
