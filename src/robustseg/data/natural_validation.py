"""Check the images and labels of a 2-D dataset before any compute is spent on them.

For one record of :mod:`robustseg.data.natural_discovery` (a ``layout`` among
:data:`~robustseg.data.natural_discovery.NATURAL_LAYOUTS`, a ``dataset`` and a ``label_encoding``):

* the image exists and decodes (a truncated JPEG is caught here);
* the label exists, decodes and is an index image (palette or grey PNG), not an RGB colouring of one;
* the label has the image's size;
* the label's values lie in the set of its encoding (VOC 0..20 and 255, Cityscapes labelIds 0..33, ...).

Each failure is a :class:`~robustseg.data.problems.CaseValidationError` naming the case, the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustseg.data.natural import get_dataset
from robustseg.data.png import LabelFileError, read_label
from robustseg.data.problems import CaseValidationError, skip_hint

__all__ = ["RGB_LABEL_HINTS", "validate_natural_case"]

RGB_LABEL_HINTS: dict[str, str] = {
    "voc2012": "SegmentationClass/ of VOCtrainval_11-May-2012.tar (palette PNGs) or SBD's SegmentationClassAug "
    "(grey PNGs), not re-saved colour copies",
    "cityscapes": "the *_gtFine_labelIds.png of gtFine_trainvaltest.zip (not *_gtFine_color.png), or "
    "*_gtFine_labelTrainIds.png from cityscapesScripts' createTrainIdLabelImgs",
    "pascal_context": "the index PNGs that mmsegmentation's tools/dataset_converters/pascal_context.py writes from "
    "the Detail API's trainval_merged.json",
}
"""Where the right label files come from, by layout, for the error on a colour label."""


def _ranges(values: frozenset[int]) -> str:
    """``0..20 and 255``: a value set as runs."""
    runs: list[str] = []
    ordered = sorted(values)
    start = prev = ordered[0]
    for v in [*ordered[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(runs[:-1]) + f" and {runs[-1]}" if len(runs) > 1 else runs[0]


def _size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of a decodable image, else None (the caller reports why)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.size
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError ... for bad files
        return None


def validate_natural_case(record: dict[str, Any], root: str | Path) -> list[CaseValidationError]:
    """All problems of one 2-D record; an empty list when image and label are sound."""
    root = Path(root)
    case_id = str(record.get("case_id", "<no case_id>"))
    layout = str(record.get("layout", ""))
    try:
        dataset = get_dataset(str(record.get("dataset", "")))
        encoding = str(record.get("label_encoding", "index"))
        raw_values = dataset.raw_values(encoding)
    except ValueError as e:
        return [CaseValidationError(case_id, root, f"{e} Rebuild the datalist with `robustseg datalist --root ROOT`")]

    def where(rel: str) -> Path:
        return Path(rel) if Path(rel).is_absolute() else root / rel

    problems: list[CaseValidationError] = []
    image = where(str(record.get("image", "")))
    size = None
    if not image.is_file():
        problems.append(CaseValidationError(case_id, image, f"the image is missing; add it {skip_hint(root)}"))
    else:
        size = _size(image)
        if size is None:
            reason = f"the image cannot be decoded: it is corrupt or truncated; re-extract it {skip_hint(root)}"
            problems.append(CaseValidationError(case_id, image, reason))
    if "label" not in record:
        return problems
    label = where(str(record["label"]))
    if not label.is_file():
        reason = f"the image {image.name} has no label: {label.name} is missing; add it {skip_hint(root)}"
        problems.append(CaseValidationError(case_id, label, reason))
        return problems
    try:
        values = read_label(label, rgb_hint=RGB_LABEL_HINTS.get(layout, ""))
    except LabelFileError as e:
        problems.append(CaseValidationError(case_id, label, f"the label {e.reason} {skip_hint(root)}"))
        return problems
    height, width = values.shape[:2]
    if size is not None and (width, height) != size:
        reason = (
            f"the label is {width}x{height} (width x height) but its image {image.name} is {size[0]}x{size[1]}; "
            "a label must have its image's size: use the dataset's original label, or resize it with "
            f"nearest-neighbour interpolation {skip_hint(root)}"
        )
        problems.append(CaseValidationError(case_id, label, reason))
    found = {int(v) for v in np.unique(values)}
    unknown = sorted(found - raw_values)
    if unknown:
        listed = ", ".join(str(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        reason = (
            f"the label holds values {listed} outside the {dataset.name} {encoding!r} label set "
            f"({_ranges(raw_values)}); check that it is a label of this dataset and encoding "
            f"(rebuild the datalist with the right --dataset) {skip_hint(root)}"
        )
        problems.append(CaseValidationError(case_id, label, reason))
    return problems
