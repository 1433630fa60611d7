"""Reading and writing the image and label files of 2-D datasets with Pillow.

Labels of Pascal VOC, Cityscapes and Pascal-Context are index images: each pixel value *is* a class id (a ``P``-mode
palette PNG, or a grey ``L`` PNG). A label converted to RGB keeps only colours, so the ids are lost;
:func:`read_label` says so instead of guessing ids from colours. :func:`write_label` writes a class map as a palette
PNG in a dataset's colours, the way VOC ships its labels, so any image viewer shows the classes and
:func:`read_label` gets the indices back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustseg.data.natural import IGNORE_INDEX, NaturalDataset, voc_colormap

__all__ = [
    "INDEX_MODES",
    "LabelFileError",
    "Palette",
    "full_palette",
    "palette_mapping",
    "read_image",
    "read_label",
    "scaled_rgb",
    "write_label",
    "write_rgb",
]

Palette = NaturalDataset | Mapping[int, Sequence[int]] | Sequence[Sequence[int]]
"""A dataset, or the RGB colour (0..255) of each class value as a mapping (JSON keys may be text) or a list."""

INDEX_MODES: tuple[str, ...] = ("P", "L", "I;16", "I")
"""Pillow modes whose pixel values are class ids (palette, 8-bit grey, 16/32-bit grey)."""


class LabelFileError(ValueError):
    """A 2-D image or label file that cannot be used: the path and the reason (with the fix)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _open(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise LabelFileError(path, f"the {what} does not exist")
    try:
        img = Image.open(path)
        img.load()  # decode fully: a truncated file fails here, not at training time
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError ... for bad files
        raise LabelFileError(
            path, f"cannot be read as an image ({type(e).__name__}: {e}); it is corrupt or truncated: re-extract it"
        ) from e
    return img


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image ``(H, W, 3)`` uint8 (grey and palette photographs are converted to RGB)."""
    img = _open(Path(path), "image")
    return np.asarray(img.convert("RGB"))


def read_label(path: str | Path, rgb_hint: str = "") -> np.ndarray:
    """The stored values ``(H, W)`` of an index label file; raises :class:`LabelFileError` for colour labels.

    Args:
        path: the label file.
        rgb_hint: where the right files come from, appended to the error for an RGB label.
    """
    path = Path(path)
    img = _open(path, "label")
    if img.mode not in INDEX_MODES:
        raise LabelFileError(
            path,
            f"is a {img.mode} colour image, but labels must be index images (palette or grey PNG) whose pixel values "
            "are class ids; converting a palette PNG to colour loses the ids, and they cannot be recovered safely. "
            f"Use the dataset's original label files{': ' + rgb_hint if rgb_hint else ''}",
        )
    return np.asarray(img)


def full_palette(palette: Palette | None) -> list[int]:
    """The 768 values of a ``P``-mode PNG's palette: the colours given, Pascal VOC's for the values they leave out.

    ``None`` gives VOC's palette (255, the void value, in cream), which tells classes apart in any viewer.
    """
    if isinstance(palette, NaturalDataset):
        return palette.full_palette()
    colours = [tuple(c) for c in voc_colormap(256)]
    given = palette.items() if isinstance(palette, Mapping) else enumerate(palette or [])
    for value, rgb in given:
        index = int(value)
        if not 0 <= index <= IGNORE_INDEX or len(rgb) != 3:
            raise ValueError(f"a palette entry maps a value in 0..255 to (R, G, B) but got {value!r}: {rgb!r}.")
        colours[index] = tuple(int(v) for v in rgb)
    return [v for rgb in colours for v in rgb]


def palette_mapping(palette: Mapping[Any, Sequence[Any]] | None) -> dict[int, list[int]] | None:
    """A palette read from a config (JSON keys are text) as ``{class value: [R, G, B]}`` of ints; ``None`` if empty."""
    return {int(k): [int(v) for v in rgb] for k, rgb in palette.items()} if palette else None


def write_label(path: str | Path, class_map: np.ndarray, dataset: Palette | None) -> Path:
    """Write a class map ``(H, W)`` (values < 256) as a palette PNG in ``dataset``'s colours (see
    :func:`full_palette`); returns the path."""
    array = np.asarray(class_map)
    if array.ndim != 2:
        raise ValueError(f"a label PNG holds a 2-D class map, got shape {array.shape}.")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"a palette PNG holds values 0..255, got {array.min()}..{array.max()}.")
    img = Image.fromarray(array.astype(np.uint8))
    img.putpalette(full_palette(dataset))  # an L image with a palette becomes a P image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=False)
    return path


def write_rgb(path: str | Path, image: np.ndarray, quality: int | None = None) -> Path:
    """Write an RGB image ``(H, W, 3)`` (uint8, or float in [0, 1]) as PNG or, by suffix, JPEG at ``quality``."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"an RGB image is (H, W, 3), got shape {array.shape}.")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if quality is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, quality=quality)
    else:
        Image.fromarray(array).save(path)
    return path


def scaled_rgb(image: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """An image ``(3, H, W)`` as ``(H, W, 3)`` floats in [0, 1] for :func:`write_rgb`: ``(x - low) / (high - low)``,
    clipped; without both bounds, the image's own minimum and maximum."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"an RGB image is (3, H, W) here, got shape {array.shape}.")
    if low is None or high is None:
        low, high = float(array.min()), float(array.max())
    span = max(float(high) - float(low), 1e-12)
    return np.clip((array - float(low)) / span, 0.0, 1.0).transpose(1, 2, 0)
