"""ROOD-MRI's geometric corruptions: they move the anatomy, so the label moves with the image.

Each function returns a *sampling grid* for ``grid_sample`` (``(B, *spatial, dims)``, unit coordinates, the last axis
first, ``align_corners=True``): output voxel ``p`` takes the input at ``p + d(p)``. :func:`move` resamples the image
linearly and :func:`move_labels` the label on the same grid (each class's indicator linearly, then the class of the
largest), zeros (background) outside the field of view, so image and label stay aligned: the label's borders fall
where the image's do, to the voxel (nearest-neighbour labels shift them by up to half a voxel, which costs a 3 mm
phantom's whole tumour about 0.025 Dice at any severity). The ladders (ROOD-MRI's, with TorchIO's RandomAffine and
RandomElasticDeformation):

- ``affine``: a rigid move about the image centre, each rotation angle uniform in +-6 .. 30 degrees, each translation
  uniform in +-8 .. 40 mm (scales 1);
- ``elastic``: a cubic B-spline displacement over 7 coefficients per axis (4 mesh intervals across the image, as
  TorchIO's 7 control points), the two outer rings locked at 0 and the inner ones uniform in +-6 .. 30 mm per axis.

One draw per call, scaled by the severity, so a case's five severities are one move made larger.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from robustseg.corruptions.base import Setting

Box = tuple[slice, ...]
"""Per spatial axis, a slice of voxel indices."""

__all__ = [
    "CONTROL_POINTS",
    "affine",
    "affine_grid",
    "bspline_basis",
    "cubic_bspline",
    "displacement_grid",
    "elastic",
    "elastic_coefficients",
    "move",
    "move_labels",
    "rigid",
    "rigid_block",
    "rigid_box",
    "rigid_grid",
    "rigid_theta",
    "rotation_matrix",
    "support",
]

CONTROL_POINTS = 7
"""B-spline coefficients per axis of the elastic field: 4 mesh intervals across the image plus 3 (cubic)."""


def rotation_matrix(angles: list[float]) -> torch.Tensor:
    """The rotation matrix of Euler angles (radians): one angle in 2-D, three (about each axis) in 3-D."""
    if len(angles) == 1:
        c, s_ = math.cos(angles[0]), math.sin(angles[0])
        return torch.tensor([[c, -s_], [s_, c]], dtype=torch.float64)
    out = torch.eye(3, dtype=torch.float64)
    for axis, a in enumerate(angles):
        c, s_ = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = torch.eye(3, dtype=torch.float64)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s_, s_, c
        out = r @ out
    return out


def _half_extent(shape: tuple[int, ...], spacing: tuple[float, ...]) -> torch.Tensor:
    """Per spatial axis, mm from the centre to the outermost voxel centre (one unit of grid_sample's coordinates)."""
    return torch.tensor([max(n - 1, 1) / 2 * s for n, s in zip(shape, spacing, strict=True)], dtype=torch.float64)


def rigid_theta(
    shape: tuple[int, ...], rotation: torch.Tensor, shift_mm: list[float], spacing: tuple[float, ...]
) -> torch.Tensor:
    """``affine_grid``'s ``theta`` (grid order, float64) of a rigid move about the centre of a grid of ``shape``."""
    dims = len(shape)
    half = _half_extent(shape, spacing)
    to_unit = torch.diag(1 / half)
    linear = to_unit @ rotation.T @ torch.diag(half)  # output unit coordinates -> input unit coordinates
    offset = -(to_unit @ rotation.T @ torch.tensor(shift_mm, dtype=torch.float64))
    flip = list(range(dims))[::-1]  # grid_sample's coordinates run from the last axis to the first
    return torch.cat([linear[flip][:, flip], offset[flip, None]], dim=1)


def rigid_grid(
    x: torch.Tensor, rotation: torch.Tensor, shift_mm: list[float], spacing: tuple[float, ...]
) -> torch.Tensor:
    """The sampling grid of ``x`` moved rigidly about its centre (rotation in physical space, shift in mm)."""
    theta = rigid_theta(tuple(x.shape[2:]), rotation, shift_mm, spacing)
    return affine_grid(theta, tuple(x.shape[2:]), x.shape[0], x.dtype, x.device)


def support(x: torch.Tensor) -> Box | None:
    """Per spatial axis, the slice of indices that holds every nonzero value of ``x`` (any batch item or channel);
    ``None`` when ``x`` is all zeros."""
    peak = x.abs().amax(dim=(0, 1))  # a float reduction: 10 x faster than any() over a boolean volume on the CPU
    box = []
    for axis in range(peak.ndim):
        others = tuple(d for d in range(peak.ndim) if d != axis)
        found = torch.nonzero((peak.amax(dim=others) if others else peak) != 0).flatten()  # NaN counts as nonzero
        if len(found) == 0:
            return None
        box.append(slice(int(found[0]), int(found[-1]) + 1))
    return tuple(box)


def rigid_box(theta: torch.Tensor, shape: tuple[int, ...], source: Box) -> Box | None:
    """The output voxels to which an affine move on ``theta`` can bring a value of a source that is zero outside
    ``source``: the bounding box of the source box's corners, widened by 1.5 voxels, mapped back (linear
    interpolation reads the two voxels either side of a point, so every voxel outside it is exactly 0); ``None``
    when it misses the grid."""
    dims = len(shape)
    lows = [b.start - 1.5 for b in source]
    highs = [b.stop - 1 + 1.5 for b in source]
    corners = torch.tensor(list(itertools.product(*zip(lows, highs, strict=True))), dtype=torch.float64)
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in shape], dtype=torch.float64)
    unit = (corners * scale - 1).flip(-1)  # spatial order -> grid order
    back = torch.linalg.solve(theta[:, :dims].double(), (unit - theta[:, dims].double()).T).T.flip(-1)
    voxels = (back + 1) / scale
    box = []
    for axis, n in enumerate(shape):
        if n == 1:
            box.append(slice(0, 1))
            continue
        lo = max(0, math.floor(float(voxels[:, axis].min())))
        hi = min(n - 1, math.ceil(float(voxels[:, axis].max())))
        if lo > hi:
            return None
        box.append(slice(lo, hi + 1))
    return tuple(box)


def rigid_block(
    x: torch.Tensor,
    rotation: torch.Tensor,
    shift_mm: list[float],
    spacing: tuple[float, ...],
    source: Box | None = None,
) -> tuple[Box | None, torch.Tensor | None]:
    """:func:`rigid` on the only voxels it can make nonzero: their box and values (``None, None``: none).

    ``source`` is :func:`support` of ``x`` when known. A skull-stripped brain's box is about 40 % of its grid, so
    resampling only where it can land does 2 to 3 x less work for the same values."""
    shape = tuple(x.shape[2:])
    source = support(x) if source is None else source
    if source is None:
        return None, None
    theta = rigid_theta(shape, rotation, shift_mm, spacing)
    box = rigid_box(theta, shape, source)
    if box is None:
        return None, None
    return box, move(x, affine_grid(theta, shape, x.shape[0], x.dtype, x.device, box=box))


def affine_grid(
    theta: torch.Tensor,
    shape: tuple[int, ...],
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
    box: Box | None = None,
) -> torch.Tensor:
    """``F.affine_grid(theta, align_corners=True)`` for one ``theta`` (``dims x (dims + 1)``, grid order) shared by
    the batch, as a sum of one outer term per axis: the grid is affine in each index, so no base grid of homogeneous
    coordinates is built and multiplied (3 x faster on the CPU, the same values to float rounding). ``box``: only the
    grid's points in these slices of its spatial axes (the same values as those of the whole grid)."""
    dims = len(shape)
    theta = theta.to(device=device, dtype=dtype)
    grid = theta[:, dims].reshape((1,) * dims + (dims,))
    for i, n in enumerate(shape):
        coords = torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device) if n > 1 else theta.new_zeros(1)
        if box is not None:
            coords = coords[box[i]]
        view = [1] * dims + [dims]
        view[i] = len(coords)
        grid = grid + (coords[:, None] * theta[:, dims - 1 - i]).reshape(view)
    return grid[None].expand(batch, *grid.shape)


def move(x: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``x`` resampled on ``grid`` (``bilinear``: linear; ``nearest`` for class maps), zeros outside.

    On the CPU, ``grid_sample`` runs one thread per batch item: a single case's output is cut into as many slabs of
    its first axis as there are threads and resampled as one batch of them (the input shared, not copied), which
    gives the same values in about 1 / threads of the time.
    """
    source = x.to(grid.dtype)
    n = grid.shape[1]
    parts = min(torch.get_num_threads(), n) if x.device.type == "cpu" and x.shape[0] == 1 and grid.shape[0] == 1 else 1
    if parts <= 1:
        out = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=True)
        return out.to(x.dtype)
    step = -(-n // parts)
    padded = (
        torch.cat([grid, grid[:, -1:].expand(1, step * parts - n, *grid.shape[2:])], 1) if step * parts > n else grid
    )
    slabs = padded.reshape(parts, step, *grid.shape[2:])
    out = F.grid_sample(source.expand(parts, *x.shape[1:]), slabs, mode=mode, padding_mode="zeros", align_corners=True)
    out = out.movedim(0, 1).reshape(1, x.shape[1], step * parts, *out.shape[3:])[:, :, :n]
    return out.to(x.dtype)


def move_labels(label: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """A class map ``(B, 1, *spatial)`` resampled on ``grid``: the indicator of each class present moved linearly,
    then per voxel the class with the largest (ties: the lowest value; outside the field of view: background 0)."""
    values, index = torch.unique(label, return_inverse=True)
    if values[0] != 0:  # background first, so that voxels from outside the field of view become 0
        values = torch.cat([values.new_zeros(1), values])
        index = index + 1
    onehot = F.one_hot(index[:, 0], len(values)).movedim(-1, 1).to(grid.dtype)
    moved = move(onehot, grid)
    outside = moved.sum(1, keepdim=True) < 0.5  # mostly sampled beyond the field of view
    classes = torch.where(outside, 0, moved.argmax(1, keepdim=True))
    return values[classes].to(label.dtype)


def rigid(x: torch.Tensor, rotation: torch.Tensor, shift_mm: list[float], spacing: tuple[float, ...]) -> torch.Tensor:
    """``x`` moved rigidly about its centre, linear interpolation, zeros outside (resampled where it can be nonzero,
    :func:`rigid_block`)."""
    box, values = rigid_block(x, rotation, shift_mm, spacing)
    out = x.new_zeros(x.shape)
    if box is not None and values is not None:
        out[(slice(None), slice(None), *box)] = values
    return out


def _uniform(n: int, g: torch.Generator) -> list[float]:
    return [float(v) for v in torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1]


def affine(x: torch.Tensor, degrees: float, translation_mm: float, setting: Setting) -> torch.Tensor:
    """The sampling grid of a seeded rigid move: angles in +-``degrees``, shifts in +-``translation_mm`` per axis."""
    dims = x.ndim - 2
    angles = [math.radians(a * degrees) for a in _uniform(1 if dims == 2 else 3, setting.generator)]
    shift = [t * translation_mm for t in _uniform(dims, setting.generator)]
    return rigid_grid(x, rotation_matrix(angles), shift, setting.spacing_for(x))


def cubic_bspline(t: torch.Tensor) -> torch.Tensor:
    """The cubic B-spline kernel: 2/3 - t^2 + |t|^3 / 2 on |t| < 1, (2 - |t|)^3 / 6 on 1 <= |t| < 2, else 0."""
    a = t.abs()
    inner = 2.0 / 3.0 - a**2 + a**3 / 2
    outer = (2.0 - a).clamp(min=0) ** 3 / 6
    return torch.where(a < 1, inner, outer)


def bspline_basis(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n, CONTROL_POINTS)``: the weight of each coefficient at each of ``n`` voxels along an axis.

    Coefficient ``k`` sits at mesh node ``k - 1``; the nodes 0 .. 4 span the axis from its first voxel centre to its
    last, so the outer coefficients (nodes -1 and 5) lie outside the image, as in a B-spline transform's grid.
    """
    mesh = CONTROL_POINTS - 3
    t = torch.arange(n, dtype=dtype) * (mesh / max(n - 1, 1))
    nodes = torch.arange(CONTROL_POINTS, dtype=dtype) - 1
    return cubic_bspline(t[:, None] - nodes[None, :])


def elastic_coefficients(dims: int, displacement_mm: float, g: torch.Generator) -> torch.Tensor:
    """``(dims, 7, .., 7)``: seeded coefficients (mm) of each displacement component, uniform in
    +-``displacement_mm``, the two outer rings of every axis locked at 0."""
    shape = (dims,) + (CONTROL_POINTS,) * dims
    coefficients = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * displacement_mm
    free = torch.zeros(CONTROL_POINTS, dtype=torch.bool)
    free[2:-2] = True
    for axis in range(dims):
        view = [1] * (dims + 1)
        view[axis + 1] = CONTROL_POINTS
        coefficients = coefficients * free.view(view)
    return coefficients


def _field(coefficients: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``(dims, *shape)``: the displacement (mm) of each component at every voxel, axis by axis."""
    out = coefficients
    for axis, n in enumerate(shape):
        basis = bspline_basis(n, coefficients.dtype)  # (n, 7)
        out = torch.movedim(torch.tensordot(out, basis, dims=([axis + 1], [1])), -1, axis + 1)
    return out


def displacement_grid(x: torch.Tensor, displacement_mm: torch.Tensor, spacing: tuple[float, ...]) -> torch.Tensor:
    """The sampling grid of ``x`` displaced by ``displacement_mm`` ``(dims, *spatial)``, per axis in mm."""
    dims = x.ndim - 2
    shape = tuple(x.shape[2:])
    half = _half_extent(shape, spacing).tolist()
    components = []
    for axis in reversed(range(dims)):  # the last axis first, as grid_sample reads it
        view = [1] * dims
        view[axis] = shape[axis]
        identity = (
            torch.linspace(-1, 1, shape[axis], dtype=x.dtype) if shape[axis] > 1 else torch.zeros(1, dtype=x.dtype)
        )
        components.append(identity.view(view) + displacement_mm[axis].to(x.dtype) / half[axis])
    grid = torch.stack(components, dim=-1)[None]
    return grid.expand((x.shape[0], *grid.shape[1:])).to(x.device)


def elastic(x: torch.Tensor, displacement_mm: float, setting: Setting) -> torch.Tensor:
    """The sampling grid of a seeded elastic deformation with coefficients in +-``displacement_mm``."""
    dims = x.ndim - 2
    coefficients = elastic_coefficients(dims, displacement_mm, setting.generator).to(x.dtype)
    return displacement_grid(x, _field(coefficients, tuple(x.shape[2:])), setting.spacing_for(x))
