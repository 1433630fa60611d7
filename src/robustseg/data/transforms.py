"""Transforms that bring every BraTS layout onto the canonical scheme, and back for writing predictions.

Canonical images are channel-first with channels ``(T1, T1c, T2, FLAIR)``; canonical labels are 0 background,
1 necrotic / non-enhancing core, 2 oedema, 3 enhancing tumour (:mod:`robustseg.data.layouts`).

* :class:`MapBraTSLabels` -- raw label values of a layout -> canonical (``brats2021``: 4 -> 3; ``decathlon``:
  1 -> 2, 2 -> 1); unknown values raise.
* :class:`ReorderBraTSChannels` -- the Decathlon channel order (FLAIR, T1w, T1gd, T2w) -> canonical; identity for
  the per-modality layouts, whose files are listed in canonical order by the datalist.
* :class:`CanonicalBraTSd` -- both, on a data dict, with the layout read from the dict (the datalist's ``layout``).
* :class:`ToBraTSLabels` / :class:`ToBraTSLabelsd` -- canonical labels -> the layout's raw values, to write
  predictions the way the layout's own tools expect them.

All work on numpy arrays, torch tensors and :class:`monai.data.MetaTensor` (meta data and affine kept), and return
the type they were given. A typical pipeline::

    Compose([LoadImaged(["image", "label"], ensure_channel_first=True), CanonicalBraTSd(), ...])
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from robustseg.data.layouts import CANONICAL_LABELS, BraTSLayout, get_layout

__all__ = [
    "CanonicalBraTSd",
    "MapBraTSLabels",
    "ReorderBraTSChannels",
    "ToBraTSLabels",
    "ToBraTSLabelsd",
    "from_input_labels",
    "to_input_labels",
]


def _as_layout(layout: str | BraTSLayout) -> BraTSLayout:
    return layout if isinstance(layout, BraTSLayout) else get_layout(layout)


def _unique(x: NdarrayOrTensor) -> list[float]:
    if isinstance(x, torch.Tensor):
        return torch.unique(x.as_subclass(torch.Tensor)).tolist()
    return np.unique(np.asarray(x)).tolist()


def _remap(x: NdarrayOrTensor, mapping: Mapping[int, int], what: str) -> NdarrayOrTensor:
    """``x`` with every value ``k`` replaced by ``mapping[k]``; a ValueError listing the values not in ``mapping``."""
    unknown = [v for v in _unique(x) if v != v or v not in mapping]  # v != v: NaN
    if unknown:
        raise ValueError(f"{what}: values {unknown} are not in the expected set {sorted(mapping)}.")
    moved = {k: v for k, v in mapping.items() if k != v}
    if not moved:
        return x
    out = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    for src, dst in moved.items():  # masks are taken on the input, so swaps (1 <-> 2) are safe
        out[x == src] = dst
    return out


class MapBraTSLabels(Transform):
    """Map a segmentation's raw label values of ``layout`` onto the canonical labels (0, 1, 2, 3).

    Args:
        layout: layout name or object, for example ``"brats2021"`` (4 -> 3) or ``"decathlon"`` (1 -> 2, 2 -> 1).

    Raises:
        ValueError: when called on a segmentation with values outside the layout's label map; the message lists them.

    Example::

        MapBraTSLabels("brats2021")(np.array([0, 1, 2, 4]))  # -> array([0, 1, 2, 3])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, layout: str | BraTSLayout) -> None:
        self.layout = _as_layout(layout)

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        """Canonical labels of ``label``, same type, shape and dtype."""
        return _remap(label, self.layout.label_map, f"segmentation of layout {self.layout.name!r}")


class ToBraTSLabels(Transform):
    """Map canonical labels (0, 1, 2, 3) back onto the raw label values of ``layout``; inverse of
    :class:`MapBraTSLabels`.

    Args:
        layout: layout name or object, for example ``"brats2021"`` (3 -> 4).

    Raises:
        ValueError: when called on labels outside (0, 1, 2, 3); the message lists them.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, layout: str | BraTSLayout) -> None:
        self.layout = _as_layout(layout)

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        """Raw labels of ``label`` in the layout's values, same type, shape and dtype."""
        return _remap(
            label, self.layout.inverse_label_map(), f"canonical labels {CANONICAL_LABELS} to {self.layout.name!r}"
        )


class ReorderBraTSChannels(Transform):
    """Reorder the channels of a channel-first image of ``layout`` into the canonical (T1, T1c, T2, FLAIR).

    Only the ``decathlon`` layout changes anything (its file holds FLAIR, T1w, T1gd, T2w: FLAIR moves from channel 0
    to channel 3); the per-modality layouts are returned as given.

    Args:
        layout: layout name or object.

    Raises:
        ValueError: for a layout that reorders, when the image is not channel-first with 4 channels.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, layout: str | BraTSLayout) -> None:
        self.layout = _as_layout(layout)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """The image with channels in canonical order (a new array unless the layout's order is the identity)."""
        order = list(self.layout.channel_order)
        if order == list(range(len(order))):
            return img
        if img.ndim < 2 or img.shape[0] != len(order):
            raise ValueError(
                f"ReorderBraTSChannels({self.layout.name!r}) expects a channel-first image with {len(order)} channels "
                f"but the shape is {tuple(img.shape)}; "
                "load it with ensure_channel_first=True or add EnsureChannelFirstd."
            )
        return img[order]


class CanonicalBraTSd(MapTransform):
    """Dictionary version of :class:`ReorderBraTSChannels` (on ``image_key``) and :class:`MapBraTSLabels`
    (on ``label_key``), with the layout read from each data dict.

    Args:
        image_key: key of the channel-first image.
        label_key: key of the segmentation.
        layout_key: key of the layout name (the datalist's ``"layout"``).
        default_layout: layout used when a dict has no ``layout_key``.
        allow_missing_keys: do not raise when the image or label key is absent (for unlabelled cases).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        layout_key: str = "layout",
        default_layout: str = "brats2023",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__([image_key, label_key], allow_missing_keys)
        self.image_key, self.label_key, self.layout_key = image_key, label_key, layout_key
        self.default_layout = get_layout(default_layout).name
        self._transforms: dict[str, tuple[ReorderBraTSChannels, MapBraTSLabels]] = {}

    def _for(self, name: Any) -> tuple[ReorderBraTSChannels, MapBraTSLabels]:
        if not isinstance(name, str):
            raise ValueError(f"data[{self.layout_key!r}] must be a layout name (str) but is {name!r}.")
        if name not in self._transforms:
            self._transforms[name] = (ReorderBraTSChannels(name), MapBraTSLabels(name))
        return self._transforms[name]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reorder, map_labels = self._for(d.get(self.layout_key, self.default_layout))
        for key in self.key_iterator(d):
            d[key] = reorder(d[key]) if key == self.image_key else map_labels(d[key])
        return d


class ToBraTSLabelsd(MapTransform):
    """Dictionary version of :class:`ToBraTSLabels`, with the layout read from each data dict.

    Args:
        keys: keys of the canonical label maps to convert (for example ``"pred"``).
        layout_key: key of the layout name.
        default_layout: layout used when a dict has no ``layout_key``.
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = ToBraTSLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        layout_key: str = "layout",
        default_layout: str = "brats2023",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.layout_key = layout_key
        self.default_layout = get_layout(default_layout).name
        self._transforms: dict[str, ToBraTSLabels] = {}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        name = d.get(self.layout_key, self.default_layout)
        if not isinstance(name, str):
            raise ValueError(f"data[{self.layout_key!r}] must be a layout name (str) but is {name!r}.")
        if name not in self._transforms:
            self._transforms[name] = ToBraTSLabels(name)
        for key in self.key_iterator(d):
            d[key] = self._transforms[name](d[key])
        return d


def _brats_classes(class_names: Any) -> bool:
    from robustseg.labels import BRATS

    return tuple(class_names) == tuple(BRATS.class_names)


def _remap_keeping(classes: torch.Tensor, transform: Transform, keep: tuple[int, ...]) -> torch.Tensor:
    held = torch.zeros_like(classes, dtype=torch.bool)
    for value in keep:
        held |= classes == value
    mapped = torch.as_tensor(transform(torch.where(held, torch.zeros_like(classes), classes)))
    return torch.where(held, classes, mapped)


def to_input_labels(
    classes: torch.Tensor, class_names: Any, layout: str | None, keep: tuple[int, ...] = ()
) -> torch.Tensor:
    """A class map in the label values of its case's input layout, so saved maps match the data and the evaluate
    workflow's predictions (BraTS 2018-2022: enhancing tumour 4, not the canonical 3).

    Maps of other label schemes, or of cases without a known layout, are returned unchanged; voxels with a value in
    ``keep`` (an abstain marker) are kept as they are.
    """
    if layout is None or not _brats_classes(class_names):
        return classes
    return _remap_keeping(classes, ToBraTSLabels(layout), keep)


def from_input_labels(
    classes: torch.Tensor, class_names: Any, layout: str | None, keep: tuple[int, ...] = ()
) -> torch.Tensor:
    """The inverse of :func:`to_input_labels`: a saved map back in the scheme's class indices."""
    if layout is None or not _brats_classes(class_names):
        return classes
    return _remap_keeping(classes, MapBraTSLabels(layout), keep)
