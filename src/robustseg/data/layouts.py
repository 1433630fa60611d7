"""The BraTS on-disk layouts robustseg reads, and how each maps onto the canonical scheme.

Canonical image channels are ``(T1, T1c, T2, FLAIR)``; canonical labels are 0 background, 1 necrotic/non-enhancing
core, 2 oedema, 3 enhancing tumour (:data:`robustseg.labels.BRATS`).

* ``brats2021`` -- BraTS 2018-2022: ``<case>/<case>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``;
  labels 0, 1 NCR/NET, 2 ED, 4 ET.
* ``brats2023`` -- BraTS 2023+ GLI: ``<case>/<case>-t1n.nii.gz``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``;
  labels 0, 1 NCR, 2 ED, 3 ET.
* ``decathlon`` -- Medical Segmentation Decathlon Task01: ``imagesTr/<case>.nii.gz`` holds one 4-D image
  (FLAIR, T1w, T1gd, T2w) and ``labelsTr/<case>.nii.gz`` has 0, 1 oedema, 2 non-enhancing tumour, 3 enhancing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CANONICAL_LABELS", "LAYOUTS", "MODALITIES", "BraTSLayout", "get_layout"]

MODALITIES: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
"""Canonical channel order of every image robustseg feeds to a model."""

CANONICAL_LABELS: tuple[int, ...] = (0, 1, 2, 3)


@dataclass(frozen=True)
class BraTSLayout:
    """One on-disk BraTS convention.

    Attributes:
        name: layout id stored in every datalist entry (``"layout"`` key).
        modality_suffixes: file suffix of each canonical modality, in :data:`MODALITIES` order
            (empty for a layout with one 4-D image).
        label_suffix: file suffix of the segmentation.
        separator: between case id and suffix (``_`` or ``-``).
        label_map: raw label value -> canonical label value; values outside it are invalid.
        channel_order: for a 4-D image, the index of each canonical modality in the file's channel axis.
    """

    name: str
    modality_suffixes: tuple[str, ...]
    label_suffix: str
    separator: str
    label_map: dict[int, int]
    channel_order: tuple[int, ...] = (0, 1, 2, 3)

    @property
    def raw_labels(self) -> tuple[int, ...]:
        return tuple(sorted(self.label_map))

    @property
    def is_4d(self) -> bool:
        return not self.modality_suffixes

    def file_name(self, case_id: str, suffix: str) -> str:
        return f"{case_id}{self.separator}{suffix}.nii.gz"

    def inverse_label_map(self) -> dict[int, int]:
        """Canonical label -> raw label, to write predictions in the layout's own label values."""
        return {v: k for k, v in self.label_map.items()}


LAYOUTS: dict[str, BraTSLayout] = {
    "brats2021": BraTSLayout(
        name="brats2021",
        modality_suffixes=("t1", "t1ce", "t2", "flair"),
        label_suffix="seg",
        separator="_",
        label_map={0: 0, 1: 1, 2: 2, 4: 3},
    ),
    "brats2023": BraTSLayout(
        name="brats2023",
        modality_suffixes=("t1n", "t1c", "t2w", "t2f"),
        label_suffix="seg",
        separator="-",
        label_map={0: 0, 1: 1, 2: 2, 3: 3},
    ),
    "decathlon": BraTSLayout(
        name="decathlon",
        modality_suffixes=(),
        label_suffix="",
        separator="",
        label_map={0: 0, 1: 2, 2: 1, 3: 3},
        # file channels are FLAIR, T1w, T1gd, T2w; canonical T1, T1c, T2, FLAIR
        channel_order=(1, 2, 3, 0),
    ),
}


def get_layout(name: str) -> BraTSLayout:
    """The layout called ``name``, or a ValueError listing the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown BraTS layout {name!r}; expected one of {sorted(LAYOUTS)}.") from None
