"""The split of a bundle's preprocessing that corruption benchmarks need: the raw part, then intensity normalisation.

A corruption happens to the scan or the photograph, before any software rescales its intensities, so a benchmark
loads each case with the transforms up to the first intensity normalisation, corrupts it, and then runs the rest.
:func:`split_at_normalisation` cuts a bundle's ``Compose`` there: at the first of MONAI's intensity-normalising
transforms (:data:`NORMALISING`), array or dictionary version. A bundle may instead define the contract ids
``raw_preprocessing`` and ``intensity_normalisation`` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monai.transforms import Compose

__all__ = ["NORMALISING", "PreprocessingSplit", "split_at_normalisation"]

logger = logging.getLogger(__name__)

NORMALISING = (
    "NormalizeIntensity",
    "ScaleIntensity",
    "ScaleIntensityRange",
    "ScaleIntensityRangePercentiles",
    "ScaleIntensityFixedMean",
    "HistogramNormalize",
    "ClipIntensityPercentiles",
)
"""MONAI transforms that rescale intensities (each also as its ``...d`` dictionary version)."""


@dataclass(frozen=True)
class PreprocessingSplit:
    """A bundle's preprocessing cut before its first intensity normalisation.

    Attributes:
        raw: the transforms before it (load, orient, resample, crop): what a corruption is applied to.
        normalisation: it and everything after it.
        at: the class name of the transform the cut is at (``None``: the preprocessing normalises nothing).
    """

    raw: Compose
    normalisation: Compose
    at: str | None


def _name(transform: Any) -> str:
    name = type(transform).__name__
    return name[:-1] if name.endswith("d") and name[:-1] in NORMALISING else name


def split_at_normalisation(preprocessing: Compose | Sequence[Any]) -> PreprocessingSplit:
    """Cut ``preprocessing`` (a ``Compose`` or a list of transforms) before its first intensity normalisation.

    Without one (a model that normalises its own input), every transform is raw and the normalisation is empty.
    """
    transforms = list(preprocessing.transforms if isinstance(preprocessing, Compose) else preprocessing)
    for i, t in enumerate(transforms):
        if _name(t) in NORMALISING:
            return PreprocessingSplit(Compose(transforms[:i]), Compose(transforms[i:]), type(t).__name__)
    names = [type(t).__name__ for t in transforms]
    logger.info("the preprocessing %s normalises no intensity; corruptions are applied after all of it", names)
    return PreprocessingSplit(Compose(transforms), Compose([]), None)
