"""Tiny synthetic BraTS cases on disk, in any of the three layouts, with optional defects."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from robustseg.data.layouts import MODALITIES, get_layout

SHAPE = (8, 8, 8)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def raw_label_volume(layout: str, shape: Sequence[int] = SHAPE) -> np.ndarray:
    """A segmentation holding every raw label value of ``layout`` (in blocks along the first axis)."""
    values = get_layout(layout).raw_labels
    seg = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(values):
        seg[i * shape[0] // len(values) : (i + 1) * shape[0] // len(values)] = v
    return seg


def _save(data: np.ndarray, path: Path, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)


def write_case(
    root: Path,
    layout: str,
    case_id: str,
    *,
    subdir: str = "",
    shape: Sequence[int] = SHAPE,
    with_label: bool = True,
    drop: Sequence[str] = (),
    corrupt: dict[str, str] | None = None,
    nan: str | None = None,
    bad_shape: str | None = None,
    bad_affine: tuple[str, float] | None = None,
    unknown_label: int | None = None,
    image_channels: int = 4,
) -> dict[str, Any]:
    """Write one case of ``layout`` under ``root/subdir`` and return ``{"case_id", "files": {key: path}}``.

    Keys are the canonical modalities ``t1, t1c, t2, flair`` and ``seg`` (``image`` and ``seg`` for decathlon).

    Args:
        drop: keys whose file is not written.
        corrupt: key -> ``"truncate"`` (a gzip cut in half) or ``"garbage"`` (text in a .nii.gz name).
        nan: key of an image that gets a NaN and an Inf voxel.
        bad_shape: key of a file written one voxel longer along the last spatial axis.
        bad_affine: key and the offset added to its affine's translation.
        unknown_label: a value written into one voxel of the segmentation.
        image_channels: channels of a decathlon image (4 is valid).
    """
    lay = get_layout(layout)
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    base = root / subdir
    if lay.is_4d:
        files = {"image": base / "imagesTr" / f"{case_id}.nii.gz", "seg": base / "labelsTr" / f"{case_id}.nii.gz"}
    else:
        folder = base / case_id
        files = {m: folder / lay.file_name(case_id, s) for m, s in zip(MODALITIES, lay.modality_suffixes, strict=True)}
        files["seg"] = folder / lay.file_name(case_id, lay.label_suffix)
    if not with_label:
        files.pop("seg")

    for key, path in files.items():
        if key in drop:
            continue
        spatial = list(shape)
        if key == bad_shape:
            spatial[-1] += 1
        if key == "seg":
            data = raw_label_volume(layout, spatial)
            if unknown_label is not None:
                data[0, 0, 0] = unknown_label
        else:
            full = (*spatial, image_channels) if lay.is_4d else tuple(spatial)
            data = rng.normal(100.0, 10.0, size=full).astype(np.float32)
            if key == nan:
                data.flat[0] = np.nan
                data.flat[-1] = np.inf
        affine = AFFINE.copy()
        if bad_affine is not None and key == bad_affine[0]:
            affine[:3, 3] += bad_affine[1]
        _save(data, path, affine)
        mode = (corrupt or {}).get(key)
        if mode == "truncate":
            raw = path.read_bytes()
            path.write_bytes(raw[: len(raw) // 2])
        elif mode == "garbage":
            path.write_text("this is not a NIfTI image\n")
    return {"case_id": case_id, "files": files}


@pytest.fixture
def make_case() -> Callable[..., dict[str, Any]]:
    """:func:`write_case`, as a fixture."""
    return write_case
