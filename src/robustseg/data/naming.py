"""Names of files robustseg writes beside the inputs (predictions, perturbed volumes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["case_id_from_path", "case_output_name"]

_MODALITY_SUFFIX = re.compile(r"[-_](t1n|t1c|t1ce|t1|t2w|t2f|t2|flair)$", re.IGNORECASE)


def case_id_from_path(path: str | Path) -> str:
    """The case id in a BraTS image path: the file name without extension and modality suffix.

    ``BraTS-GLI-00001-000-t1n.nii.gz`` -> ``BraTS-GLI-00001-000``; ``BraTS2021_00001_t1.nii.gz`` ->
    ``BraTS2021_00001``; a Decathlon ``BRATS_001.nii.gz`` -> ``BRATS_001``.
    """
    name = Path(str(path)).name
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd"):
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
