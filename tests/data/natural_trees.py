"""Tiny Pascal VOC, Cityscapes and Pascal-Context copies on disk, in the exact layouts the datasets ship."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from robustseg.data.natural import voc_colormap

H, W = 12, 16


def photo(seed: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def index_png(path: Path, values: np.ndarray, palette: bool = True) -> Path:
    """An index label: a ``P`` PNG with VOC's palette (``palette``) or a grey ``L`` PNG (SBD, Context)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(values.astype(np.uint8))
    if palette:
        img.putpalette([v for rgb in voc_colormap() for v in rgb])
    img.save(path)
    return path


def label_map(values: Sequence[int], size: tuple[int, int] = (H, W)) -> np.ndarray:
    """A label holding each of ``values`` in a band of rows."""
    out = np.zeros(size, dtype=np.uint8)
    for i, v in enumerate(values):
        out[i * size[0] // len(values) : (i + 1) * size[0] // len(values)] = v
    return out


def jpeg(path: Path, seed: int, size: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(seed, size)).save(path, quality=95)
    return path


def voc_tree(root: Path, train: Sequence[str] = ("2007_000032", "2007_000039", "2007_000063"),
             val: Sequence[str] = ("2007_000033", "2007_000042"), aug: Sequence[str] = (),
             aug_list: bool = False) -> Path:  # fmt: skip
    """``root/VOCdevkit/VOC2012`` as VOCtrainval_11-May-2012.tar unpacks (and SBD's SegmentationClassAug)."""
    base = root / "VOCdevkit" / "VOC2012"
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in (*train, *val)))
    for k, case in enumerate((*train, *val, *aug)):
        jpeg(base / "JPEGImages" / f"{case}.jpg", k)
        if case not in aug:
            index_png(base / "SegmentationClass" / f"{case}.png", label_map([0, 15, 255, k % 21]))
    if aug:
        for k, case in enumerate((*train, *aug, *val)):
            index_png(base / "SegmentationClassAug" / f"{case}.png", label_map([0, 12, 255, k % 21]), palette=False)
        if aug_list:
            (lists / "trainaug.txt").write_text("".join(f"{i}\n" for i in (*train, *aug)))
    return base


CITIES = {
    "train": {"aachen": ("aachen_000000_000019", "aachen_000001_000019")},
    "val": {"lindau": ("lindau_000000_000019",)},
}


def cityscapes_tree(root: Path, train_ids_for: Sequence[str] = (), test: bool = True) -> Path:
    """``leftImg8bit/`` and ``gtFine/`` as the Cityscapes zips unpack; ``train_ids_for`` also get labelTrainIds."""
    k = 0
    for split, cities in CITIES.items():
        for city, names in cities.items():
            for name in names:
                Image.fromarray(photo(k)).save(_mk(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"))
                gt = root / "gtFine" / split / city
                index_png(gt / f"{name}_gtFine_labelIds.png", label_map([7, 26, 0, 33, 14]), palette=False)
                Image.fromarray(photo(k + 100)).save(_mk(gt / f"{name}_gtFine_color.png"))
                if name in train_ids_for:
                    index_png(gt / f"{name}_gtFine_labelTrainIds.png", label_map([0, 13, 255, 18, 255]), palette=False)
                k += 1
    if test:
        Image.fromarray(photo(99)).save(
            _mk(root / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png")
        )
    return root


def context_tree(root: Path, train: Sequence[str] = ("2008_000002", "2008_000003"),
                 val: Sequence[str] = ("2008_000008",)) -> Path:  # fmt: skip
    """``root/VOCdevkit/VOC2010`` with the Context labels mmsegmentation's converter writes (grey, 0..59)."""
    base = root / "VOCdevkit" / "VOC2010"
    lists = base / "ImageSets" / "SegmentationContext"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    for k, case in enumerate((*train, *val)):
        jpeg(base / "JPEGImages" / f"{case}.jpg", k)
        index_png(base / "SegmentationClassContext" / f"{case}.png", label_map([0, 1, 59, 15]), palette=False)
    return base


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
