"""Training losses that read class-map labels with an ignore index (natural images: 255)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SegmentationCrossEntropy"]


class SegmentationCrossEntropy(nn.Module):
    """Cross-entropy of logits ``(N, C, *spatial)`` against class maps ``(N, 1, *spatial)`` or ``(N, *spatial)``.

    Pixels labelled ``ignore_index`` carry no loss and no gradient (VOC's void band, Cityscapes' ignored ids); the
    mean is over the scored pixels, as ``torch.nn.CrossEntropyLoss(ignore_index=...)``. A batch with no scored pixel
    gives 0, not NaN.

    Args:
        ignore_index: label value that is not scored.
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.
    """

    def __init__(self, ignore_index: int = 255, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        target = label.as_subclass(torch.Tensor) if type(label) is not torch.Tensor else label
        if target.ndim == logits.ndim:
            if target.shape[1] != 1:
                raise ValueError(f"labels must be class maps (N, 1, *spatial) but have shape {tuple(target.shape)}.")
            target = target[:, 0]
        target = target.long()
        scored = target != self.ignore_index
        if not bool(scored.any()):
            return logits.sum() * 0.0
        loss = F.cross_entropy(
            logits.as_subclass(torch.Tensor) if type(logits) is not torch.Tensor else logits,
            target,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )
        return loss
