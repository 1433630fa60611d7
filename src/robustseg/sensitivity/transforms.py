"""MONAI array and dictionary transforms of the basis perturbations (:func:`robustseg.sensitivity.perturb`).

``BasisPerturbation`` takes one channel-first image ``(C, *spatial)`` (tensor, MetaTensor or array; the output has
the input's type and meta data). ``BasisPerturbationd`` perturbs the image keys and moves the label keys with them:
every key gets the same seed, so a geometric op moves every image and every label by the same warp.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor, ensure_tuple

from robustseg.sensitivity.perturbations import OPS, check_request, perturb

__all__ = ["BasisPerturbation", "BasisPerturbationd"]


class BasisPerturbation(Transform):
    """``op`` at ``magnitude`` on one channel-first image, seeded by ``seed``."""

    def __init__(self, op: str, magnitude: float, seed: int = 0, channels: Sequence[int] | None = None) -> None:
        check_request(op, magnitude)
        self.op, self.magnitude, self.seed, self.channels = op, magnitude, seed, channels

    def __call__(self, img: Any) -> Any:
        tensor = convert_to_tensor(img, track_meta=False)
        out, _ = perturb(tensor[None], None, self.op, self.magnitude, seed=self.seed, channels=self.channels)
        return convert_to_dst_type(out[0], img)[0]


class BasisPerturbationd(MapTransform):
    """``op`` at ``magnitude`` on ``keys`` (images), moving ``label_keys`` alike under geometric ops."""

    def __init__(
        self,
        keys: KeysCollection,
        op: str,
        magnitude: float,
        label_keys: KeysCollection = (),
        seed: int = 0,
        label_fill: int = 0,
        channels: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_request(op, magnitude)
        self.label_keys: list[Hashable] = list(ensure_tuple(label_keys))
        self.op, self.magnitude, self.seed, self.label_fill, self.channels = op, magnitude, seed, label_fill, channels

    def _apply(self, image: Any, label: Any | None) -> tuple[Any, Any | None]:
        tensor = convert_to_tensor(image, track_meta=False)[None]
        target = None if label is None else convert_to_tensor(label, track_meta=False)[None]
        out, moved = perturb(
            tensor, target, self.op, self.magnitude, seed=self.seed, label_fill=self.label_fill, channels=self.channels
        )
        new_label = None if moved is None or label is None else convert_to_dst_type(moved[0], label)[0]
        return convert_to_dst_type(out[0], image)[0], new_label

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        geometric = OPS[self.op].geometric
        for key in keys:
            d[key], _ = self._apply(d[key], None)
        if geometric:
            reference = data[keys[0]]
            for key in self.label_keys:
                if key in d:
                    _, d[key] = self._apply(reference, d[key])
        return d
