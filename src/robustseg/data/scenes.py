"""Offline 2-D scenes in Pascal VOC's exact layout, built from the photographs scikit-image's wheel ships.

Nothing downloads: textures, colours and the horse silhouette come from ``skimage.data`` (grass, brick, text,
checkerboard, gravel, the horse; astronaut, coffee, chelsea, rocket, hubble, immunohistochemistry, retina for
backgrounds and colours). Each scene has a textured photographic background and 2-4 objects of the six classes of
:data:`robustseg.data.natural.SCENE_CLASSES`, each class a shape with its own texture:

======  =========================  ==========================================
class   shape                      texture (grey, then tinted)
======  =========================  ==========================================
horse   the skimage horse          grass
disc    ellipse                    brick
box     rotated rectangle          text (a scanned page)
star    five-pointed star          stripes of random frequency and direction
ring    annulus                    checkerboard
blob    smooth random blob         gravel
======  =========================  ==========================================

What makes the scenes not trivially easy:

* colour carries no class: every object is tinted between two colours picked from real photographs, and the
  background is a hue-rotated photograph, so a per-pixel colour classifier stays near "everything is background";
* objects occlude each other (painted in random order), leave the frame, vary in size, angle and mirroring;
* shading (a smooth illumination gradient), sensor noise and JPEG compression (quality 90, as VOC's photographs);
* a VOC-style void band (255) at every object boundary, where the anti-aliased edge makes the class ambiguous.

Scene ``k`` of seed ``s`` draws from ``numpy.random.default_rng([s, k])``: it is the same whatever the number of
scenes. :func:`write_scenes` writes ``JPEGImages/``, palette PNGs in ``SegmentationClass/`` and
``ImageSets/Segmentation/{train,val,trainval}.txt``, so the real Pascal VOC reader path reads them
(``robustseg datalist --root ROOT --dataset scenes``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from robustseg.data.natural import SCENE_CLASSES, get_dataset
from robustseg.data.png import write_label, write_rgb
from robustseg.progress import progress

__all__ = ["SceneConfig", "SceneGenerator", "write_scenes"]

_BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
_TEXTURES = {"horse": "grass", "disc": "brick", "box": "text", "ring": "checkerboard", "blob": "gravel"}
_TEXTURE_SCALE = {"grass": (0.25, 0.5), "brick": (0.3, 0.6), "text": (0.6, 1.0), "checkerboard": (0.5, 1.0),
                  "gravel": (0.15, 0.3)}  # fmt: skip
"""Share of the texture photograph's shorter side an object's texture is cut from: a few repeats per object."""


@dataclass(frozen=True)
class SceneConfig:
    """Settings of the scene generator.

    Args:
        size: height and width of a scene in pixels.
        objects: fewest and most objects per scene.
        object_size: smallest and largest object, as a fraction of ``size``.
        void_width: width of the void band at boundaries in pixels (VOC's is about 5 at 500 pixels).
        noise: standard deviation of the sensor noise, in [0, 1] intensity units.
        jpeg_quality: quality of the JPEG photographs.
        background_blur: range of the Gaussian blur of the background in pixels (a camera's depth of field).
    """

    size: int = 128
    objects: tuple[int, int] = (2, 4)
    object_size: tuple[float, float] = (0.35, 0.65)
    void_width: int = 2
    noise: float = 0.02
    jpeg_quality: int = 90
    background_blur: tuple[float, float] = (1.0, 2.5)

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"scenes need size >= 32 pixels but size is {self.size}.")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"objects must be (fewest >= 1, most >= fewest) but is {self.objects}.")
        if not 0.05 <= self.object_size[0] <= self.object_size[1] <= 1.0:
            raise ValueError(f"object_size must be fractions 0.05 <= low <= high <= 1 but is {self.object_size}.")


@functools.cache
def _sources() -> dict[str, np.ndarray]:
    """The photographs of ``skimage.data`` (float in [0, 1]; grey textures 2-D, colour photographs RGB)."""
    import skimage.data  # imported here: only the scene generator needs scikit-image

    out: dict[str, np.ndarray] = {}
    for name in (*_BACKGROUNDS, *set(_TEXTURES.values())):
        out[name] = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    out["horse"] = (~skimage.data.horse()).astype(np.float32)  # the silhouette is False on a True background
    return out


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float image (2-D or RGB) to ``(height, width)``."""
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array).resize(shape[::-1], Image.Resampling.BILINEAR))
    return np.stack([_resize(array[..., c], shape) for c in range(array.shape[2])], axis=-1)


def _crop(rng: np.random.Generator, source: np.ndarray, size: int, scale: tuple[float, float]) -> np.ndarray:
    """A random square crop of ``source`` covering ``scale`` of its shorter side, resized to ``size``."""
    side = int(min(source.shape[:2]) * rng.uniform(*scale))
    y = int(rng.integers(0, source.shape[0] - side + 1))
    x = int(rng.integers(0, source.shape[1] - side + 1))
    patch = source[y : y + side, x : x + side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return _resize(np.ascontiguousarray(patch), (size, size))


def _hue_rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    """Rotate the hue of an RGB image by ``angle`` radians about the grey axis (luminance kept)."""
    k = np.ones(3) / np.sqrt(3.0)
    c, s = np.cos(angle), np.sin(angle)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = c * np.eye(3) + s * cross + (1 - c) * np.outer(k, k)  # Rodrigues' rotation about (1, 1, 1)
    return np.clip(rgb @ rot.T, 0.0, 1.0)


class SceneGenerator:
    """Draws scenes: ``image`` (H, W, 3) uint8 and ``label`` (H, W) uint8 (class index, 255 void).

    Args:
        config: the generator's settings.
        seed: base seed; scene ``k`` draws from ``default_rng([seed, k])``.
    """

    def __init__(self, config: SceneConfig | None = None, seed: int = 0) -> None:
        self.config = config or SceneConfig()
        self.seed = seed
        self.classes = SCENE_CLASSES

    def _colour(self, rng: np.random.Generator) -> np.ndarray:
        """A colour picked from a pixel of a real photograph."""
        photo = _sources()[_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]]
        y, x = int(rng.integers(photo.shape[0])), int(rng.integers(photo.shape[1]))
        return photo[y, x].astype(np.float32)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        n = self.config.size
        photo = _sources()[_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]]
        rgb = _crop(rng, photo, n, (0.3, 1.0))
        sigma = float(rng.uniform(*self.config.background_blur))  # depth of field: the background is out of focus
        rgb = ndimage.gaussian_filter(rgb, sigma=(sigma, sigma, 0)) if sigma > 0 else rgb
        return _hue_rotate(rgb, float(rng.uniform(0, 2 * np.pi)))

    def _texture(self, rng: np.random.Generator, name: str, n: int) -> np.ndarray:
        """A grey texture ``(n, n)`` in [0, 1], contrast-stretched, of class ``name``."""
        if name == "star":
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            theta = rng.uniform(0, np.pi)
            period = rng.uniform(5.0, 9.0)
            tex = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        else:
            source = _TEXTURES[name]
            tex = _crop(rng, _sources()[source], n, _TEXTURE_SCALE[source])
        lo, hi = np.percentile(tex, (2, 98))
        return np.clip((tex - lo) / max(hi - lo, 1e-3), 0.0, 1.0).astype(np.float32)

    def _shape(self, rng: np.random.Generator, name: str, side: int) -> np.ndarray:
        """A float mask ``(side, side)`` of the class's shape, at a random angle, anti-aliased."""
        big = 2 * side  # drawn at twice the size, then averaged down: soft, natural edges
        yy, xx = (np.mgrid[0:big, 0:big].astype(np.float32) + 0.5) / big * 2 - 1  # [-1, 1]
        angle = rng.uniform(0, 2 * np.pi)
        ca, sa = np.cos(angle), np.sin(angle)
        u, v = ca * xx + sa * yy, -sa * xx + ca * yy
        if name == "horse":
            mask = _resize(_sources()["horse"], (big, big)) > 0.5
            mask = ndimage.rotate(mask.astype(np.float32), np.degrees(angle) % 60 - 30, reshape=False, order=1) > 0.5
            if rng.random() < 0.5:
                mask = mask[:, ::-1]
        elif name == "disc":
            a, b = rng.uniform(0.6, 0.95), rng.uniform(0.45, 0.95)
            mask = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        elif name == "box":
            a, b = rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.65)
            mask = (np.abs(u) <= a) & (np.abs(v) <= b)
        elif name == "star":
            r = np.hypot(u, v)
            phi = np.arctan2(v, u)
            inner = rng.uniform(0.35, 0.5)
            edge = inner + (0.95 - inner) * np.abs(np.cos(2.5 * phi)) ** 3
            mask = r <= edge
        elif name == "ring":
            r = np.hypot(u / rng.uniform(0.8, 1.0), v)
            outer = rng.uniform(0.75, 0.95)
            mask = (r <= outer) & (r >= outer * rng.uniform(0.45, 0.65))
        else:  # blob: a smoothed random field thresholded inside a soft disc
            field = ndimage.gaussian_filter(rng.standard_normal((big, big)).astype(np.float32), big / 8)
            field = field / (field.std() + 1e-6) - 2.2 * (xx**2 + yy**2)
            mask = field > -0.6
            labelled, count = ndimage.label(mask)
            if count > 1:  # keep the largest piece: one blob per object
                sizes = ndimage.sum(mask, labelled, index=range(1, count + 1))
                mask = labelled == (int(np.argmax(sizes)) + 1)
        return mask.reshape(side, 2, side, 2).mean(axis=(1, 3)).astype(np.float32)

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene ``index``: ``(image uint8 (H, W, 3), label uint8 (H, W))``."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, index])
        n = cfg.size
        image = self._background(rng)
        label = np.zeros((n, n), dtype=np.uint8)
        count = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
        for _ in range(count):
            cls = int(rng.integers(1, len(self.classes)))
            name = self.classes[cls]
            side = max(8, int(n * rng.uniform(*cfg.object_size)))
            alpha = self._shape(rng, name, side)
            tex = self._texture(rng, name, side)
            low, high = self._colour(rng), self._colour(rng)
            if np.abs(high - low).sum() < 0.3:  # a texture needs contrast to be seen
                high = np.clip(1.0 - low, 0.0, 1.0)
            colour = low + (high - low) * tex[..., None]
            y0 = int(rng.integers(-side // 4, n - 3 * side // 4))
            x0 = int(rng.integers(-side // 4, n - 3 * side // 4))
            ys, xs = slice(max(y0, 0), min(y0 + side, n)), slice(max(x0, 0), min(x0 + side, n))
            sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
            a = alpha[sub][..., None]
            image[ys, xs] = image[ys, xs] * (1 - a) + colour[sub] * a
            label[ys, xs][alpha[sub] >= 0.5] = cls
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
        gx, gy = rng.uniform(-0.25, 0.25, size=2)
        shade = 1.0 + gx * (xx - 0.5) + gy * (yy - 0.5)  # a smooth illumination gradient
        image = image * shade[..., None] * rng.uniform(0.85, 1.15)
        image = image + rng.normal(0.0, cfg.noise, size=image.shape)
        if cfg.void_width > 0:
            k = cfg.void_width + 1
            band = ndimage.maximum_filter(label, size=k) != ndimage.minimum_filter(label, size=k)
            label[band] = 255
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), label


def write_scenes(
    root: str | Path,
    num_train: int = 240,
    num_val: int = 60,
    config: SceneConfig | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``num_train + num_val`` scenes in Pascal VOC's layout under ``root``; returns a summary.

    ``root`` gets ``JPEGImages/scene_NNNNN.jpg``, ``SegmentationClass/scene_NNNNN.png`` (palette PNGs in VOC's
    colours), ``ImageSets/Segmentation/{train,val,trainval}.txt`` and ``scenes.json`` (the settings). Scenes are
    numbered train first; scene ``k`` is the same whatever the counts.

    Raises:
        FileExistsError: ``root`` already holds scenes and ``overwrite`` is false.
        ValueError: a count below 1.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"scenes need num_train >= 1 and num_val >= 1 but got {num_train} and {num_val}.")
    cfg = config or SceneConfig()
    root = Path(root)
    settings = root / "scenes.json"
    if settings.exists() and not overwrite:
        raise FileExistsError(
            f"{root} already holds scenes ({settings}); pass overwrite (--overwrite) to replace them."
        )
    generator = SceneGenerator(cfg, seed)
    dataset = get_dataset("scenes")
    ids = [f"scene_{k:05d}" for k in range(num_train + num_val)]
    for k, case_id in enumerate(progress(ids, desc="writing scenes", unit="scene")):
        image, label = generator.scene(k)
        write_rgb(root / "JPEGImages" / f"{case_id}.jpg", image, quality=cfg.jpeg_quality)
        write_label(root / "SegmentationClass" / f"{case_id}.png", label, dataset)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in ids[:num_train]))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in ids[num_train:]))
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in ids))
    summary = {"root": str(root), "seed": seed, "train": num_train, "val": num_val, "config": asdict(cfg)}
    summary["classes"] = list(dataset.class_names)
    settings.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
