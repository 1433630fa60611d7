"""Find the images and labels of a Pascal VOC, Cityscapes or Pascal-Context copy and its official splits.

:func:`discover_natural` recognises the layout under a root and returns one datalist record per image of each
official split, with paths relative to the root the user gave::

    found = discover_natural("/data/VOCdevkit")
    found.layout == "voc2012"; found.splits["train"][0] == {
        "case_id": "2007_000032", "layout": "voc2012", "dataset": "voc", "label_encoding": "index",
        "image": "VOC2012/JPEGImages/2007_000032.jpg", "label": "VOC2012/SegmentationClass/2007_000032.png"}

Layouts, as the datasets ship them:

* ``voc2012``: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``, ``ImageSets/Segmentation/{train,val}.txt``,
  at the root or under ``VOC2012/`` or ``VOCdevkit/VOC2012/``. With SBD's ``SegmentationClassAug/`` beside them
  (``--aug``, the default when present), training is "trainaug": the ids of ``ImageSets/Segmentation/trainaug.txt``
  (or ``train_aug.txt``), else every ``SegmentationClassAug`` id not in ``val.txt``, labelled from
  ``SegmentationClassAug``; ``val`` keeps the official ``SegmentationClass`` labels.
* ``cityscapes``: ``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png``; a ``<name>_gtFine_labelTrainIds.png`` is used instead when
  present. The test split has no public labels and is left out.
* ``pascal_context``: VOC 2010 images with the converted Context labels as mmsegmentation writes them:
  ``JPEGImages/<id>.jpg``, ``SegmentationClassContext/<id>.png``, ``ImageSets/SegmentationContext/{train,val}.txt``
  (4998 / 5105), at the root or under ``VOC2010/`` or ``VOCdevkit/VOC2010/``; 59 or 60 classes.

Discovery decides which images exist and where their labels should be; an image whose label is missing is still a
record, so that validation (:mod:`robustseg.data.natural_validation`) reports it by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustseg.data.natural import NaturalDataset, get_dataset

__all__ = ["NATURAL_LAYOUTS", "NaturalFound", "detect_natural", "discover_natural"]

logger = logging.getLogger(__name__)

NATURAL_LAYOUTS: dict[str, str] = {"voc2012": "voc", "cityscapes": "cityscapes", "pascal_context": "context59"}
"""Each 2-D layout and its default dataset (Pascal-Context defaults to 59 classes)."""

_PREFIXES = {"voc2012": ("", "VOC2012", "VOCdevkit/VOC2012"), "pascal_context": ("", "VOC2010", "VOCdevkit/VOC2010")}


@dataclass
class NaturalFound:
    """What :func:`discover_natural` found: the layout, its dataset and the records of each official split."""

    layout: str
    dataset: NaturalDataset
    splits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def detect_natural(root: str | Path) -> tuple[str, Path] | None:
    """``(layout, base)`` of the 2-D dataset under ``root`` (``base``: the folder holding its parts), or ``None``."""
    root = Path(root)
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes", root
    for layout, parts in (("pascal_context", "SegmentationClassContext"), ("voc2012", "SegmentationClass")):
        for prefix in _PREFIXES[layout]:
            base = root / prefix if prefix else root
            if (base / "JPEGImages").is_dir() and ((base / parts).is_dir() or (base / f"{parts}Aug").is_dir()):
                return layout, base
    return None


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_ids(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the {what} split list is part of the dataset; re-extract it.")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path} is empty: the {what} split lists no image; re-extract it.")
    return ids


def _record(case_id: str, layout: str, dataset: str, image: Path, label: Path, root: Path, enc: str) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "layout": layout,
        "dataset": dataset,
        "label_encoding": enc,
        "image": _rel(image, root),
        "label": _rel(label, root),
    }


def _voc(root: Path, base: Path, dataset: NaturalDataset, aug: bool | None, found: NaturalFound) -> None:
    lists = base / "ImageSets" / "Segmentation"
    val_ids = _read_ids(lists / "val.txt", "VOC val")
    aug_dir = base / "SegmentationClassAug"
    use_aug = aug_dir.is_dir() if aug is None else aug
    if use_aug and not aug_dir.is_dir():
        raise FileNotFoundError(
            f"{aug_dir} does not exist: --aug needs SBD's SegmentationClassAug folder beside SegmentationClass."
        )
    if use_aug:
        listed = [lists / "trainaug.txt", lists / "train_aug.txt"]
        list_file = next((p for p in listed if p.is_file()), None)
        if list_file is not None:
            train_ids = _read_ids(list_file, "trainaug")
        else:
            val = set(val_ids)
            train_ids = sorted(p.stem for p in aug_dir.glob("*.png") if p.stem not in val)
        found.notes.append(f"training on SBD trainaug ({len(train_ids)} images, labels from {aug_dir.name})")
    else:
        train_ids = _read_ids(lists / "train.txt", "VOC train")
    label_dirs = {"train": aug_dir if use_aug else base / "SegmentationClass", "val": base / "SegmentationClass"}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        found.splits[split] = [
            _record(i, "voc2012", dataset.name, base / "JPEGImages" / f"{i}.jpg", label_dirs[split] / f"{i}.png",
                    root, "index")
            for i in ids
        ]  # fmt: skip


def _context(root: Path, base: Path, dataset: NaturalDataset, found: NaturalFound) -> None:
    lists = base / "ImageSets" / "SegmentationContext"
    for split in ("train", "val"):
        ids = _read_ids(lists / f"{split}.txt", f"Pascal-Context {split}")
        found.splits[split] = [
            _record(i, "pascal_context", dataset.name, base / "JPEGImages" / f"{i}.jpg",
                    base / "SegmentationClassContext" / f"{i}.png", root, "index")
            for i in ids
        ]  # fmt: skip


def _cityscapes(root: Path, dataset: NaturalDataset, found: NaturalFound) -> None:
    suffix = "_leftImg8bit.png"
    for split in ("train", "val"):
        folder = root / "leftImg8bit" / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: a Cityscapes copy has leftImg8bit/{{train,val}}.")
        records = []
        for image in sorted(folder.glob(f"*/*{suffix}")):
            name = image.name[: -len(suffix)]
            labels = root / "gtFine" / split / image.parent.name
            train_ids = labels / f"{name}_gtFine_labelTrainIds.png"
            if train_ids.is_file():
                records.append(_record(name, "cityscapes", dataset.name, image, train_ids, root, "trainIds"))
            else:
                label = labels / f"{name}_gtFine_labelIds.png"
                records.append(_record(name, "cityscapes", dataset.name, image, label, root, "labelIds"))
        if not records:
            raise ValueError(f"{folder} holds no <city>/*{suffix} image; re-extract leftImg8bit_trainvaltest.zip.")
        found.splits[split] = records
    if (root / "leftImg8bit" / "test").is_dir():
        found.notes.append("left out the test split: its labels are not public")


def discover_natural(
    root: str | Path, dataset: str | None = None, aug: bool | None = None, context_classes: int = 59
) -> NaturalFound:
    """The layout, dataset and official-split records of the 2-D dataset under ``root``.

    Args:
        root: the dataset root; records' paths are relative to it.
        dataset: the dataset whose classes the labels hold (default: the layout's; ``scenes`` for robustseg's
            offline scenes in VOC's layout).
        aug: Pascal VOC only: train on SBD's ``SegmentationClassAug`` (default: when the folder exists).
        context_classes: Pascal-Context only: 59 (background ignored) or 60 (background a class).

    Raises:
        ValueError: no 2-D layout under ``root``, an empty split, or a bad ``context_classes``.
        FileNotFoundError: a split list the layout needs is missing.
    """
    root = Path(root)
    detected = detect_natural(root)
    if detected is None:
        raise ValueError(
            f"no Pascal VOC, Cityscapes or Pascal-Context layout under {root}: expected JPEGImages/ with "
            "SegmentationClass/ (VOC) or SegmentationClassContext/ (Context), or leftImg8bit/ with gtFine/ "
            "(Cityscapes)."
        )
    layout, base = detected
    if layout == "pascal_context" and dataset is None:
        if context_classes not in (59, 60):
            raise ValueError(f"Pascal-Context has 59 or 60 classes, not {context_classes}.")
        dataset = f"context{context_classes}"
    spec = get_dataset(dataset or NATURAL_LAYOUTS[layout])
    found = NaturalFound(layout, spec)
    if layout == "voc2012":
        _voc(root, base, spec, aug, found)
    elif layout == "pascal_context":
        _context(root, base, spec, found)
    else:
        _cityscapes(root, spec, found)
    for note in found.notes:
        logger.info("%s: %s", layout, note)
    return found
