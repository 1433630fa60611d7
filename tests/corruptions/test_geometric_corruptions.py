"""The geometric corruptions of BraTS-C (affine, elastic) against scipy's resampling, image and label moved alike, and
scored against the moved label in the sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from robustseg.conditions import CaseContext, CorruptionCondition
from robustseg.corruptions import BRATS_C, corrupt, corrupt_with_label
from robustseg.corruptions.geometric import CONTROL_POINTS, elastic_coefficients, move, rigid_grid, rotation_matrix

SPACING = (2.0, 1.5, 2.5)
HEAD = (8.0, 7.0, 9.0)  # voxels of a head-sized field of view (~210 mm): severity 5 keeps the tumour inside it


def tumour_case(shape=(26, 30, 22)) -> tuple[torch.Tensor, torch.Tensor]:
    """A raw case whose intensity spells its class map, brighter inwards so that linear interpolation between two
    nested classes gives no third: brain 100, oedema (2) 300, enhancing (3) 500, necrosis (1) 700."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, (0.1, -0.15, 0.05)[: len(shape)], strict=True))
    label = np.select([r2 < 0.04, r2 < 0.1, r2 < 0.2], [1, 3, 2], 0)
    brain = sum(g**2 for g in grids) < 0.75
    image = np.where(label > 0, np.select([label == 1, label == 2, label == 3], [700, 300, 500]), 100.0) * brain
    x = torch.as_tensor(np.stack([image, image * 0.5, image, image * 2.0]))[None].double()
    return x, torch.as_tensor(label)[None, None].long()


def _moved_classes(label: np.ndarray, resample) -> np.ndarray:
    """Each class's indicator resampled linearly by ``resample`` (scipy), then the class of the largest; background
    where less than half of a voxel's weight lies inside the field of view."""
    indicators = np.stack([resample((label == k).astype(float)) for k in range(4)])
    return np.where(indicators.sum(0) < 0.5, 0, indicators.argmax(0))


def _drawn_rigid(seed: int, degrees: float, translation: float) -> tuple[np.ndarray, np.ndarray]:
    """The affine corruption's draw, made again from its generator: angles (3) then shifts (3), uniform in +-1."""
    g = torch.Generator().manual_seed(seed)
    angles = (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1).numpy() * degrees
    shift = (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1).numpy() * translation
    return angles, shift


def test_affine_moves_image_and_label_as_scipy_affine_transform_does() -> None:
    x, label = tumour_case()
    params = BRATS_C["affine"].parameters(4)
    assert params == {"degrees": 24.0, "translation_mm": 32.0}  # ROOD-MRI's ladder: 6..30 degrees, 8..40 mm
    image, moved = corrupt_with_label(x, label, "affine", 4, seed=5, spacing=SPACING)
    angles, shift = _drawn_rigid(5, 24.0, 32.0)
    assert np.all(np.abs(angles) <= 24.0) and np.all(np.abs(shift) <= 32.0)
    rotation = rotation_matrix([math.radians(a) for a in angles]).numpy()
    s = np.diag(SPACING)
    matrix = np.linalg.inv(s) @ rotation.T @ s  # output voxel -> input voxel, about the centre
    centre = (np.array(x.shape[2:]) - 1) / 2
    offset = centre - matrix @ centre - np.linalg.inv(s) @ rotation.T @ shift
    brain = x.numpy()[0].any(0).astype(float)
    moved_brain = ndimage.affine_transform(brain, matrix, offset, order=1, mode="constant", cval=0.0) >= 0.5
    for c in range(4):
        expected = ndimage.affine_transform(x.numpy()[0, c], matrix, offset, order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(image.numpy()[0, c], expected * moved_brain, atol=1e-6)
    rim = (expected > 0) & ~moved_brain  # what linear resampling alone leaves around the brain: zeroed
    assert rim.sum() > 50 and np.all(image.numpy()[0, 3][rim] == 0)
    expected = _moved_classes(
        label.numpy()[0, 0],
        lambda a: ndimage.affine_transform(a, matrix, offset, order=1, mode="constant", cval=0.0),
    )
    tumour = (expected > 0) | (moved.numpy()[0, 0] > 0)
    assert np.sum(moved.numpy()[0, 0][tumour] != expected[tumour]) <= 2  # ties only (nearest neighbour: 38 of 432)
    assert moved.dtype == label.dtype and not torch.equal(moved, label)


def test_elastic_field_is_the_cubic_bspline_of_its_locked_coefficients_and_moves_label_with_image() -> None:
    x, label = tumour_case()
    image, moved = corrupt_with_label(x, label, "elastic", 3, seed=2, spacing=SPACING)
    displacement = BRATS_C["elastic"].parameters(3)["displacement_mm"]
    assert displacement == 18.0  # ROOD-MRI's ladder: 6..30 mm
    coefficients = elastic_coefficients(3, displacement, torch.Generator().manual_seed(2)).numpy()
    assert np.abs(coefficients).max() <= displacement
    locked = np.ones(CONTROL_POINTS, bool)
    locked[2:-2] = False
    assert np.all(coefficients[:, locked] == 0) and np.all(coefficients[:, :, :, locked] == 0)
    # the field, by scipy's B-spline evaluation (order 3, no prefilter: the coefficients are the spline's own);
    # coefficient k sits at mesh node k - 1, and the nodes 0..4 span each axis from its first voxel to its last
    shape = np.array(x.shape[2:])
    voxel = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1).astype(float)
    nodes = voxel * ((CONTROL_POINTS - 3) / (shape[:, None] - 1)) + 1
    field_mm = np.stack(
        [ndimage.map_coordinates(coefficients[d], nodes, order=3, prefilter=False, mode="nearest") for d in range(3)]
    )
    assert np.abs(field_mm).max() <= displacement
    source = voxel + field_mm / np.array(SPACING)[:, None]  # output voxel p samples the input at p + d(p)
    brain = x.numpy()[0].any(0).astype(float)
    moved_brain = ndimage.map_coordinates(brain, source, order=1, mode="constant", cval=0.0) >= 0.5
    for c in range(4):
        expected = ndimage.map_coordinates(x.numpy()[0, c], source, order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(image.numpy()[0, c].ravel(), expected * moved_brain, atol=1e-6)
    expected = _moved_classes(
        label.numpy()[0, 0], lambda a: ndimage.map_coordinates(a, source, order=1, mode="constant", cval=0.0)
    )
    tumour = (expected > 0) | (moved.numpy()[0, 0].ravel() > 0)
    assert np.sum(moved.numpy()[0, 0].ravel()[tumour] != expected[tumour]) <= 2
    assert not torch.equal(moved, label)


@pytest.mark.parametrize("name", ["affine", "elastic"])
def test_a_geometric_corruption_is_one_draw_made_larger_with_severity_in_2d_and_3d(name: str) -> None:
    for shape in ((26, 30), (26, 30, 22)):
        x, label = tumour_case(shape)
        spacing = HEAD[: len(shape)]
        moved = [corrupt_with_label(x, label, name, s, seed=7, spacing=spacing)[1] for s in (1, 3, 5)]
        images = [corrupt(x, name, s, seed=7, spacing=spacing) for s in (1, 3, 5)]
        change = [float((m - x).abs().mean()) for m in images]
        assert 0 < change[0] < change[1] < change[2], (name, shape, change)
        assert int((moved[2] != label).sum()) > int((moved[0] != label).sum()) >= 0
        image, again = corrupt_with_label(x, label, name, 3, seed=7, spacing=spacing)
        assert torch.equal(again, moved[1])
        assert torch.equal(image, corrupt(x, name, 3, seed=7, spacing=spacing))  # the image alone moves alike
        first = image[0, 0].numpy()
        spelled = np.select([first > 600, first > 400, first > 200], [1, 3, 2], 0)
        truth = again[0, 0].numpy()
        inside = ndimage.maximum_filter(truth, 3) == ndimage.minimum_filter(truth, 3)  # away from class borders
        assert np.mean(spelled[inside] == truth[inside]) > 0.99  # image and label stay aligned


def test_the_condition_returns_the_moved_label_and_other_corruptions_none() -> None:
    x, label = tumour_case()
    case = CaseContext("case", x, label, lambda t: t, seed=1)
    case.raw, case.normalise, case.spacing = x, (lambda t: t), SPACING
    out = CorruptionCondition("elastic", 5).apply(case)
    expected = corrupt_with_label(x, label, "elastic", 5, seed=case.seed_for("elastic"), spacing=SPACING)
    assert out.label is not None and torch.equal(out.label, expected[1])
    torch.testing.assert_close(out.image, expected[0])
    assert CorruptionCondition("bias_field", 5).apply(case).label is None
    assert CorruptionCondition("affine", 1).settings()["moves_label"] is True
    with pytest.raises(ValueError, match="does not match the image"):
        corrupt_with_label(x, label[..., :-1], "affine", 1)


class IntensityOracle(torch.nn.Module):
    """Softmax logits of the class whose intensity (tumour_case's) is nearest the first channel's: a perfect model
    that follows the anatomy wherever it moves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([50.0, 700.0, 300.0, 500.0], dtype=x.dtype).view(1, 4, *([1] * (x.ndim - 2)))
        return -(x[:, :1] - centres).abs() / 10


def test_the_sweep_scores_a_geometric_corruption_against_the_moved_label(tmp_path) -> None:
    from robustseg.workflows.sweep import ConditionSweep

    x, label = tumour_case((40, 44, 36))
    affine = np.diag([5.0, 5.0, 5.5, 1.0])
    item = {"image": MetaTensor(x[0].float(), affine=affine), "label": MetaTensor(label[0], affine=affine)}
    net = IntensityOracle()
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    conditions = [CorruptionCondition("affine", 5), CorruptionCondition("elastic", 5)]
    sweep = ConditionSweep(
        net, checkpoint, lambda t, n: n(t), [{**item, "case_id": "c0"}], conditions, tmp_path / "out",
        num_examples=0, hd95=False, normalise=lambda d: d,
    )  # fmt: skip
    rows = sweep.run()["rows"]
    for condition in ("clean", "affine@5", "elastic@5"):
        dice = {r["region"]: r["dice"] for r in rows if r["condition"] == condition}
        assert min(dice.values()) > 0.9, (condition, dice)  # against the unmoved label affine@5 scores below 0.5


@pytest.mark.parametrize("shape", [(1, 5, 23, 17, 12), (1, 2, 19, 14), (2, 3, 9, 10, 11)], ids=["3d", "2d", "batch"])
def test_move_cut_into_slabs_for_the_threads_equals_one_grid_sample(shape) -> None:
    x = torch.rand(shape, dtype=torch.float64)
    dims = len(shape) - 2
    grid = rigid_grid(x, rotation_matrix([0.2] * (1 if dims == 2 else 3)), [1.5] * dims, (2.0,) * dims)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # 23 and 19 planes: three slabs, the last one padded
        for mode in ("bilinear", "nearest"):
            expected = torch.nn.functional.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)
            assert torch.equal(move(x, grid, mode), expected), mode
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", [(21, 1, 13), (17, 9), (6, 7, 8)], ids=["3d-unit-axis", "2d", "3d"])
def test_affine_grid_as_outer_sums_equals_torchs_affine_grid(shape) -> None:
    from robustseg.corruptions.geometric import affine_grid

    dims = len(shape)
    theta = torch.randn(dims, dims + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(dims))
    got = affine_grid(theta, shape, 2, torch.float64, torch.device("cpu"))
    expected = torch.nn.functional.affine_grid(theta[None].expand(2, -1, -1), [2, 1, *shape], align_corners=True)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_support_is_the_box_of_the_nonzero_voxels_over_batch_and_channels() -> None:
    from robustseg.corruptions.geometric import support

    x = torch.zeros(2, 2, 5, 6, 7)
    x[0, 1, 2, 3, 4] = 1.0
    x[1, 0, 1, 5, 4] = -2.0
    x[1, 1, 3, 3, 6] = float("nan")  # not a number is not zero
    assert support(x) == (slice(1, 4), slice(3, 6), slice(4, 7))
    assert support(torch.zeros(1, 1, 3, 3)) is None
    assert support(torch.ones(1, 3, 4, 5)) == (slice(0, 4), slice(0, 5))


@pytest.mark.parametrize("dims", [2, 3])
def test_rigid_resampled_only_where_the_brain_can_land_equals_resampling_the_whole_grid(dims) -> None:
    """The box of the moved brain, 1.5 voxels wide of it, holds every voxel linear interpolation can make nonzero:
    outside it the whole grid's grid_sample gives exactly 0, inside the same values, for any pose, one that moves
    the brain partly or wholly out of the field of view included."""
    from robustseg.corruptions.geometric import rigid

    x = tumour_case()[0].float() if dims == 3 else tumour_case((30, 26))[0].float()
    spacing = SPACING[:dims]
    poses = [(4.0, 3.0), (30.0, 25.0), (-17.0, 60.0), (0.0, 0.0), (10.0, 400.0)]  # degrees, mm along every axis
    for degrees, mm in poses:
        rotation = rotation_matrix([math.radians(degrees * k) for k in ((1.0,) if dims == 2 else (1.0, -0.6, 0.4))])
        shift = [mm, -mm / 2, mm / 3][:dims]
        whole = move(x, rigid_grid(x, rotation, shift, spacing))
        assert torch.equal(rigid(x, rotation, shift, spacing), whole), (degrees, mm)
    assert float(whole.abs().sum()) == 0.0  # the last pose moved the brain out: all zeros either way
    assert torch.equal(rigid(torch.zeros_like(x), rotation, shift, spacing), torch.zeros_like(x))
