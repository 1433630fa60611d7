"""Class maps written as NIfTI in the preprocessed input's space, for 2-D images as for 3-D volumes.

MONAI's ``SaveImage`` cannot write a single-channel 2-D array in MONAI 1.6 (``spatial_resample`` meets a ``None``
spatial size, MONAI issue #9068), so class maps are written with nibabel directly: the array as it is, the input's
affine widened to 4 x 4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data.utils import to_affine_nd

__all__ = ["input_affine", "save_class_map"]


def input_affine(x: Any) -> np.ndarray:
    """The 4 x 4 affine of a MetaTensor input (a 2-D image's 3 x 3 affine widened); the identity for a plain array."""
    affine = getattr(x, "affine", None)
    if affine is None:
        return np.eye(4)
    return np.asarray(to_affine_nd(3, np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64)))


def save_class_map(classes: torch.Tensor | np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write a ``(*spatial)`` class map (values 0..255) as uint8 NIfTI with ``affine``; returns the path."""
    array = np.asarray(torch.as_tensor(classes).detach().cpu())
    if array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise ValueError(f"a class map must hold values in [0, 255] but spans [{array.min()}, {array.max()}].")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))
    return path
