"""BraTS-like phantom gliomas on real brain anatomy (MNI152 2009 templates shipped with nilearn).

Every case is one synthetic glioma -- necrotic core, enhancing rim, surrounding oedema -- placed in the white matter
of the MNI152 ICBM 2009 template, imaged in four MR series (T1, T1c, T2, FLAIR) and written in the BraTS 2023 layout
(:data:`robustseg.data.layouts.LAYOUTS` ``["brats2023"]``).

Intensity model, per voxel ``x`` and modality ``m``::

    S_m(x) = gain_m * scale_m * Rician( bias_m(x) * sum_k f_k(x) * I_km * (1 + t_km(x)),  sigma_m )

* ``f_k`` are partial-volume fractions of the tissues ``k`` in :data:`TISSUES` (summing to 1 in the brain):
  white matter, grey matter and CSF come from the template probability maps (CSF = brain mask - WM - GM), the
  tumour classes from soft (one-voxel ramp) nested shells. The tumour replaces healthy tissue; oedema replaces WM/GM
  but not CSF (it is tissue water, so it does not enter sulci and ventricles). A small share of the CSF is
  "enhancing vessel" (cortical veins, choroid plexus), bright on T1c only, and a random share of the white matter,
  mostly periventricular, has white-matter hyperintensities (``wmh``: small-vessel disease, bright on T2 and FLAIR),
  so that no single-modality threshold finds the tumour.
* ``I_km`` is :data:`TISSUE_CONTRAST` (WM on T1 = 1) with a random per-case jitter; it follows MR physics:
  T1 WM > GM > CSF; T2 CSF > GM > WM; FLAIR CSF suppressed, GM a bit brighter than WM, oedema bright;
  T1c as T1 with a very bright enhancing rim and a dark necrotic core.
* ``t_km`` is a smooth random texture inside the tumour (heterogeneous necrosis and enhancement).
* ``bias_m`` is a smooth multiplicative field ``exp(p(x))``, ``p`` a random cubic polynomial scaled so that
  ``max |p|`` over the brain is the case's bias amplitude (default 0.15-0.25).
* ``Rician`` is the magnitude of the signal plus complex Gaussian noise of standard deviation
  ``sigma_m = noise * I_WM,m`` (default noise 2-5 % of the white-matter intensity).
* ``gain_m`` (default 0.7-1.4) times a fixed per-modality scanner scale: arbitrary units, so a model must normalise.

Outside the brain mask the images are exactly zero (skull-stripped like BraTS), so
``NormalizeIntensityd(nonzero=True)`` works. Case ``k`` of base seed ``s`` draws from
``numpy.random.default_rng([s, k])``: it is the same whatever the number of cases.

Example::

    >>> from robustseg.data.phantom import PhantomConfig, generate_case, make_phantom_dataset
    >>> case = generate_case(0, seed=0, config=PhantomConfig(spacing=4.0))
    >>> case["image"].shape, case["label"].dtype   # (4, X, Y, Z) T1, T1c, T2, FLAIR
    >>> make_phantom_dataset("data/phantoms", num_cases=60)   # -> data/phantoms/datalist.json
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from robustseg.data.datalist import write_datalist
from robustseg.data.layouts import MODALITIES, get_layout
from robustseg.progress import progress as progress_bar

__all__ = [
    "TISSUES",
    "TISSUE_CONTRAST",
    "MNI152Anatomy",
    "PhantomConfig",
    "blob_case",
    "case_id",
    "generate_case",
    "make_phantom_dataset",
    "mni152_anatomy",
    "write_case",
]

LAYOUT = "brats2023"

TISSUES: tuple[str, ...] = ("wm", "gm", "csf", "vessel", "wmh", "necrosis", "oedema", "enhancing")
"""Tissue classes of the intensity model; the last three are the tumour (labels 1, 2, 3)."""

TISSUE_CONTRAST: dict[str, tuple[float, float, float, float]] = {
    #              T1    T1c   T2    FLAIR
    "wm": (1.00, 1.00, 0.55, 0.70),
    "gm": (0.72, 0.74, 0.75, 0.88),
    "csf": (0.28, 0.30, 1.60, 0.15),
    "vessel": (0.62, 1.40, 0.70, 0.60),
    "wmh": (0.85, 0.86, 0.95, 1.15),
    "necrosis": (0.36, 0.40, 1.40, 0.75),
    "oedema": (0.80, 0.82, 1.15, 1.25),
    "enhancing": (0.72, 1.65, 0.95, 0.75),
}
"""Mean signal of each pure tissue in (T1, T1c, T2, FLAIR), relative to white matter on T1."""

_SCANNER_SCALE = np.array([700.0, 800.0, 1200.0, 500.0])  # arbitrary units per modality, before the random gain
_TEXTURE = {"necrosis": 0.12, "oedema": 0.06, "enhancing": 0.10}  # std of the multiplicative tumour texture
_LABEL = {"necrosis": 1, "oedema": 2, "enhancing": 3}


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the phantom generator; lengths in mm, ranges are ``(low, high)`` of uniform draws.

    Attributes:
        spacing: isotropic voxel size of the output; the 2 mm templates are resampled for other values.
        wt_diameter_mm: nominal whole-tumour diameter (before the irregular shape and the ellipsoid stretch).
        rim_thickness_mm: enhancing rim thickness; never thinner than ``min_rim_voxels`` voxels.
        min_rim_voxels: lower bound of the rim thickness in voxels (2 keeps the rim learnable at 2 mm).
        oedema_margin_mm: how far the oedema reaches beyond the rim, varying with direction.
        irregularity: amplitude range of the random radial perturbation of the tumour-core surface.
        elongation: standard deviation of the log semi-axes of the ellipsoid.
        centre_min_wm: the tumour centre is drawn from voxels with at least this WM probability.
        centre_min_z_mm: and above this MNI z (supratentorial).
        max_core_csf: accepted share of CSF-dominated voxels in the tumour core (retries shrink the tumour).
        bias_amplitude: range of ``max |log bias|`` over the brain, per modality.
        noise: range of the Rician noise sigma as a fraction of the white-matter intensity, per modality.
        gain: range of the global per-modality intensity gain.
        contrast_jitter: standard deviation of the per-case log jitter of the tumour intensities.
        healthy_jitter: same for the healthy tissues.
        vessel_fraction: approximate share of CSF voxels with enhancing vessels on T1c.
        wmh_burden: range of the share of white-matter voxels with white-matter hyperintensities.
    """

    spacing: float = 2.0
    wt_diameter_mm: tuple[float, float] = (30.0, 70.0)
    rim_thickness_mm: tuple[float, float] = (4.0, 8.0)
    min_rim_voxels: float = 2.0
    oedema_margin_mm: tuple[float, float] = (3.0, 10.0)
    irregularity: tuple[float, float] = (0.1, 0.25)
    elongation: float = 0.15
    centre_min_wm: float = 0.9
    centre_min_z_mm: float = -5.0
    max_core_csf: float = 0.08
    bias_amplitude: tuple[float, float] = (0.15, 0.25)
    noise: tuple[float, float] = (0.02, 0.05)
    gain: tuple[float, float] = (0.7, 1.4)
    contrast_jitter: float = 0.08
    healthy_jitter: float = 0.03
    vessel_fraction: float = 0.08
    wmh_burden: tuple[float, float] = (0.0, 0.05)

    def __post_init__(self) -> None:
        if not 1.0 <= self.spacing <= 8.0:
            raise ValueError(f"spacing must be in [1, 8] mm but is {self.spacing}.")
        for name in ("wt_diameter_mm", "rim_thickness_mm", "oedema_margin_mm", "irregularity", "bias_amplitude"):
            _check_range(name, getattr(self, name))
        for name in ("noise", "gain", "wmh_burden"):
            _check_range(name, getattr(self, name))
        if self.irregularity[1] >= 0.4:
            raise ValueError(f"irregularity must stay below 0.4 but is {self.irregularity}.")
        if not 0.0 < self.vessel_fraction < 0.5:
            raise ValueError(f"vessel_fraction must be in (0, 0.5) but is {self.vessel_fraction}.")
        if self.min_rim_voxels < 1.0:
            raise ValueError(f"min_rim_voxels must be at least 1 but is {self.min_rim_voxels}.")


def _check_range(name: str, value: Sequence[float]) -> None:
    if len(value) != 2 or not 0 <= value[0] <= value[1]:
        raise ValueError(f"{name} must be a (low, high) pair with 0 <= low <= high but is {tuple(value)}.")


def case_id(index: int) -> str:
    """BraTS 2023 style id of phantom case ``index``: ``BraTS-GLI-PH007-000``."""
    return f"BraTS-GLI-PH{index:03d}-000"


# --------------------------------------------------------------------------------------------------------- anatomy


@dataclass(frozen=True, eq=False)
class MNI152Anatomy:
    """Healthy anatomy at one spacing; per-voxel arrays list the brain-mask voxels in C order.

    Attributes:
        spacing: isotropic voxel size in mm.
        affine: voxel -> MNI mm.
        mask: brain mask ``(X, Y, Z)`` bool.
        coords: ``(N, 3)`` MNI mm of the brain voxels.
        tissue: ``(N, 3)`` partial volumes of WM, GM, CSF, summing to 1.
        depth: ``(N,)`` distance in mm to the outside of the brain mask.
        ventricle_distance: ``(N,)`` distance in mm to the ventricles (CSF > 0.5 deeper than 20 mm).
        bias_basis: ``(N, 19)`` monomials of degree 1-3 of the normalised coordinates.
    """

    spacing: float
    affine: np.ndarray
    mask: np.ndarray
    coords: np.ndarray
    tissue: np.ndarray
    depth: np.ndarray
    ventricle_distance: np.ndarray
    bias_basis: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.mask.shape)  # type: ignore[return-value]

    def volume(self, values: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """Scatter per-brain-voxel values ``(N,)`` or ``(N, C)`` into zero volumes ``(X, Y, Z)`` or ``(C, X, Y, Z)``."""
        if values.ndim == 1:
            out = np.zeros(self.shape, dtype=dtype)
            out[self.mask] = values
            return out
        out = np.zeros((values.shape[1], *self.shape), dtype=dtype)
        out[:, self.mask] = values.T
        return out

    def probability_maps(self) -> dict[str, np.ndarray]:
        """Full-volume partial-volume maps ``{"wm", "gm", "csf"}`` (zero outside the brain)."""
        return {name: self.volume(self.tissue[:, i]) for i, name in enumerate(("wm", "gm", "csf"))}


def _resample(volume: np.ndarray, factor: float) -> np.ndarray:
    """Trilinear resampling to ``factor`` times the voxel size, keeping voxel 0 in place (anti-aliased when coarser)."""
    if factor > 1:
        volume = ndimage.gaussian_filter(volume, sigma=np.sqrt(factor**2 - 1) / 2)
    shape = tuple(int(np.floor((n - 1) / factor)) + 1 for n in volume.shape)
    return ndimage.affine_transform(volume, np.full(3, factor), output_shape=shape, order=1, mode="nearest")


@functools.lru_cache(maxsize=4)
def mni152_anatomy(spacing: float = 2.0) -> MNI152Anatomy:
    """WM / GM / CSF partial volumes and brain mask of the MNI152 2009 templates at ``spacing`` mm (cached).

    The brain mask is the (skull-stripped) T1 template above 10 % of its 99th percentile, united with GM + WM > 0.5,
    holes filled, largest connected component kept. CSF = mask - WM - GM, clipped to [0, 1].
    """
    from nilearn import datasets  # slow import, only when needed

    resolution = 1 if spacing < 2 else 2
    images = [
        datasets.load_mni152_template(resolution=resolution),
        datasets.load_mni152_gm_template(resolution=resolution),
        datasets.load_mni152_wm_template(resolution=resolution),
    ]
    t1, gm, wm = (np.asarray(im.get_fdata(), dtype=np.float32) for im in images)
    affine = np.asarray(images[0].affine, dtype=np.float64)
    factor = spacing / resolution
    if not np.isclose(factor, 1.0):
        t1, gm, wm = (_resample(v, factor) for v in (t1, gm, wm))
        affine = affine @ np.diag([factor, factor, factor, 1.0])
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    mask = (t1 > 0.1 * np.percentile(t1[t1 > 0], 99)) | (gm + wm > 0.5)
    mask = ndimage.binary_fill_holes(mask)
    components, n = ndimage.label(mask)
    if n > 1:
        mask = components == (np.argmax(np.bincount(components.ravel())[1:]) + 1)
    total = np.maximum(gm + wm, 1.0)
    wm_v, gm_v = wm[mask] / total[mask], gm[mask] / total[mask]
    tissue = np.stack([wm_v, gm_v, 1.0 - wm_v - gm_v], axis=1).astype(np.float32)
    ijk = np.argwhere(mask)
    coords = (ijk * factor * resolution + affine[:3, 3]).astype(np.float32)
    depth_volume = ndimage.distance_transform_edt(mask, sampling=spacing)
    depth = depth_volume[mask].astype(np.float32)
    ventricles = np.zeros(mask.shape, bool)
    ventricles[mask] = (tissue[:, 2] > 0.5) & (depth > 20.0)
    ventricle_distance = ndimage.distance_transform_edt(~ventricles, sampling=spacing)[mask].astype(np.float32)
    centred = (coords - coords.mean(0)) / np.abs(coords - coords.mean(0)).max(0)
    powers = [(i, j, k) for i in range(4) for j in range(4) for k in range(4) if 1 <= i + j + k <= 3]
    basis = np.stack([centred[:, 0] ** i * centred[:, 1] ** j * centred[:, 2] ** k for i, j, k in powers], axis=1)
    arrays = [affine, mask, coords, tissue, depth, ventricle_distance, basis.astype(np.float32)]
    for a in arrays:
        a.flags.writeable = False
    return MNI152Anatomy(float(spacing), *arrays)


# ---------------------------------------------------------------------------------------------------------- tumour


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _sphere_field(rng: np.random.Generator, terms: int = 8, freq: tuple[float, float] = (1.0, 3.5)) -> Any:
    """A smooth random function on the unit sphere with standard deviation about 1, clipped to [-2, 2]."""
    w = _unit(rng.standard_normal((terms, 3))) * rng.uniform(*freq, size=(terms, 1))
    phase = rng.uniform(0, 2 * np.pi, size=terms)

    def field(u: np.ndarray) -> np.ndarray:
        return np.clip(np.cos(u @ w.T + phase).sum(axis=1) / np.sqrt(terms / 2), -2.0, 2.0)

    return field


def _fibonacci_sphere(n: int = 400) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


class _TumourShape:
    """Nested star-shaped surfaces in the frame of a random ellipsoid; radii ``rho(u)`` are in normalised units.

    A point ``d`` (mm from the centre) has normalised coordinates ``q = R^T d / axes``; ``r = |q|``, ``u = q / r``.
    ``s(u) = |axes * u|`` converts normalised radial lengths to mm. The core surface is ``R_tc (1 + a g(u))``; the
    necrosis surface lies a rim thickness (mm) inside it, the oedema surface an oedema margin (mm) outside it.
    """

    def __init__(self, rng: np.random.Generator, config: PhantomConfig) -> None:
        sp = config.spacing
        q, r = np.linalg.qr(rng.standard_normal((3, 3)))
        self.rotation = q * np.sign(np.diag(r))
        axes = np.exp(config.elongation * rng.standard_normal(3))
        self.axes = axes / np.prod(axes) ** (1 / 3)
        self.core_shape = _sphere_field(rng, terms=10, freq=(1.0, 4.0))
        self.rim_shape = _sphere_field(rng, terms=8, freq=(1.5, 5.0))
        self.margin_shape = _sphere_field(rng, terms=12, freq=(2.0, 6.0))
        self.irregularity = rng.uniform(*config.irregularity)
        rim_low = max(config.rim_thickness_mm[0], config.min_rim_voxels * sp)
        self.rim_range = (rim_low, max(config.rim_thickness_mm[1], rim_low))
        self.rim = rng.uniform(*self.rim_range)
        margin_low = max(config.oedema_margin_mm[0], sp)
        self.margin_range = (margin_low, max(config.oedema_margin_mm[1], margin_low))
        self.margin = rng.uniform(*self.margin_range)
        diameter = rng.uniform(*config.wt_diameter_mm)
        # smallest core radius that leaves a necrosis radius of at least half a voxel in every direction and of
        # max(4 mm, 1.5 voxels) in half of the directions
        u = _fibonacci_sphere()
        rim = np.clip(self.rim * (1 + 0.4 * self.rim_shape(u)), *self.rim_range)
        core = (1 + self.irregularity * self.core_shape(u)) * self.stretch(u)
        self.min_core = max(float(((0.5 * sp + rim) / core).max()), float(np.median((max(4.0, 1.5 * sp) + rim) / core)))
        self.r_core = max(diameter / 2 - self.margin, self.min_core)

    def stretch(self, u: np.ndarray) -> np.ndarray:
        return np.linalg.norm(u * self.axes, axis=1)

    def radii(self, u: np.ndarray, spread: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised radii of the necrosis, core and whole-tumour surfaces along directions ``u``.

        ``spread`` (0.5-1.5) scales the oedema margin: oedema reaches further in white matter than in grey matter.
        """
        s = self.stretch(u)
        core = self.r_core * (1 + self.irregularity * self.core_shape(u))
        rim = np.clip(self.rim * (1 + 0.4 * self.rim_shape(u)), *self.rim_range)
        margin = np.clip(self.margin * spread * (1 + 0.5 * self.margin_shape(u)), *self.margin_range)
        return core - rim / s, core, core + margin / s

    def extent_mm(self) -> tuple[float, float]:
        """Largest distance from the centre (mm) of the core and of the whole-tumour surface."""
        u = _fibonacci_sphere()
        s = self.stretch(u)
        _, core, whole = self.radii(u, spread=1.5)
        return float((core * s).max()), float((whole * s).max())

    def _polar(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = (d @ self.rotation) / self.axes
        r = np.linalg.norm(q, axis=1)
        u = q / np.maximum(r, 1e-6)[:, None]
        u[r < 1e-6] = (1.0, 0.0, 0.0)
        return r, u, self.stretch(u)

    def memberships(self, d: np.ndarray, spacing: float, wm: np.ndarray) -> np.ndarray:
        """Soft memberships ``(M, 3)`` of necrosis, core, whole tumour at offsets ``d`` (mm): a one-voxel ramp.

        ``wm`` is the white-matter partial volume of each point; it steers the oedema along the white matter.
        """
        r, u, s = self._polar(d)
        rho = np.stack(self.radii(u, spread=0.5 + wm), axis=1)
        return np.clip(0.5 + (rho - r[:, None]) * s[:, None] / spacing, 0.0, 1.0)

    def in_core(self, d: np.ndarray) -> np.ndarray:
        """Whether offsets ``d`` (mm) lie inside the tumour core surface."""
        r, u, _ = self._polar(d)
        return r <= self.r_core * (1 + self.irregularity * self.core_shape(u))

    def shrink(self, factor: float) -> bool:
        """Scale the core radius down by ``factor`` (not below the necrosis bound); False when it cannot shrink."""
        r_core = max(self.r_core * factor, self.min_core)
        shrunk = r_core < self.r_core
        self.r_core = r_core
        return shrunk


def _place_tumour(
    rng: np.random.Generator, anatomy: MNI152Anatomy, config: PhantomConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw a tumour and its centre; return the brain-voxel indices it touches, their memberships and its parameters.

    The centre is drawn among WM voxels (``tissue_wm >= centre_min_wm``, above ``centre_min_z_mm``) deep enough for
    the whole core to lie inside the brain (the deepest 5 % when none is deep enough and the core cannot shrink);
    when the core would fill CSF (ventricles, sulci) beyond ``max_core_csf``, it shrinks and a new centre is drawn
    (at most 20 draws; the one with least CSF wins). The oedema is clipped by the brain mask.
    """
    shape = _TumourShape(rng, config)
    candidates = (anatomy.tissue[:, 0] >= config.centre_min_wm) & (anatomy.coords[:, 2] >= config.centre_min_z_mm)
    if not candidates.any():
        raise ValueError(f"no brain voxel has WM >= {config.centre_min_wm} above z = {config.centre_min_z_mm} mm.")
    deepest = candidates & (anatomy.depth >= np.quantile(anatomy.depth[candidates], 0.95))
    best: tuple[float, np.ndarray, float] | None = None
    for _attempt in range(20):
        core_extent, _ = shape.extent_mm()
        deep = np.flatnonzero(candidates & (anatomy.depth >= core_extent + config.spacing))
        if deep.size == 0 and shape.shrink(0.93):
            continue
        centre = anatomy.coords[rng.choice(deep if deep.size else np.flatnonzero(deepest))]
        inner = np.flatnonzero(np.linalg.norm(anatomy.coords - centre, axis=1) <= core_extent + config.spacing)
        core = inner[shape.in_core(anatomy.coords[inner] - centre)]
        csf_share = float((anatomy.tissue[core, 2] > 0.5).mean()) if core.size else 1.0
        if best is None or csf_share < best[0]:
            best = (csf_share, centre, shape.r_core)
        if csf_share <= config.max_core_csf:
            break
        shape.shrink(0.97)
    if best is None:
        raise ValueError(f"could not place a tumour at spacing {config.spacing} mm; lower wt_diameter_mm.")
    csf_share, centre, shape.r_core = best
    core_extent, whole_extent = shape.extent_mm()
    near = np.flatnonzero(np.linalg.norm(anatomy.coords - centre, axis=1) <= whole_extent + config.spacing)
    m = shape.memberships(anatomy.coords[near] - centre, config.spacing, anatomy.tissue[near, 0])
    params = {
        "centre_mm": [round(float(c), 2) for c in centre],
        "core_radius_mm": round(shape.r_core, 2),
        "rim_mm": round(shape.rim, 2),
        "oedema_margin_mm": round(shape.margin, 2),
        "core_extent_mm": round(core_extent, 2),
        "core_csf_share": round(csf_share, 4),
    }
    return near, m, params


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise, standardised to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


# ------------------------------------------------------------------------------------------------------------ case


def generate_case(index: int, seed: int = 0, config: PhantomConfig | None = None) -> dict[str, Any]:
    """Generate phantom case ``index`` of base seed ``seed`` in memory (see the module docstring for the model).

    Args:
        index: case number (>= 0); with ``seed`` it fixes the random stream ``default_rng([seed, index])``.
        seed: base seed (>= 0).
        config: generator parameters (default :class:`PhantomConfig`).

    Returns:
        ``{"case_id", "image": (4, X, Y, Z) float32 in (T1, T1c, T2, FLAIR) order, "label": (X, Y, Z) uint8 with
        0 background, 1 necrotic core, 2 oedema, 3 enhancing, "affine": (4, 4) voxel -> MNI mm, "params": dict}``.
    """
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative but are {index} and {seed}.")
    config = config or PhantomConfig()
    anatomy = mni152_anatomy(float(config.spacing))
    rng = np.random.default_rng([seed, index])
    n = anatomy.tissue.shape[0]

    near, m, params = _place_tumour(rng, anatomy, config)
    necrosis, core, whole = (np.zeros(n, np.float32) for _ in range(3))
    necrosis[near], core[near], whole[near] = m[:, 0], m[:, 1], m[:, 2]

    # the rim wraps the necrosis: necrosis next to a voxel outside the core (an oblique thin spot) becomes rim
    wrapped = ndimage.binary_erosion(anatomy.volume(core >= 0.5, dtype=bool))[anatomy.mask]
    necrosis = np.where(wrapped, necrosis, np.minimum(necrosis, 0.4))

    # partial-volume fractions of TISSUES, summing to 1 (see the module docstring)
    wm, gm, csf = anatomy.tissue.T
    vessel = np.zeros(n, np.float32)
    in_csf = csf > 0.2
    field = _smooth_noise(rng, anatomy.shape, sigma=max(2.0 / config.spacing, 0.5))[anatomy.mask][in_csf]
    vessel[in_csf] = np.clip((field - np.quantile(field, 1 - config.vessel_fraction)) / 0.5 + 0.5, 0, 1)
    wmh = np.zeros(n, np.float32)
    in_wm = wm > 0.5
    burden = rng.uniform(*config.wmh_burden)
    field = _smooth_noise(rng, anatomy.shape, sigma=max(3.0 / config.spacing, 0.5))[anatomy.mask][in_wm]
    field += 1.5 * np.exp(-anatomy.ventricle_distance[in_wm] / 10.0)  # mostly periventricular
    if burden > 0:
        wmh[in_wm] = np.clip((field - np.quantile(field, 1 - burden)) / 0.5 + 0.5, 0, 1)
    fractions = np.stack(
        [
            wm * (1 - whole) * (1 - wmh),
            gm * (1 - whole),
            csf * (1 - core) * (1 - vessel),
            csf * (1 - core) * vessel,
            wm * (1 - whole) * wmh,
            necrosis,
            (whole - core) * (1 - csf),
            core - necrosis,
        ],
        axis=1,
    )

    contrast = np.array([TISSUE_CONTRAST[t] for t in TISSUES])
    jitter = np.where(
        np.arange(len(TISSUES)) < TISSUES.index("necrosis"), config.healthy_jitter, config.contrast_jitter
    )
    contrast = contrast * np.exp(jitter[:, None] * rng.standard_normal(contrast.shape))
    # FLAIR of necrosis (fluid, protein) and enhancing tumour varies from case to case
    contrast[TISSUES.index("necrosis"), 3] = rng.uniform(0.4, 0.95)
    contrast[TISSUES.index("enhancing"), 3] = rng.uniform(0.6, 0.9)
    signal = fractions @ contrast  # (N, 4)

    # heterogeneous tumour: two smooth fields mixed per class and modality
    ijk = np.rint((anatomy.coords[near] - anatomy.affine[:3, 3]) / config.spacing).astype(int)
    lo, hi = ijk.min(0), ijk.max(0) + 1
    fields = np.stack([_smooth_noise(rng, tuple(hi - lo), sigma=3.0 / config.spacing) for _ in range(2)])
    local = fields[:, ijk[:, 0] - lo[0], ijk[:, 1] - lo[1], ijk[:, 2] - lo[2]]  # (2, M)
    for name, strength in _TEXTURE.items():
        k = TISSUES.index(name)
        angle = rng.uniform(0, 2 * np.pi, size=4)
        texture = strength * (np.cos(angle)[:, None] * local[0] + np.sin(angle)[:, None] * local[1])  # (4, M)
        signal[near] += fractions[near, k][:, None] * contrast[k] * texture.T

    # bias field, Rician noise, gain
    amplitude = rng.uniform(*config.bias_amplitude, size=4)
    log_bias = anatomy.bias_basis @ (rng.standard_normal((anatomy.bias_basis.shape[1], 4)))
    log_bias -= log_bias.mean(axis=0)
    log_bias *= amplitude / np.abs(log_bias).max(axis=0)
    signal *= np.exp(log_bias)
    sigma = rng.uniform(*config.noise, size=4) * contrast[0]
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    gain = rng.uniform(*config.gain, size=4)
    image = np.sqrt(real**2 + imaginary**2) * (gain * _SCANNER_SCALE)

    label = np.zeros(n, np.uint8)
    label[(whole >= 0.5) & (csf < 0.5)] = _LABEL["oedema"]
    label[core >= 0.5] = _LABEL["enhancing"]
    label[necrosis >= 0.5] = _LABEL["necrosis"]
    params.update(
        {
            "bias_amplitude": np.round(amplitude, 4).tolist(),
            "noise_sigma": np.round(sigma, 4).tolist(),
            "gain": np.round(gain, 4).tolist(),
            "wmh_burden": round(burden, 4),
            "voxels": {name: int((label == v).sum()) for name, v in _LABEL.items()},
        }
    )
    return {
        "case_id": case_id(index),
        "image": anatomy.volume(image.astype(np.float32)),
        "label": anatomy.volume(label, dtype=np.uint8),
        "affine": anatomy.affine.copy(),
        "params": params,
    }


def write_case(case: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """Write ``case`` (from :func:`generate_case`) as ``<output_dir>/<case_id>/<case_id>-{t1n,t1c,t2w,t2f,seg}.nii.gz``.

    Images are float32, the label uint8, all with the MNI affine (sform/qform code 4). Returns the datalist record
    with paths relative to ``output_dir``.
    """
    layout = get_layout(LAYOUT)
    cid = case["case_id"]
    folder = Path(output_dir) / cid
    folder.mkdir(parents=True, exist_ok=True)

    def save(data: np.ndarray, suffix: str) -> str:
        img = nib.Nifti1Image(data, case["affine"])
        img.set_sform(case["affine"], code=4)
        img.set_qform(case["affine"], code=4)
        img.header.set_xyzt_units("mm")
        img.set_data_dtype(data.dtype)
        name = layout.file_name(cid, suffix)
        nib.save(img, folder / name)
        return f"{cid}/{name}"

    images = [save(np.ascontiguousarray(case["image"][c]), s) for c, s in enumerate(layout.modality_suffixes)]
    label = save(case["label"].astype(np.uint8), layout.label_suffix)
    return {"case_id": cid, "layout": LAYOUT, "image": images, "label": label}


def _generate_and_write(job: tuple[int, int, PhantomConfig, str]) -> dict[str, Any]:
    index, seed, config, output_dir = job
    return write_case(generate_case(index, seed, config), output_dir)


def make_phantom_dataset(
    output_dir: str | Path,
    num_cases: int,
    seed: int = 0,
    config: PhantomConfig | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    num_workers: int = 0,
    progress: bool = True,
) -> Path:
    """Generate cases ``0 .. num_cases - 1`` under ``output_dir`` and write ``output_dir/datalist.json``.

    Cases are regenerated deterministically (existing files are overwritten with identical arrays). The split uses
    ``seed`` (:func:`robustseg.data.datalist.split_cases`); the datalist records ``"source": "phantom"`` and the
    generation parameters.

    Args:
        output_dir: dataset root.
        num_cases: number of cases (>= 1).
        seed: base seed of the cases and of the split.
        config: generator parameters (default :class:`PhantomConfig`).
        fractions: training / validation / testing shares.
        num_workers: worker processes (0: generate in this process).
        progress: show a tqdm progress bar.

    Returns:
        The path of the datalist.
    """
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1 but is {num_cases}.")
    if num_workers < 0:
        raise ValueError(f"num_workers must be non-negative but is {num_workers}.")
    config = config or PhantomConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, config, str(output_dir)) for i in range(num_cases)]
    bar = functools.partial(progress_bar, total=num_cases, desc="phantoms", unit="case", disable=not progress)
    if num_workers == 0:
        records = [_generate_and_write(job) for job in bar(jobs)]
    else:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            records = list(bar(pool.map(_generate_and_write, jobs)))
    extra = {
        "source": "phantom",
        "generator": "robustseg.data.phantom",
        "num_cases": num_cases,
        "case_seed": seed,
        "modality_order": list(MODALITIES),
        "config": asdict(config),
    }
    path = output_dir / "datalist.json"
    write_datalist(records, path, fractions=fractions, seed=seed, extra=extra)
    return path


def blob_case(shape: Sequence[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A quick synthetic case for benchmarks: z-scored 4-channel noise, zero outside an ellipsoidal 'brain', with a
    nested tumour (2 oedema, 3 enhancing, 1 core) that shifts the intensities; no anatomy (see :func:`generate_case`).

    Returns the image ``(4, *shape)`` and the class map ``(1, *shape)``.
    """
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = torch.stack([g**2 for g in grids]).sum(0) < 0.85
    centre = [float(c) for c in (torch.rand(len(shape), generator=generator) - 0.5) * 0.4]
    r = torch.stack([(g - c) ** 2 for g, c in zip(grids, centre, strict=True)]).sum(0).sqrt()
    label = torch.zeros(tuple(shape), dtype=torch.long)
    label[r < 0.45] = 2
    label[r < 0.3] = 3
    label[r < 0.18] = 1
    label[~brain] = 0
    image = torch.randn((4, *shape), generator=generator) + 0.5 * label.float()
    return image * brain, label[None]
