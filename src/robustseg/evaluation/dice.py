"""Dice per case and region, and the one policy for regions that are empty, used everywhere robustseg scores.

Training validation, evaluation, the audit and certification all score Dice here (the bundle's ``MeanDice`` is set
from the same policy, :func:`monai_ignore_empty`), so a case without enhancing tumour gets the same ET Dice in every
table. The policies, for each case and region:

* ``"brats"``: the BraTS 2018-2022 convention (CaPTk): ground truth and prediction both empty score Dice 1 and
  HD95 0; exactly one of them empty scores Dice 0 and HD95 373.13 mm, the diagonal of the 240 x 240 x 155 1-mm grid.
* ``"brats2023"``: the official BraTS 2023+ evaluation package (``BraTS-2023-Metrics``, legacy and lesion-wise
  scores): both empty score Dice 1 and HD95 0 (its explicit check before the Dice formula, and its NaN-to-1 rule for
  lesion-wise Dice); a false positive or a miss on an empty region scores Dice 0 and HD95 374 (its replacement of an
  infinite distance).
* ``"ignore"``: an empty ground truth gives NaN for Dice and HD95 (MONAI's ``ignore_empty=True``), so the case
  drops out of that region's mean; a false positive on an empty region is not penalised (flattering, so never a
  default).

This module needs torch alone, so attacks can use it without MONAI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["EMPTY_POLICIES", "EmptyPolicy", "get_policy", "monai_ignore_empty", "region_dice"]


@dataclass(frozen=True)
class EmptyPolicy:
    """How a region empty in the ground truth, the prediction or both is scored.

    Attributes:
        name: ``brats``, ``brats2023`` or ``ignore``.
        both_empty_dice: Dice when both are empty (1, or NaN for ``ignore``).
        ignore_empty_truth: whether an empty ground truth gives NaN whatever the prediction.
        one_empty_hd95: HD95 in mm when exactly one of the two is empty (NaN for ``ignore``'s empty truths).
        source: where the convention comes from, for the report.
    """

    name: str
    both_empty_dice: float
    ignore_empty_truth: bool
    one_empty_hd95: float
    source: str

    def describe(self) -> str:
        """The sentence a report prints beside its tables."""
        if self.ignore_empty_truth:
            return (
                f"Empty regions ({self.source}): a case whose ground truth is empty in a region is left out of that "
                f"region's scores (NaN, excluded from means, so false positives there are not penalised); a "
                f"prediction that misses a non-empty region scores Dice 0 and HD95 {self.one_empty_hd95:g} mm."
            )
        return (
            f"Empty regions follow {self.source}: ground truth and prediction both empty score Dice 1 and HD95 0; "
            f"exactly one empty (a false positive or a miss) scores Dice 0 and HD95 {self.one_empty_hd95:g} mm."
        )


_POLICIES = {
    "brats": EmptyPolicy("brats", 1.0, False, 373.13, "the BraTS 2018-2022 convention (CaPTk)"),
    "brats2023": EmptyPolicy("brats2023", 1.0, False, 374.0, "the official BraTS 2023+ evaluation package"),
    "ignore": EmptyPolicy("ignore", math.nan, True, 373.13, "MONAI's ignore_empty=True"),
}
EMPTY_POLICIES: tuple[str, ...] = tuple(_POLICIES)


def get_policy(policy: str | EmptyPolicy) -> EmptyPolicy:
    """The :class:`EmptyPolicy` called ``policy``; a clear error for an unknown name."""
    if isinstance(policy, EmptyPolicy):
        return policy
    if policy not in _POLICIES:
        raise ValueError(f"empty_policy must be one of {list(EMPTY_POLICIES)} but is {policy!r}.")
    return _POLICIES[policy]


def monai_ignore_empty(policy: str | EmptyPolicy) -> bool:
    """MONAI ``DiceMetric`` / ``MeanDice``'s ``ignore_empty`` that scores Dice as ``policy`` does.

    ``ignore_empty=False`` gives 1 when both are empty and 0 for a false positive on an empty truth (the BraTS
    policies); ``True`` gives NaN for every empty truth (``ignore``).
    """
    return get_policy(policy).ignore_empty_truth


def region_dice(
    pred: torch.Tensor, label: torch.Tensor, valid: torch.Tensor | None = None, policy: str | EmptyPolicy = "brats"
) -> torch.Tensor:
    """Hard Dice ``(N, R)`` (float64) of predicted and ground-truth region masks ``(N, R, *spatial)``.

    Args:
        pred: predicted region masks (bool or 0/1), e.g. :meth:`robustseg.labels.LabelScheme.regions_from_logits`.
        label: ground-truth region masks of the same shape (:meth:`~robustseg.labels.LabelScheme.to_regions`).
        valid: ``(N, 1, *spatial)`` or ``(N, *spatial)`` voxels to score (False where the label is ``ignore_index``);
            ``None`` scores every voxel.
        policy: the empty-region policy (module docstring).
    """
    if pred.shape != label.shape:
        raise ValueError(
            f"prediction and label masks must have one shape but are {tuple(pred.shape)} and {tuple(label.shape)}."
        )
    p, g = pred.bool(), label.bool()
    if valid is not None:
        keep = valid.bool()
        if keep.ndim == p.ndim - 1:
            keep = keep.unsqueeze(1)
        p, g = p & keep, g & keep
    dims = tuple(range(2, p.ndim))
    inter = (p & g).sum(dims, dtype=torch.float64)
    total = p.sum(dims, dtype=torch.float64) + g.sum(dims, dtype=torch.float64)
    rule = get_policy(policy)
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, rule.both_empty_dice))
    if rule.ignore_empty_truth:
        dice = torch.where(g.flatten(2).any(-1), dice, torch.full_like(dice, math.nan))
    return dice
