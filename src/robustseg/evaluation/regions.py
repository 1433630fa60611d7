"""Turn class maps into the region masks that are scored (ET, TC, WT for BraTS)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from robustseg.labels import BRATS, LabelScheme

__all__ = ["ClassMapToRegions", "ClassMapToRegionsd"]


class ClassMapToRegions(Transform):
    """Class map ``(1, *spatial)``, or a one-hot / logit map ``(C, *spatial)`` arg-maxed, to masks ``(R, *spatial)``."""

    def __init__(self, scheme: LabelScheme = BRATS) -> None:
        self.scheme = scheme

    def __call__(self, img: Any) -> torch.Tensor:
        img = torch.as_tensor(img)
        if img.shape[0] != 1:
            img = img.argmax(dim=0, keepdim=True)
        regions = self.scheme.to_regions(img[None])[0]
        if hasattr(img, "meta") and hasattr(regions, "meta"):
            regions.meta = dict(img.meta)
        return regions


class ClassMapToRegionsd(MapTransform):
    """Dictionary version of :class:`ClassMapToRegions`."""

    def __init__(self, keys: KeysCollection, scheme: LabelScheme = BRATS, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ClassMapToRegions(scheme)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
