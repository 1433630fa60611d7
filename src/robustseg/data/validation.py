"""Check BraTS cases (and, through :mod:`robustseg.data.natural_validation`, 2-D images) before any compute.

Every datalist record (see :mod:`robustseg.data.datalist`) is checked one case at a time. A record with a BraTS
``layout`` (robustseg's datalists) is checked against its layout:

* every modality file and the segmentation are present;
* every file is a readable NIfTI image (corrupt or truncated gzip and non-NIfTI files are caught);
* a per-modality image and the segmentation are 3-D; a ``decathlon`` image is 4-D with 4 channels;
* all files of a case share one spatial shape and one affine (within ``atol``);
* intensities are finite (no NaN or Inf);
* segmentation values lie in the layout's raw label set (:attr:`BraTSLayout.raw_labels`).

A record of a 2-D layout (Pascal VOC, Cityscapes, Pascal-Context) gets the checks of
:func:`robustseg.data.natural_validation.validate_natural_case`.

A record without one (a model zoo datalist, a user's own) gets the checks that need no layout: every image and
label file is present and readable, NIfTI files of a case share one spatial shape and one affine, and image
intensities are finite. Each failure is a :class:`CaseValidationError` naming the case, the file and the fix.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from robustseg.data.layouts import MODALITIES, BraTSLayout, get_layout
from robustseg.data.naming import case_id_of
from robustseg.data.natural_discovery import NATURAL_LAYOUTS
from robustseg.data.natural_validation import validate_natural_case
from robustseg.data.problems import CaseValidationError, skip_hint
from robustseg.progress import progress

__all__ = ["CaseValidationError", "validate_case", "validate_cases", "validate_datalist", "validate_entries"]

logger = logging.getLogger(__name__)


def _read(path: Path) -> tuple[nib.spatialimages.SpatialImage, np.ndarray] | str:
    """The image and its voxels, or the reason it cannot be read."""
    fix = "re-extract or re-download it"
    try:
        img = nib.load(path)
    except Exception as e:  # nibabel raises many types for a bad file; every one means "unreadable"
        return f"cannot be read as NIfTI ({type(e).__name__}: {e}): it is corrupt, truncated or not NIfTI; {fix}"
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        return f"is a {type(img).__name__}, not a NIfTI image; convert it to NIfTI (.nii.gz)"
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # truncated gzip: EOFError, zlib.error, OSError, ValueError depending on where it ends
        return f"is truncated or corrupt ({type(e).__name__}: {e}); {fix}"
    return img, data


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


def validate_case(
    record: dict[str, Any], root: str | Path, layout: str | BraTSLayout | None = None, atol: float = 1e-3
) -> list[CaseValidationError]:
    """All problems of one case; an empty list when the case is sound.

    Args:
        record: a datalist record (``case_id``, ``image``, optional ``label``, ``layout``), paths relative to
            ``root`` or absolute.
        root: the dataset root the record's relative paths start from.
        layout: the layout (name or object); default: the record's ``layout``.
        atol: largest absolute difference allowed between the affines of the files of the case.

    Returns:
        One :class:`CaseValidationError` per problem, in file order (images in canonical order, then the label).
    """
    root = Path(root)
    case_id = case_id_of(record) or "<no case_id>"
    if layout is None:
        layout = record.get("layout")
        if layout is None:
            return _validate_files(record, root, case_id, atol)
        if layout in NATURAL_LAYOUTS:
            return validate_natural_case(record, root)
    try:
        lay = layout if isinstance(layout, BraTSLayout) else get_layout(layout)
    except ValueError as e:
        return [CaseValidationError(case_id, root, f"{e} Rebuild the datalist with scripts/make_datalist.py")]

    image = record.get("image")
    if lay.is_4d:
        if not isinstance(image, str):
            return [CaseValidationError(case_id, root, f"a {lay.name} record needs one 4-D image path, got {image!r}")]
        files = [("4-D image", image)]
    else:
        if not isinstance(image, list | tuple) or len(image) != len(MODALITIES):
            reason = f"a {lay.name} record needs {len(MODALITIES)} image paths ({', '.join(MODALITIES)}), got {image!r}"
            return [CaseValidationError(case_id, root, reason)]
        files = [(f"{m} image", p) for m, p in zip(MODALITIES, image, strict=True)]
    if "label" in record:
        files.append(("segmentation", record["label"]))

    problems: list[CaseValidationError] = []
    ref: tuple[Path, tuple[int, ...], np.ndarray] | None = None  # first readable file: path, spatial shape, affine
    for what, rel in files:
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        is_label = what == "segmentation"

        def problem(reason: str, path: Path = path) -> None:
            problems.append(CaseValidationError(case_id, path, reason))

        if not path.is_file():
            fix = (
                "add it; if this is an unlabelled (validation) case, point --root at a folder of labelled cases, "
                + skip_hint(root)
                if is_label
                else f"add it {skip_hint(root)}"
            )
            problem(f"the {what} is missing; {fix}")
            continue
        read = _read(path)
        if isinstance(read, str):
            problem(f"the {what} {read} {skip_hint(root)}")
            continue
        img, data = read

        ndim = 4 if (lay.is_4d and not is_label) else 3
        if data.ndim != ndim or (ndim == 4 and data.shape[3] != len(MODALITIES)):
            expected = f"4-D with {len(MODALITIES)} channels (x, y, z, 4)" if ndim == 4 else "3-D"
            problem(
                f"the {what} must be {expected} but has shape {data.shape}; use the files of the {lay.name} release"
            )
            continue
        shape, affine = tuple(int(s) for s in data.shape[:3]), np.asarray(img.affine, dtype=np.float64)
        if ref is None:
            ref = (path, shape, affine)
        elif shape != ref[1]:
            problem(f"spatial shape {shape} differs from {ref[1]} of {ref[0].name}; resample it onto that grid")
        elif not np.allclose(affine, ref[2], rtol=0.0, atol=atol):
            diff = _max_abs_diff(affine, ref[2])
            problem(
                f"affine differs from that of {ref[0].name} by up to {diff:.4g} (tolerance {atol:g}); "
                "resample it onto that grid or raise the tolerance (atol)"
            )

        if is_label:
            values = np.unique(data)
            unknown = [v for v in values.tolist() if not np.isfinite(v) or v not in lay.label_map]
            if unknown:
                problem(
                    f"segmentation values {unknown} are not in the {lay.name} label set {list(lay.raw_labels)}; "
                    f"check the layout (found {lay.name}), fix the segmentation, " + skip_hint(root)
                )
        elif not np.issubdtype(data.dtype, np.integer):
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            if bad:
                problem(
                    f"the {what} has {bad} non-finite (NaN/Inf) intensities; replace them (e.g. with 0) "
                    + skip_hint(root)
                )
        del data, img
    return problems


def _validate_files(record: dict[str, Any], root: Path, case_id: str, atol: float) -> list[CaseValidationError]:
    """The checks of a record without a layout: files present and readable, one grid, finite intensities."""
    image = record.get("image")
    paths = list(image) if isinstance(image, list | tuple) else [image] if image is not None else []
    if not paths or not all(isinstance(p, str | Path) for p in paths):
        return [CaseValidationError(case_id, root, f"the record needs 'image' file path(s) but has {image!r}")]
    files = [("image", p) for p in paths] + (
        [("label", record["label"])] if isinstance(record.get("label"), str) else []
    )
    problems: list[CaseValidationError] = []
    ref: tuple[Path, tuple[int, ...], np.ndarray] | None = None
    for what, rel in files:
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        if not path.is_file():
            problems.append(CaseValidationError(case_id, path, f"the {what} is missing; add it {skip_hint(root)}"))
            continue
        if not str(path).endswith((".nii", ".nii.gz")):
            continue  # other formats are read by MONAI's LoadImage; nothing more to check here
        read = _read(path)
        if isinstance(read, str):
            problems.append(CaseValidationError(case_id, path, f"the {what} {read} {skip_hint(root)}"))
            continue
        img, data = read
        shape, affine = tuple(int(v) for v in data.shape[:3]), np.asarray(img.affine, dtype=np.float64)
        if ref is None:
            ref = (path, shape, affine)
        elif shape != ref[1]:
            reason = f"spatial shape {shape} differs from {ref[1]} of {ref[0].name}; resample it onto that grid"
            problems.append(CaseValidationError(case_id, path, reason))
        elif not np.allclose(affine, ref[2], rtol=0.0, atol=atol):
            reason = (
                f"affine differs from that of {ref[0].name} by up to {_max_abs_diff(affine, ref[2]):.4g} "
                f"(tolerance {atol:g}); resample it onto that grid"
            )
            problems.append(CaseValidationError(case_id, path, reason))
        if what == "image" and not np.issubdtype(data.dtype, np.integer):
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            if bad:
                reason = f"the image has {bad} non-finite (NaN/Inf) intensities; replace them (e.g. with 0)"
                problems.append(CaseValidationError(case_id, path, reason))
        del data, img
    return problems


def validate_entries(entries: Sequence[dict[str, Any]], root: str | Path = ".", atol: float = 1e-3) -> int:
    """Validate the case dicts a workflow is about to load (any datalist format); returns the number checked.

    The audit and certification overlays call this on the bundle's ``test_data`` in their ``initialize`` section.
    """
    if not entries:
        raise ValueError("there are no cases to check: the bundle's test_data is empty.")
    validate_cases(list(entries), root, atol=atol)
    return len(entries)


def validate_cases(
    records: Sequence[dict[str, Any]],
    root: str | Path,
    skip_invalid: bool = False,
    report_path: str | Path | None = None,
    atol: float = 1e-3,
) -> list[dict[str, Any]]:
    """Validate every case, one at a time, with a progress bar.

    Args:
        records: datalist records, for example from :func:`robustseg.data.discovery.discover_cases`.
        root: the dataset root the records' relative paths start from.
        skip_invalid: ``False`` raises at the first case with problems; ``True`` leaves invalid cases out.
        report_path: with ``skip_invalid``, where to write the rejected cases as JSON
            (``[{"case_id": ..., "problems": [{"path": ..., "reason": ...}]}]``, an empty list when none).
        atol: largest absolute difference allowed between the affines of the files of a case.

    Returns:
        The valid records, in input order.

    Raises:
        CaseValidationError: without ``skip_invalid``, for the first case with problems; the message lists them all
            and :attr:`CaseValidationError.problems` holds them.
    """
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for record in progress(records, desc="validating cases", unit="case"):
        problems = validate_case(record, root, atol=atol)
        if not problems:
            valid.append(record)
            continue
        if not skip_invalid:
            first = problems[0]
            if len(problems) == 1:
                raise first
            listed = "; ".join(f"{p.path}: {p.reason}" for p in problems)
            folder = os.path.commonpath([p.path for p in problems])
            raise CaseValidationError(first.case_id, folder, f"{len(problems)} problems: {listed}", problems)
        rejected.append(
            {"case_id": problems[0].case_id, "problems": [{"path": p.path, "reason": p.reason} for p in problems]}
        )
    if rejected:
        logger.warning("left out %d of %d cases that failed validation", len(rejected), len(records))
    if skip_invalid and report_path is not None:
        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(rejected, indent=2) + "\n")
    return valid


def validate_datalist(
    datalist: str | Path, root: str | Path, splits: Sequence[str] = ("training", "validation"), atol: float = 1e-3
) -> int:
    """Validate the cases of ``splits`` in a datalist before a workflow loads them; returns the number checked.

    Bundle workflows call this in their ``initialize`` section, so a bad case stops the run with a clear error before
    any data is cached or any model is trained. Raises like :func:`validate_cases` without ``skip_invalid``.
    """
    path = Path(datalist)
    if not path.is_file():
        raise FileNotFoundError(
            f"datalist {path} does not exist; write one with scripts/make_datalist.py --root {root} "
            "(real BraTS) or scripts/make_phantoms.py (phantom data)."
        )
    data = json.loads(path.read_text())
    records = [r for split in splits for r in data.get(split, [])]
    if not records:
        raise ValueError(f"datalist {path} has no cases in {list(splits)}; rebuild it with scripts/make_datalist.py.")
    validate_cases(records, root, atol=atol)
    return len(records)
