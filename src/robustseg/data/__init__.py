"""Dataset readers and datalists (BraTS; Pascal VOC, Cityscapes, Pascal-Context), input validation, label
encodings, and the offline data: MRI phantoms and 2-D scenes."""

from __future__ import annotations

from robustseg.data import (
    cityscapes_labels,
    datalist,
    discovery,
    layouts,
    naming,
    natural,
    natural_discovery,
    natural_transforms,
    natural_validation,
    png,
    preprocessing,
    scenes,
    transforms,
    validation,
)

__all__ = [
    "cityscapes_labels",
    "datalist",
    "discovery",
    "layouts",
    "naming",
    "natural",
    "natural_discovery",
    "natural_transforms",
    "natural_validation",
    "png",
    "preprocessing",
    "scenes",
    "transforms",
    "validation",
]
