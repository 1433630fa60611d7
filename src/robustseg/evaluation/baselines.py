"""Reference baselines that say how hard a 2-D dataset is: a per-pixel colour classifier.

A segmentation dataset is trivially easy when the colour of a pixel alone gives its class. :func:`colour_baseline`
fits a multinomial logistic regression on the RGB values of (a seeded sample of) the training pixels and scores it
on the test images exactly as the network is scored: mIoU from one confusion matrix summed over the test set, pixels
labelled ``ignore_index`` left out (:mod:`robustseg.evaluation.confusion`). A network that learned shapes and
textures must stay far above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from robustseg.evaluation.confusion import confusion_matrix, iou, mean_iou, pixel_accuracy

__all__ = ["colour_baseline"]


def colour_baseline(
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    test: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    ignore_index: int = 255,
    max_pixels: int = 200_000,
    seed: int = 0,
    progress: Callable[[Any], Any] = lambda x: x,
) -> dict[str, Any]:
    """Fit a logistic regression on training pixels' RGB and score it on the test images.

    Args:
        train: ``(image (H, W, 3) uint8, label (H, W))`` pairs to fit on.
        test: pairs to score.
        num_classes: number of classes.
        ignore_index: label value that is not scored (and not fitted).
        max_pixels: at most this many training pixels, drawn without replacement by ``seed``.
        seed: seed of the pixel sample.
        progress: wraps the test loop (a progress bar).

    Returns:
        ``mIoU``, ``pixel_accuracy``, ``per_class_iou`` (list), ``pixels_fitted``, ``images``.
    """
    from sklearn.linear_model import LogisticRegression

    if not train or not test:
        raise ValueError("the colour baseline needs training and test images.")
    x = np.concatenate([img.reshape(-1, 3) for img, _ in train]).astype(np.float32) / 255.0
    y = np.concatenate([lab.reshape(-1) for _, lab in train]).astype(np.int64)
    keep = y != ignore_index
    x, y = x[keep], y[keep]
    if len(y) > max_pixels:
        pick = np.random.default_rng(seed).choice(len(y), max_pixels, replace=False)
        x, y = x[pick], y[pick]
    model = LogisticRegression(max_iter=1000).fit(x, y)
    total = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for img, lab in progress(test):
        pred = model.predict(img.reshape(-1, 3).astype(np.float32) / 255.0).reshape(lab.shape)
        cm = confusion_matrix(
            torch.as_tensor(pred)[None, None], torch.as_tensor(lab.astype(np.int64))[None, None], num_classes,
            ignore_index,
        )  # fmt: skip
        total += cm[0]
    return {
        "mIoU": float(mean_iou(total)),
        "pixel_accuracy": float(pixel_accuracy(total)),
        "per_class_iou": [float(v) for v in iou(total)],
        "pixels_fitted": len(y),
        "images": len(test),
    }
