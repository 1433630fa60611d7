"""Find the BraTS cases under a dataset root and describe each as one datalist record.

:func:`discover_cases` walks the root to a bounded depth, recognises the on-disk layout
(:data:`robustseg.data.layouts.LAYOUTS`) and returns one record per case in the format of
:mod:`robustseg.data.datalist`, with paths relative to the root::

    layout, records = discover_cases("/data/BraTS2021")
    # layout == "brats2021"
    # records[0] == {"case_id": "BraTS2021_00000", "layout": "brats2021",
    #                "image": ["BraTS2021_00000/BraTS2021_00000_t1.nii.gz", ...],   # T1, T1c, T2, FLAIR
    #                "label": "BraTS2021_00000/BraTS2021_00000_seg.nii.gz"}

Discovery only decides *which* cases exist and where their files should be. Whether the files are there and sound is
decided by :mod:`robustseg.data.validation`: a case folder that holds some but not all modalities is still a record
(with the expected paths) so that validation reports it. The ``label`` key is left out when no case of the dataset
has a segmentation (a validation or test release); when some cases have one, every record gets the key, so a case
missing its segmentation is reported instead of silently becoming unlabelled.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from robustseg.data.layouts import LAYOUTS, BraTSLayout

__all__ = ["NIFTI_EXTENSIONS", "discover_cases"]

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
"""File endings treated as NIfTI; ``.nii.gz`` is preferred when both exist."""

_DECATHLON_DIRS = ("imagesTr", "labelsTr", "imagesTs")
_SKIP_DIRS = ("__MACOSX",)
_MAX_EXAMPLES = 5


def _is_nifti(name: str) -> bool:
    return not name.startswith(".") and name.endswith(NIFTI_EXTENSIONS)


def _strip_nifti(name: str) -> str:
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _match_file(name: str, layout: BraTSLayout) -> tuple[str, str] | None:
    """``(case_id, suffix)`` when ``name`` is one of ``layout``'s per-modality files, else ``None``."""
    stem = _strip_nifti(name)
    for suffix in (*layout.modality_suffixes, layout.label_suffix):
        ending = f"{layout.separator}{suffix}"
        if stem.endswith(ending) and len(stem) > len(ending):
            return stem[: -len(ending)], suffix
    return None


def _expected_file(folder: Path, names: set[str], layout: BraTSLayout, case_id: str, suffix: str) -> Path:
    """The file of ``suffix`` in ``folder``: the ``.nii.gz`` name, or the ``.nii`` one when only that exists."""
    gz = layout.file_name(case_id, suffix)
    plain = _strip_nifti(gz) + ".nii"
    return folder / (plain if gz not in names and plain in names else gz)


def _walk(root: Path, max_depth: int) -> list[tuple[Path, list[str], list[str]]]:
    """``(folder, subfolders, nifti files)`` for ``root`` and its folders up to ``max_depth`` levels below it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        depth = len(folder.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        found.append((folder, list(dirnames), sorted(f for f in filenames if _is_nifti(f))))
        if depth >= max_depth:
            dirnames[:] = []
    return found


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _decathlon_records(task_dir: Path, root: Path) -> list[dict[str, Any]]:
    """One record per image of ``task_dir/imagesTr`` (``imagesTs`` has no labels and is not listed)."""
    images = sorted(f for f in os.listdir(task_dir / "imagesTr") if _is_nifti(f))
    label_dir = task_dir / "labelsTr"
    labels = {f for f in os.listdir(label_dir) if _is_nifti(f)} if label_dir.is_dir() else set()
    records = []
    for name in images:
        record: dict[str, Any] = {
            "case_id": _strip_nifti(name),
            "layout": "decathlon",
            "image": _relative(task_dir / "imagesTr" / name, root),
        }
        record["_label"] = _relative(label_dir / name, root) if name in labels else None
        record["_expected_label"] = _relative(label_dir / name, root)
        records.append(record)
    return records


def _brats_records(folder: Path, files: list[str], root: Path, unclaimed: set[Path]) -> dict[str, list[dict[str, Any]]]:
    """Records of the per-modality layouts whose files lie in ``folder``, keyed by layout name."""
    names = set(files)
    out: dict[str, list[dict[str, Any]]] = {}
    for layout in LAYOUTS.values():
        if layout.is_4d:
            continue
        cases: dict[str, set[str]] = {}
        for name in files:
            match = _match_file(name, layout)
            if match is not None:
                cases.setdefault(match[0], set()).add(match[1])
                unclaimed.discard(folder / name)
        for case_id, suffixes in sorted(cases.items()):
            label = _expected_file(folder, names, layout, case_id, layout.label_suffix)
            out.setdefault(layout.name, []).append(
                {
                    "case_id": case_id,
                    "layout": layout.name,
                    "image": [
                        _relative(_expected_file(folder, names, layout, case_id, s), root)
                        for s in layout.modality_suffixes
                    ],
                    "_label": _relative(label, root) if layout.label_suffix in suffixes else None,
                    "_expected_label": _relative(label, root),
                }
            )
    return out


def _summary(counts: Counter[str], unclaimed: set[Path], root: Path) -> str:
    layouts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no case of any known layout"
    examples = sorted(_relative(p, root) for p in unclaimed)
    text = f"found {layouts}"
    if examples:
        shown = ", ".join(examples[:_MAX_EXAMPLES])
        more = f" and {len(examples) - _MAX_EXAMPLES} more" if len(examples) > _MAX_EXAMPLES else ""
        text += f"; unrecognised NIfTI files: {shown}{more}"
    else:
        text += "; no other NIfTI files"
    return text


def discover_cases(root: str | Path, max_depth: int = 3) -> tuple[str, list[dict[str, Any]]]:
    """Find the cases of the one BraTS layout under ``root``.

    Case folders may lie directly in ``root`` or a few levels deeper (for example
    ``root/BraTS2021_Training_Data/BraTS2021_00000/``); a Decathlon task is recognised by its ``imagesTr`` folder.
    Hidden files (macOS ``._*`` copies) and ``__MACOSX`` folders are ignored.

    Args:
        root: dataset root; record paths are relative to it.
        max_depth: how many folder levels below ``root`` case folders (or the Decathlon task folder) may lie.

    Returns:
        The layout name and one record per case, sorted by case id. Each record has ``case_id``, ``layout``,
        ``image`` (four paths in the order T1, T1c, T2, FLAIR, or the one 4-D path for ``decathlon``) and ``label``
        (left out when no case of the dataset has a segmentation).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no known layout, more than one layout, or one case id found twice; the message lists the counts
            of each layout found and examples of unrecognised NIfTI files.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder; pass the folder that holds the BraTS cases.")
    if max_depth < 0:
        raise ValueError(f"max_depth must be non-negative but is {max_depth}.")

    found: dict[str, list[dict[str, Any]]] = {}
    unclaimed: set[Path] = set()
    decathlon_dirs: list[Path] = []
    for folder, subdirs, files in _walk(root, max_depth):
        if any(folder.is_relative_to(d) for d in decathlon_dirs):
            if folder.parent not in decathlon_dirs or folder.name not in _DECATHLON_DIRS:
                unclaimed.update(folder / f for f in files)
            continue
        if "imagesTr" in subdirs:
            decathlon_dirs.append(folder)
            found.setdefault("decathlon", []).extend(_decathlon_records(folder, root))
            unclaimed.update(folder / f for f in files)
            continue
        unclaimed.update(folder / f for f in files)
        for name, records in _brats_records(folder, files, root, unclaimed).items():
            found.setdefault(name, []).extend(records)

    counts = Counter({name: len(records) for name, records in found.items() if records})
    if len(counts) != 1:
        problem = "no BraTS layout recognised" if not counts else "more than one BraTS layout"
        raise ValueError(
            f"{problem} under {root} (searched {max_depth} folder levels deep): {_summary(counts, unclaimed, root)}. "
            f"Expected one of {sorted(LAYOUTS)}: <case>/<case>_t1.nii.gz ... (brats2021), "
            "<case>/<case>-t1n.nii.gz ... (brats2023) or imagesTr/ + labelsTr/ (decathlon); "
            "point --root at a folder holding a single layout."
        )
    (layout_name,) = counts
    records = found[layout_name]
    duplicates = sorted(c for c, n in Counter(r["case_id"] for r in records).items() if n > 1)
    if duplicates:
        raise ValueError(
            f"case ids found more than once under {root}: {duplicates[:_MAX_EXAMPLES]}; "
            "point --root at a folder holding each case once."
        )
    if unclaimed:
        logger.warning(
            "ignoring files under %s that fit no %s case: %s", root, layout_name, _summary(counts, unclaimed, root)
        )

    labelled = any(r["_label"] is not None for r in records)
    out = []
    for r in sorted(records, key=lambda r: r["case_id"]):
        expected = r.pop("_expected_label")
        r.pop("_label")
        if labelled:
            r["label"] = expected
        out.append(r)
    return layout_name, out
