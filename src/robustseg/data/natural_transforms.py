"""Transforms that turn the stored values of 2-D label files into class indices (255 ignored).

* :class:`EncodeNaturalLabels` -- stored values of one encoding of a dataset (Cityscapes ``labelIds``, Context's
  background-first ``index`` for 59 classes, ...) -> class indices by the dataset's lookup table
  (:class:`robustseg.data.natural.NaturalDataset`); values outside the encoding's set raise.
* :class:`EncodeNaturalLabelsd` -- the same on a data dict, with the encoding read from the dict (the datalist's
  ``label_encoding``), so one pipeline reads ``labelIds`` and ``labelTrainIds`` files alike.
* :class:`SavePalettePNGd` -- write class maps as palette PNGs in the dataset's colours, named by case
  (``<case>_pred.png``), as VOC ships its labels: any viewer shows them and Pillow reads the indices back.

Both keep the type, dtype and meta data of their input. A typical pipeline::

    Compose([LoadImaged("label", reader=PILReader(reverse_indexing=False), ensure_channel_first=True),
             EncodeNaturalLabelsd("label", dataset="cityscapes"), ...])
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from robustseg.data.naming import case_id_of
from robustseg.data.natural import NaturalDataset, get_dataset
from robustseg.data.png import write_label

__all__ = ["EncodeNaturalLabels", "EncodeNaturalLabelsd", "SavePalettePNGd"]


class EncodeNaturalLabels(Transform):
    """Stored label values of ``encoding`` -> class indices of ``dataset`` (255 where the dataset ignores them).

    Args:
        dataset: a :class:`NaturalDataset` or its name (``voc``, ``cityscapes``, ``context59``, ...).
        encoding: the encoding of the stored values (``index``, ``labelIds``, ``trainIds``); default: the
            dataset's first (``labelIds`` for Cityscapes, ``index`` elsewhere).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, dataset: str | NaturalDataset, encoding: str | None = None) -> None:
        self.dataset = get_dataset(dataset)
        self.encoding = encoding or next(iter(self.dataset.encodings))
        self.dataset.table(self.encoding)  # an unknown encoding fails here, when the pipeline is built

    def __call__(self, label: NdarrayOrTensor, encoding: str | None = None) -> NdarrayOrTensor:
        enc = encoding or self.encoding
        if isinstance(label, torch.Tensor):
            values = label.as_subclass(torch.Tensor)
            nan = bool(torch.isnan(values).any()) if values.is_floating_point() else False
            self._check(set(torch.unique(values).tolist()), nan, enc)
            out = label.clone()
            lut = torch.as_tensor(self.dataset.table(enc), device=label.device).to(label.dtype)
            out.as_subclass(torch.Tensor).copy_(lut[values.long().clamp(0, 255)])
            return out
        array = np.asarray(label)
        nan = bool(np.isnan(array).any()) if array.dtype.kind == "f" else False
        self._check(set(np.unique(array).tolist()), nan, enc)
        return np.asarray(self.dataset.to_classes(array, enc), dtype=array.dtype)

    def _check(self, found: set[Any], nan: bool, encoding: str) -> None:
        """Refuse values outside the encoding's set (and NaN), naming them."""
        unknown = sorted(int(v) for v in found if v == v and int(v) not in self.dataset.raw_values(encoding))
        if unknown or nan:
            listed = [*unknown[:10], *(["NaN"] if nan else [])]
            raise ValueError(
                f"{self.dataset.name} {encoding!r} labels hold values {listed} outside the encoding's set; "
                "validate the datalist (robustseg datalist --root ROOT) or pick the dataset the labels belong to."
            )


class EncodeNaturalLabelsd(MapTransform):
    """Dictionary version of :class:`EncodeNaturalLabels`; the encoding comes from ``data[encoding_key]``.

    Args:
        keys: the label key(s).
        dataset: a :class:`NaturalDataset` or its name.
        encoding_key: the dict key holding the encoding (the datalist's ``label_encoding``).
        default_encoding: the encoding when the dict has none (default: the dataset's first).
        allow_missing_keys: skip absent keys (an unlabelled inference dict).
    """

    backend = EncodeNaturalLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        dataset: str | NaturalDataset,
        encoding_key: str = "label_encoding",
        default_encoding: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.encode = EncodeNaturalLabels(dataset, default_encoding)
        self.encoding_key = encoding_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        encoding = str(d.get(self.encoding_key) or self.encode.encoding)
        for key in self.key_iterator(d):
            d[key] = self.encode(d[key], encoding)
        return d


class SavePalettePNGd(MapTransform):
    """Write each class map ``(1, H, W)`` under ``keys`` as ``<output_dir>/<case><postfix>.png`` (palette PNG).

    The case is named from ``data[name_key]`` (its ``case_id``, else the file its MetaTensor was loaded from). The
    data passes through unchanged; the paths written are added under ``<key>_png``.

    Args:
        keys: class-map keys (after ``AsDiscreted(argmax=True)``).
        dataset: the :class:`NaturalDataset` (or its name) whose colours are used.
        output_dir: where the PNGs go (created).
        postfix: appended to the case id (``"_pred"``).
        name_key: the key the case is named by (``"image"``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        dataset: str | NaturalDataset,
        output_dir: str | Path,
        postfix: str = "_pred",
        name_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dataset = get_dataset(dataset)
        self.output_dir = Path(output_dir)
        self.postfix = postfix
        self.name_key = name_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        case = case_id_of({"image": d.get(self.name_key), "case_id": d.get("case_id")}) or "case"
        for key in self.key_iterator(d):
            value = d[key]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
            path = write_label(
                self.output_dir / f"{case}{self.postfix}.png", np.rint(array).astype(np.uint8), self.dataset
            )
            d[f"{key}_png"] = str(path)
        return d
