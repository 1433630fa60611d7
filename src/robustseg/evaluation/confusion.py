"""Confusion matrices, per-class IoU, mIoU and pixel accuracy for natural-image segmentation (ignore pixels excluded).

The benchmark convention of Pascal VOC, Cityscapes and Pascal-Context: one confusion matrix summed over every
scored pixel of the dataset (rows: truth, columns: prediction), pixels labelled ``ignore_index`` (255) left out;
``IoU_c = TP / (TP + FP + FN)``; mIoU the mean over classes that occur in the truth or the prediction; pixel
accuracy ``trace / total``. :func:`case_scores` gives the same per image, for paired tests between conditions
(an image's mIoU averages the classes present in its truth or its prediction).

Example::

    cm = confusion_matrix(pred, label, num_classes=21)      # (N, 21, 21), one per image
    mean_iou(cm.sum(0)), iou(cm.sum(0)), pixel_accuracy(cm.sum(0))
"""

from __future__ import annotations

from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric

__all__ = ["MeanIoUMetric", "case_scores", "confusion_matrix", "iou", "mean_iou", "pixel_accuracy"]


def _class_map(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    t = t.as_subclass(torch.Tensor) if type(t) is not torch.Tensor else t
    if t.ndim < 3 or t.shape[1] != 1:
        raise ValueError(f"{name} must be a class map (N, 1, *spatial) but has shape {tuple(t.shape)}.")
    return t[:, 0].long()


def confusion_matrix(pred: Any, label: Any, num_classes: int, ignore_index: int | None = 255) -> torch.Tensor:
    """One confusion matrix per image: ``(N, C, C)`` int64, ``[n, truth, prediction]``, ignore pixels left out.

    Args:
        pred: predicted class maps ``(N, 1, *spatial)``.
        label: true class maps ``(N, 1, *spatial)``, ``ignore_index`` where not scored.
        num_classes: number of classes ``C``.
        ignore_index: label value that is not scored, or ``None``.

    Raises:
        ValueError: shapes differ, or a scored label or a prediction lies outside ``[0, C)``.
    """
    p, y = _class_map(pred, "pred"), _class_map(label, "label")
    if p.shape != y.shape:
        raise ValueError(f"pred {tuple(p.shape)} and label {tuple(y.shape)} must have one shape.")
    n = p.shape[0]
    p, y = p.reshape(n, -1), y.reshape(n, -1)
    scored = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
    for t, what in ((y[scored], "label"), (p, "prediction")):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(
                f"{what} values must lie in [0, {num_classes}) (or be {ignore_index}) but span "
                f"{int(t.min())}..{int(t.max())}."
            )
    case = torch.arange(n, device=y.device).unsqueeze(1).expand_as(y)
    index = (case * num_classes + y.clamp(0, num_classes - 1)) * num_classes + p
    counts = torch.bincount(index[scored], minlength=n * num_classes * num_classes)
    return counts.reshape(n, num_classes, num_classes)


def iou(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU ``(..., C)`` of confusion matrices ``(..., C, C)``; NaN for a class in neither truth nor pred."""
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)
    union = cm.sum(-1) + cm.sum(-2) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> torch.Tensor:
    """mIoU ``(...)``: the mean of :func:`iou` over the classes present (NaN when none is)."""
    return torch.nanmean(iou(cm), dim=-1)


def pixel_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Share of scored pixels predicted right ``(...)``; NaN when no pixel is scored."""
    cm = cm.double()
    total = cm.sum((-2, -1))
    correct = torch.diagonal(cm, dim1=-2, dim2=-1).sum(-1)
    return torch.where(total > 0, correct / total.clamp_min(1), torch.full_like(total, float("nan")))


def case_scores(
    pred: Any, label: Any, class_names: tuple[str, ...] | list[str], ignore_index: int | None = 255
) -> list[dict[str, float]]:
    """Per image: ``<class>_iou`` of every class (NaN when in neither truth nor prediction), ``mIoU``, ``pixel_acc``."""
    cm = confusion_matrix(pred, label, len(class_names), ignore_index)
    ious, miou, acc = iou(cm), mean_iou(cm), pixel_accuracy(cm)
    rows = []
    for n in range(cm.shape[0]):
        row = {f"{name}_iou": float(ious[n, c]) for c, name in enumerate(class_names)}
        row["mIoU"], row["pixel_acc"] = float(miou[n]), float(acc[n])
        rows.append(row)
    return rows


class MeanIoUMetric(CumulativeIterationMetric):
    """Dataset mIoU from one confusion matrix summed over every image (the benchmark's way), ignore pixels excluded.

    Each iteration buffers the images' confusion matrices; :meth:`aggregate` sums them and returns the score:
    the mIoU, the pixel accuracy, or one class's IoU. :meth:`per_class` and :meth:`pixel_accuracy` read the same sum.

    Args:
        num_classes: number of classes.
        ignore_index: label value that is not scored.
        score: what :meth:`aggregate` returns: ``"miou"``, ``"pixel_accuracy"``, or a class index (its IoU).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, score: str | int = "miou") -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 but is {num_classes}.")
        if not (score in ("miou", "pixel_accuracy") or (isinstance(score, int) and 0 <= score < num_classes)):
            raise ValueError(f"score must be 'miou', 'pixel_accuracy' or a class index < {num_classes}, not {score!r}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.score = score

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("MeanIoUMetric needs the labels.")
        cm = confusion_matrix(y_pred, y, self.num_classes, self.ignore_index)
        return cm.reshape(cm.shape[0], -1).double()

    def total(self) -> torch.Tensor:
        """The summed confusion matrix ``(C, C)`` of every image seen."""
        buffer = self.get_buffer()
        if not isinstance(buffer, torch.Tensor) or buffer.numel() == 0:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)
        return buffer.reshape(-1, self.num_classes, self.num_classes).sum(0)

    def per_class(self) -> torch.Tensor:
        """Per-class IoU ``(C,)`` of the summed matrix."""
        return iou(self.total())

    def pixel_accuracy(self) -> float:
        """Pixel accuracy of the summed matrix."""
        return float(pixel_accuracy(self.total()))

    def aggregate(self) -> torch.Tensor:
        """The ``score`` of the summed matrix: mIoU, pixel accuracy or one class's IoU."""
        total = self.total()
        if self.score == "miou":
            return mean_iou(total)
        if self.score == "pixel_accuracy":
            return pixel_accuracy(total)
        return iou(total)[int(self.score)]
