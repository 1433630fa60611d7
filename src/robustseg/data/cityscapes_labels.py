"""The Cityscapes label table, typed from cityscapesScripts' ``helpers/labels.py`` (MIT licence).

``gtFine/*_gtFine_labelIds.png`` stores the ``id`` column (0..33); training and the benchmark use the 19 ``train_id``
classes, with every other id mapped to 255 (ignored). The licence plate (id -1) is never written into the label
images. When ``cityscapesscripts`` is installed, :func:`official_table` reads its table so the tests can compare.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LABELS", "TRAIN_CLASSES", "TRAIN_PALETTE", "CityscapesLabel", "label_id_to_train_id", "official_table"]


class CityscapesLabel(NamedTuple):
    """One row of the table: name, id in ``*_labelIds.png``, train id (255 = ignored) and colour."""

    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, (119, 11, 32)),
    CityscapesLabel("license plate", -1, 255, (0, 0, 142)),
)
"""Every Cityscapes label; ``train_id`` 255 stands for the table's 255 and -1 (both ignored)."""

TRAIN_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in sorted(LABELS, key=lambda r: r.train_id) if lab.train_id < 255
)
"""The 19 evaluated classes in train-id order (road 0 .. bicycle 18)."""

TRAIN_PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    lab.color for lab in sorted(LABELS, key=lambda r: r.train_id) if lab.train_id < 255
)
"""Colour of each train id, as the benchmark draws it."""


def label_id_to_train_id() -> np.ndarray:
    """A 256-entry lookup table: ``table[label_id]`` is the train id (255 for ignored and unknown ids)."""
    table = np.full(256, 255, dtype=np.uint8)
    for lab in LABELS:
        if lab.id >= 0:
            table[lab.id] = lab.train_id
    return table


def official_table() -> list[CityscapesLabel] | None:
    """cityscapesScripts' own table when ``cityscapesscripts`` is installed, else ``None``."""
    try:
        from cityscapesscripts.helpers import labels as official
    except ImportError:
        return None
    return [
        CityscapesLabel(lab.name, lab.id, 255 if lab.trainId in (-1, 255) else lab.trainId, tuple(lab.color))
        for lab in official.labels
    ]
