"""What the labels of each 2-D natural-image dataset mean: classes, colours, ignore index and label encodings.

A :class:`NaturalDataset` is to Pascal VOC, Cityscapes and Pascal-Context what a BraTS layout's label set is to MRI:
the classes (background first where there is one), the colour of each class (for palette PNGs and reports), the
value that is not scored (255 in all three), and the *encodings* its label files come in. An encoding names what the
pixel values of a label file are and maps them to class indices by a 256-entry lookup table:

* ``voc``: ``index`` (palette or grey PNG, value = class 0..20, 255 = void);
* ``cityscapes``: ``labelIds`` (``*_gtFine_labelIds.png``, ids 0..33, mapped to the 19 train ids, others 255) and
  ``trainIds`` (``*_gtFine_labelTrainIds.png``, written by cityscapesScripts' ``createTrainIdLabelImgs``);
* ``context60`` / ``context59``: ``index`` (the converted Detail-API PNGs, 0 background .. 59); ``context59`` maps
  background to 255 and class k to k - 1 (mmsegmentation's ``reduce_zero_label``);
* ``scenes``: robustseg's offline scene generator (:mod:`robustseg.data.scenes`), written in VOC's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from robustseg.data import cityscapes_labels
from robustseg.labels import LabelScheme

__all__ = ["DATASETS", "IGNORE_INDEX", "NaturalDataset", "get_dataset", "voc_colormap"]

IGNORE_INDEX = 255
"""The label value no dataset here scores (VOC's void band, Cityscapes' ignored ids, Context-59's background)."""


def voc_colormap(n: int = 256) -> tuple[tuple[int, int, int], ...]:
    """Pascal VOC's palette: colour ``i`` spreads the bits of ``i`` over the high bits of R, G and B (255 = cream)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def _identity(values: range) -> tuple[np.ndarray, frozenset[int]]:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[list(values)] = list(values)
    return table, frozenset(values) | {IGNORE_INDEX}


@dataclass(frozen=True)
class NaturalDataset:
    """Classes, colours and label encodings of one 2-D dataset.

    Args:
        name: the dataset's name in datalists and profiles (``voc``, ``cityscapes``, ``context59``, ...).
        class_names: name of each class index.
        palette: colour of each class index; index 255 is drawn in ``ignore_color``.
        encodings: for each encoding of the label files, ``(table, raw_values)``: the 256-entry lookup table from a
            stored value to a class index (or 255), and the values a file of that encoding may hold.
        crop_size: the usual training crop ``(height, width)``.
        ignore_color: colour of the ignore index in palette PNGs (VOC's cream).
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    encodings: Mapping[str, tuple[np.ndarray, frozenset[int]]] = field(default_factory=dict)
    crop_size: tuple[int, int] = (512, 512)
    ignore_color: tuple[int, int, int] = (224, 224, 192)

    def __post_init__(self) -> None:
        if len(self.palette) < self.num_classes:
            raise ValueError(f"{self.name}: {self.num_classes} classes but {len(self.palette)} palette colours.")
        if not self.encodings:
            object.__setattr__(self, "encodings", {"index": _identity(range(self.num_classes))})

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ignore_index(self) -> int:
        return IGNORE_INDEX

    def label_scheme(self) -> LabelScheme:
        """The :class:`LabelScheme`: one region per class, background included (mIoU averages every class)."""
        regions = {n: (i,) for i, n in enumerate(self.class_names)}
        return LabelScheme(class_names=self.class_names, regions=regions, ignore_index=IGNORE_INDEX)

    def table(self, encoding: str) -> np.ndarray:
        """Lookup table from the stored values of ``encoding`` to class indices."""
        return self._encoding(encoding)[0]

    def raw_values(self, encoding: str) -> frozenset[int]:
        """The values a label file of ``encoding`` may hold."""
        return self._encoding(encoding)[1]

    def _encoding(self, encoding: str) -> tuple[np.ndarray, frozenset[int]]:
        if encoding not in self.encodings:
            raise ValueError(
                f"dataset {self.name!r} has no label encoding {encoding!r}; it has {sorted(self.encodings)}."
            )
        return self.encodings[encoding]

    def to_classes(self, raw: np.ndarray, encoding: str) -> np.ndarray:
        """Class indices (uint8, 255 ignored) of a stored label array of ``encoding``."""
        return self.table(encoding)[np.asarray(raw).astype(np.int64).clip(0, 255)]

    def full_palette(self) -> list[int]:
        """The 768-value palette of a ``P``-mode PNG: the class colours, then black, and ``ignore_color`` at 255."""
        colours = [*self.palette[: self.num_classes]] + [(0, 0, 0)] * (256 - self.num_classes)
        colours[IGNORE_INDEX] = self.ignore_color
        return [v for rgb in colours for v in rgb]

    def colours(self) -> dict[int, tuple[int, int, int]]:
        """The colour of every class index and of the ignore index (for report figures)."""
        return {**dict(enumerate(self.palette[: self.num_classes])), IGNORE_INDEX: self.ignore_color}

    def colorize(self, class_map: np.ndarray) -> np.ndarray:
        """RGB image ``(H, W, 3)`` uint8 of a class map in the dataset's colours."""
        table = np.asarray(self.full_palette(), dtype=np.uint8).reshape(256, 3)
        return table[np.asarray(class_map).astype(np.int64).clip(0, 255)]


_VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_CONTEXT_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow",
    "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip
"""Pascal-Context's 59 most frequent classes, in the order of the converted label files (1..59; 0 is background)."""

SCENE_CLASSES: tuple[str, ...] = ("background", "horse", "disc", "box", "star", "ring", "blob")
"""Classes of robustseg's offline scenes (:mod:`robustseg.data.scenes`)."""


def _cityscapes() -> NaturalDataset:
    train_ids = _identity(range(19))
    label_ids = (
        cityscapes_labels.label_id_to_train_id(),
        frozenset(lab.id for lab in cityscapes_labels.LABELS if lab.id >= 0),
    )
    return NaturalDataset(
        name="cityscapes",
        class_names=cityscapes_labels.TRAIN_CLASSES,
        palette=cityscapes_labels.TRAIN_PALETTE,
        encodings={"labelIds": label_ids, "trainIds": train_ids},
        crop_size=(512, 1024),
        ignore_color=(0, 0, 0),
    )


def _context59() -> NaturalDataset:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[1:60] = np.arange(59)
    raw = frozenset(range(60)) | {IGNORE_INDEX}
    return NaturalDataset("context59", _CONTEXT_CLASSES, voc_colormap()[1:60], {"index": (table, raw)}, (480, 480))


DATASETS: dict[str, NaturalDataset] = {
    "voc": NaturalDataset("voc", _VOC_CLASSES, voc_colormap(), crop_size=(512, 512)),
    "cityscapes": _cityscapes(),
    "context60": NaturalDataset("context60", ("background", *_CONTEXT_CLASSES), voc_colormap(), crop_size=(480, 480)),
    "context59": _context59(),
    "scenes": NaturalDataset("scenes", SCENE_CLASSES, voc_colormap(), crop_size=(128, 128)),
}
"""Every 2-D dataset robustseg reads, by name."""


def get_dataset(name: str | NaturalDataset) -> NaturalDataset:
    """The :class:`NaturalDataset` called ``name`` (a dataset passes through)."""
    if isinstance(name, NaturalDataset):
        return name
    if name not in DATASETS:
        raise ValueError(f"unknown 2-D dataset {name!r}; robustseg knows {sorted(DATASETS)}.")
    return DATASETS[name]
