"""Names of files robustseg writes beside the inputs (predictions, perturbed volumes)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["case_id_from_path", "case_id_of", "case_ids", "case_output_name"]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".nii.gz",
    ".nii",
    ".mha",
    ".mhd",
    ".nrrd",
    ".dcm",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".npy",
    ".npz",
)
"""File extensions stripped from a file name to name its case."""

_MODALITY_SUFFIX = re.compile(r"[-_](t1n|t1c|t1ce|t1|t2w|t2f|t2|flair)$|_leftImg8bit$", re.IGNORECASE)


def case_id_from_path(path: str | Path) -> str:
    """The case id in a BraTS image path: the file name without extension and modality suffix.

    ``BraTS-GLI-00001-000-t1n.nii.gz`` -> ``BraTS-GLI-00001-000``; ``BraTS2021_00001_t1.nii.gz`` ->
    ``BraTS2021_00001``; a Decathlon ``BRATS_001.nii.gz`` -> ``BRATS_001``; a VOC ``2007_000032.jpg`` ->
    ``2007_000032``; a Cityscapes ``aachen_000000_000019_leftImg8bit.png`` -> ``aachen_000000_000019``.
    """
    name = Path(str(path)).name
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return _MODALITY_SUFFIX.sub("", name)


def case_output_name(metadict: dict[str, Any] | None, saver: Any = None) -> dict[str, str]:
    """``output_name_formatter`` for MONAI's ``SaveImaged``: name outputs by case id, not by the T1 file."""
    source = (metadict or {}).get("filename_or_obj", "case")
    if isinstance(source, list | tuple):
        source = source[0]
    return {"subject": case_id_from_path(source)}


def case_id_of(entry: Mapping[str, Any], image_key: str = "image") -> str | None:
    """The id of a datalist entry: its ``case_id``, else the name of its (first) image file, else ``None``.

    Model zoo datalists carry no ``case_id``; their file names do (``Brats18_2013_2_1_flair.nii.gz`` ->
    ``Brats18_2013_2_1``, ``imagesTr/spleen_19.nii.gz`` -> ``spleen_19``). An in-memory image with MONAI metadata
    is named by the ``filename_or_obj`` it was loaded from.
    """
    if entry.get("case_id") not in (None, ""):
        return str(entry["case_id"])
    image = entry.get(image_key)
    if isinstance(image, list | tuple) and image:
        image = image[0]
    if isinstance(image, str | Path):
        return case_id_from_path(image)
    source = (getattr(image, "meta", None) or {}).get("filename_or_obj")
    if isinstance(source, list | tuple) and source:
        source = source[0]
    return case_id_from_path(source) if isinstance(source, str | Path) and str(source) else None


def case_ids(entries: Sequence[Mapping[str, Any]], image_key: str = "image") -> list[str]:
    """The unique id of every entry (:func:`case_id_of`); a clear error for an entry without one or a repeated id."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        case_id = case_id_of(entry, image_key)
        if case_id is None:
            raise ValueError(
                f'case {index} has neither a case_id nor an image file name to name it by; add "case_id" to the '
                "datalist entries (results, seeds and example files are named by it)."
            )
        if case_id in seen:
            raise ValueError(
                f'cases {seen[case_id]} and {index} are both named {case_id!r}; add a unique "case_id" to the '
                "datalist entries."
            )
        seen[case_id] = index
        ids.append(case_id)
    return ids
