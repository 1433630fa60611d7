"""Each corruption against an independent computation (numpy, scipy, Pillow, colorsys) at one severity, and the
ROOD-MRI summary against a hand computation."""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre
from PIL import Image
from scipy import ndimage

from robustseg.corruptions import BRATS_C, NATURAL_C, SEVERITIES, corrupt, get_corruption, rood_summary
from robustseg.corruptions.mri import bias_coefficients, shell_radius
from robustseg.corruptions.natural import fog_field


def brain_case(shape=(4, 20, 24, 16), seed=0) -> torch.Tensor:
    """A skull-stripped case: positive intensities in an ellipsoid, zeros outside ``(1, C, *spatial)``."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape[1:]], indexing="ij")
    inside = sum(axis**2 for axis in grids) < 0.6
    x = (torch.rand((1, *shape), generator=g) * 80 + 40) * inside
    return x.double()


def rgb_image(h=24, w=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((1, 3, h, w), generator=g) * 255).double()


def test_every_corruption_is_seeded_keeps_shape_and_changes_the_case():
    for name, c in {**BRATS_C, **NATURAL_C}.items():
        x = brain_case() if c.domain == "mri" else rgb_image()
        for s in (1, 5):
            a, b = corrupt(x, name, s, seed=3), corrupt(x, name, s, seed=3)
            assert a.shape == x.shape and torch.isfinite(a).all(), name
            assert torch.equal(a, b), name
            assert not torch.allclose(a, x), (name, s)


@pytest.mark.parametrize("shape", [(4, 20, 24), (4, 20, 24, 16)], ids=["2d", "3d"])
def test_mri_corruptions_take_2d_and_3d_cases_and_keep_the_background_of_scanner_artefacts(shape):
    x = brain_case(shape)
    outside = ~x.ne(0).any(1, keepdim=True).expand_as(x)
    for name, c in BRATS_C.items():
        y = corrupt(x, name, 3, seed=1, spacing=(2.0,) * (len(shape) - 1))
        assert y.shape == x.shape
        if c.on_brain and not c.moves_label:  # the geometric ones: on the moved brain (test_geometric_corruptions)
            assert y[outside].abs().max() == 0, name


def test_bias_field_is_exp_of_its_seeded_legendre_polynomial_with_coefficients_in_range():
    x = brain_case()
    c = get_corruption("bias_field").parameters(2)["coefficient"]
    y = corrupt(x, "bias_field", 2, seed=5)
    coefficients = bias_coefficients(x, c, torch.Generator().manual_seed(5)).numpy()
    assert np.abs(coefficients).max() <= c and coefficients[..., 0, 0, 0].max() == 0  # no constant term
    inside = x[0].numpy() != 0
    for channel in range(4):
        t = [np.linspace(-1, 1, n) for n in x.shape[2:]]
        expected = legendre.leggrid3d(*t, coefficients[0, channel])  # numpy's own Legendre evaluation
        got = np.log(y[0, channel].numpy()[inside[channel]] / x[0, channel].numpy()[inside[channel]])
        np.testing.assert_allclose(got, expected[inside[channel]], atol=1e-9)
        assert np.abs(expected).max() <= c * 19  # 19 products of degree 1..3, each |P| <= 1


def test_rician_noise_against_its_definition():
    x = brain_case()
    std = get_corruption("rician_noise").parameters(4)["std"]
    y = corrupt(x, "rician_noise", 4, seed=2).numpy()
    raw = x.numpy()
    brain = (raw[0] != 0).any(0).ravel()
    n = int(brain.sum())
    noise = torch.randn((2, 4, n), generator=torch.Generator().manual_seed(2), dtype=torch.float64).numpy()
    for c in range(4):
        v = raw[0, c].ravel()
        sigma = std * v[v != 0].std(ddof=1)
        expected = np.zeros_like(v)
        expected[brain] = np.sqrt((v[brain] + sigma * noise[0, c]) ** 2 + (sigma * noise[1, c]) ** 2)
        np.testing.assert_allclose(y[0, c].ravel(), expected, rtol=1e-10)


def test_smoothing_matches_scipy_gaussian_filter_in_mm():
    x = brain_case()
    sigma_mm = get_corruption("smoothing").parameters(3)["sigma_mm"]
    spacing = (1.0, 2.0, 1.5)
    y = corrupt(x, "smoothing", 3, spacing=spacing).numpy()
    inside = x.ne(0).any(1).numpy()[0]
    for c in range(4):
        expected = ndimage.gaussian_filter(x[0, c].numpy(), [sigma_mm / s for s in spacing], mode="constant")
        np.testing.assert_allclose(y[0, c], expected * inside, atol=1e-9)


@pytest.mark.parametrize("name", ["contrast_compression", "contrast_expansion"])
def test_contrast_gamma_on_the_foreground_range(name):
    x = brain_case()
    gamma = get_corruption(name).parameters(5)["gamma"]
    y = corrupt(x, name, 5).numpy()
    for c in range(4):
        v = x[0, c].numpy()
        lo, hi = v[v != 0].min(), v[v != 0].max()
        expected = np.where(v != 0, lo + (hi - lo) * ((v - lo) / (hi - lo)).clip(0, 1) ** gamma, 0)
        np.testing.assert_allclose(y[0, c], expected, rtol=1e-10)


def test_ghosting_scales_the_kspace_planes_of_its_seeded_axis():
    x = brain_case()
    p = get_corruption("ghosting").parameters(2)  # 5 ghosts, intensity 1.0
    y = corrupt(x, "ghosting", 2, seed=4).numpy()
    axis = 2 + int(torch.randint(0, 3, (1,), generator=torch.Generator().manual_seed(4)))
    k = np.fft.fftn(x.numpy(), axes=(2, 3, 4))
    f = np.rint(np.fft.fftfreq(x.shape[axis], 1 / x.shape[axis])).astype(int)
    scale = np.where((f % 5 == 0) & (f != 0), 1 - p["intensity"], 1.0)
    shape = [1] * 5
    shape[axis] = len(f)
    expected = np.abs(np.fft.ifftn(k * scale.reshape(shape), axes=(2, 3, 4))) * (x.numpy() != 0).any(1, keepdims=True)
    np.testing.assert_allclose(y, expected, atol=1e-9)
    # the ghosts' amplitude in k-space: with intensity 1 those planes are gone from the unmasked image
    assert p["ghosts"] == 5 and p["intensity"] == 1.0


def test_downsampling_is_block_means_interpolated_back_along_one_axis():
    from robustseg.corruptions.base import Setting
    from robustseg.corruptions.mri import downsampling

    x = brain_case((1, 16, 20, 24))
    y = downsampling(x, 4.0, Setting(torch.Generator().manual_seed(0))).numpy()
    axis = 2 + int(torch.randint(0, 3, (1,), generator=torch.Generator().manual_seed(0)))
    v = np.moveaxis(x.numpy()[0, 0], axis - 2, 0)
    n = v.shape[0]
    blocks = v.reshape(n // 4, 4, *v.shape[1:]).mean(1)
    source = ((np.arange(n) + 0.5) / 4 - 0.5).clip(0, n // 4 - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n // 4 - 1)
    t = (source - low).reshape(-1, *([1] * (v.ndim - 1)))
    expected = (1 - t) * blocks[low] + t * blocks[high]
    np.testing.assert_allclose(np.moveaxis(y[0, 0], axis - 2, 0), expected, atol=1e-9)


def test_sequence_swap_blends_then_swaps():
    x = brain_case()
    full = corrupt(x, "sequence_swap", 5)
    assert torch.equal(full[:, 2], x[:, 3]) and torch.equal(full[:, 3], x[:, 2])
    assert torch.equal(full[:, :2], x[:, :2])
    part = corrupt(x, "sequence_swap", 1, channels=[0, 1])
    torch.testing.assert_close(part[:, 0], 0.8 * x[:, 0] + 0.2 * x[:, 1])
    with pytest.raises(ValueError, match="two channels"):
        corrupt(x, "sequence_swap", 1, channels=[0])


def test_missing_sequence_zeroes_a_block_of_slices_at_one_end_of_flair_only():
    x = brain_case() + 1.0  # every slice nonzero
    n = x.shape[-1]
    y = corrupt(x, "missing_sequence", 2, seed=0)  # 40 % of the slices
    zeroed = [k for k in range(n) if y[0, 3, ..., k].abs().max() == 0]
    count = round(0.4 * n)
    assert zeroed in (list(range(count)), list(range(n - count, n)))
    kept = [k for k in range(n) if k not in zeroed]
    assert torch.equal(y[0, 3, ..., kept], x[0, 3, ..., kept])
    assert torch.equal(y[:, :3], x[:, :3])
    assert corrupt(x, "missing_sequence", 5)[0, 3].abs().max() == 0


def test_misregistration_shifts_flair_by_whole_voxels_when_the_shift_is_a_multiple_of_the_spacing():
    x = brain_case()
    y = corrupt(x, "misregistration", 1, seed=6, spacing=(2.0, 2.0, 2.0)).numpy()  # 2 mm: one voxel
    flair = x.numpy()[0, 3]
    matches = []
    for axis in range(3):
        for step in (1, -1):
            moved = np.roll(flair, step, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = 0 if step == 1 else -1
            moved[tuple(edge)] = 0
            matches.append(np.allclose(y[0, 3], moved))
    assert sum(matches) == 1
    np.testing.assert_array_equal(y[0, :3], x.numpy()[0, :3])


def test_skull_strip_fills_exactly_the_dilated_shell_with_bright_tissue():
    x = brain_case()
    p = get_corruption("skull_strip").parameters(2)  # 4 mm
    spacing = (2.0, 2.0, 1.0)
    y = corrupt(x, "skull_strip", 2, seed=0, spacing=spacing).numpy()
    brain = (x.numpy()[0] != 0).any(0)
    radius = shell_radius(p["thickness_mm"], spacing)
    assert radius == [2, 2, 4]
    box = np.ones([2 * r + 1 for r in radius], dtype=bool)
    shell = ndimage.binary_dilation(brain, structure=box) & ~brain
    changed = (y[0] != x.numpy()[0]).any(0)
    np.testing.assert_array_equal(changed, shell)
    for c in range(4):
        v = x.numpy()[0, c][brain]
        q = np.sort(v)[math.ceil(0.9 * v.size) - 1]
        assert q * 0.8 - 1e-9 <= y[0, c][shell].min() and y[0, c][shell].max() <= q * 1.2 + 1e-9


def test_natural_noise_blur_and_contrast_against_numpy_and_scipy():
    x = rgb_image()
    u = x.numpy()[0] / 255
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()[0]
    np.testing.assert_allclose(corrupt(x, "gaussian_noise", 2, seed=1)[0], (u + 0.12 * noise).clip(0, 1) * 255)
    blurred = ndimage.gaussian_filter(u, (0, 2, 2), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(corrupt(x, "gaussian_blur", 2)[0].numpy(), blurred * 255, atol=1e-9)
    mean = u.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(corrupt(x, "contrast", 3)[0].numpy(), ((u - mean) * 0.2 + mean) * 255, atol=1e-9)


def test_brightness_raises_the_hsv_value_as_colorsys_does():
    x = rgb_image(6, 5)
    x[0, :, 0, 0] = 0  # a black pixel
    y = corrupt(x, "brightness", 3).numpy()[0] / 255
    u = x.numpy()[0] / 255
    for i in range(6):
        for j in range(5):
            h, s, v = colorsys.rgb_to_hsv(*u[:, i, j])
            np.testing.assert_allclose(y[:, i, j], colorsys.hsv_to_rgb(h, s, min(1.0, v + 0.3)), atol=1e-12)


def test_fog_adds_its_seeded_field_and_rescales_by_the_peak():
    x = rgb_image()
    y = corrupt(x, "fog", 1, seed=2).numpy()[0] / 255
    field = fog_field((1, 24, 32), 2.0, torch.Generator().manual_seed(2)).numpy()[0, 0]
    assert field.min() == 0 and field.max() == pytest.approx(1)
    u = x.numpy()[0] / 255
    peak = u.max()
    np.testing.assert_allclose(y, ((u + 1.5 * field) * peak / (peak + 1.5)).clip(0, 1), atol=1e-12)


def test_jpeg_is_pillows_round_trip_at_the_ladders_quality():
    x = rgb_image().round()
    pixels = x[0].permute(1, 2, 0).numpy().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=15)
    expected = np.asarray(Image.open(buffer), dtype=np.float64).transpose(2, 0, 1)
    np.testing.assert_allclose(corrupt(x, "jpeg", 3)[0].numpy(), expected, atol=1e-4)
    errors = [float((corrupt(x, "jpeg", s) - x).abs().mean()) for s in SEVERITIES]
    assert errors[-1] > errors[0]


def test_bad_requests_are_refused_with_the_known_names():
    with pytest.raises(KeyError, match="known"):
        corrupt(brain_case(), "snow", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(brain_case(), "smoothing", 6)
    with pytest.raises(ValueError, match="RGB"):
        corrupt(brain_case(), "jpeg", 1)
    with pytest.raises(ValueError, match="spacing"):
        corrupt(brain_case(), "smoothing", 1, spacing=(1.0, 1.0))


def test_rood_summary_against_a_hand_computation():
    # weights 2/3, 4/9, 8/27, 16/81, 32/243: sum 422/243; sum w m = (162 .7 + 108 .6 + 72 .5 + 48 .4 + 32 .3)/243 = 1
    summary = rood_summary(0.8, {1: 0.7, 2: 0.6, 3: 0.5, 4: 0.4, 5: 0.3})
    assert summary["overall"] == pytest.approx((1.0 + 0.8) / (422 / 243 + 1))
    assert summary["degradation"] == pytest.approx(0.8 - 243 / 422)
    assert rood_summary(0.8, {s: 0.8 for s in SEVERITIES}) == {"overall": pytest.approx(0.8), "degradation": 0}
    assert math.isnan(rood_summary(0.8, {})["overall"])


def test_rigid_motion_matches_scipy_affine_transform():
    from robustseg.corruptions.geometric import rigid, rotation_matrix

    x = brain_case((1, 20, 24, 16))
    spacing = (1.0, 2.0, 1.5)
    rotation = rotation_matrix([math.radians(a) for a in (4.0, -3.0, 6.0)])
    shift = [2.0, -3.0, 1.0]
    got = rigid(x, rotation, shift, spacing).numpy()[0, 0]
    s = np.diag(spacing)
    matrix = np.linalg.inv(s) @ rotation.numpy().T @ s
    centre = (np.array(x.shape[2:]) - 1) / 2
    offset = centre - matrix @ centre - np.linalg.inv(s) @ rotation.numpy().T @ np.array(shift)
    expected = ndimage.affine_transform(x.numpy()[0, 0], matrix, offset, order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(got[2:-2, 2:-2, 2:-2], expected[2:-2, 2:-2, 2:-2], atol=1e-6)


def test_motion_composes_kspace_segments_of_the_moved_head_and_keeps_the_centre_pose():
    from robustseg.corruptions.mri import motion_from_poses

    x = brain_case()
    axis = 3  # the second spatial axis (24 voxels) is the phase-encoding axis
    bounds = [0, 6, 24]  # the second segment holds the centre (12): it keeps the label's pose
    pose = (torch.eye(3, dtype=torch.float64), [2.0, 0.0, 0.0])  # 2 mm = one voxel along the first axis
    got = motion_from_poses(x, [pose, None], bounds, axis, (2.0, 2.0, 2.0)).numpy()
    raw = x.numpy()
    moved = np.roll(raw, 1, axis=2)
    moved[:, :, 0] = 0
    axes = (2, 3, 4)
    spectrum = np.fft.fftshift(np.fft.fftn(raw, axes=axes), axes=axes)
    spectrum[:, :, :, 0:6] = np.fft.fftshift(np.fft.fftn(moved, axes=axes), axes=axes)[:, :, :, 0:6]
    expected = np.abs(np.fft.ifftn(np.fft.ifftshift(spectrum, axes=axes), axes=axes))
    np.testing.assert_allclose(got, expected, atol=1e-9)
    still = motion_from_poses(x, [None, None], bounds, axis, (2.0, 2.0, 2.0))
    torch.testing.assert_close(still, x)


def test_motion_with_rotated_poses_equals_the_full_kspace_composition_of_whole_resampled_volumes():
    """Against the plain algorithm: each pose resampled on the whole grid, full 3-D spectra (numpy), centred planes
    composed; the corruption transforms one axis over the brain's lines and resamples the brain's box only."""
    from robustseg.corruptions.geometric import move, rigid_grid, rotation_matrix
    from robustseg.corruptions.mri import motion_from_poses

    x = brain_case(shape=(3, 22, 26, 18), seed=4)
    spacing = (1.5, 1.0, 2.0)
    poses = [
        (rotation_matrix([math.radians(a) for a in (4.0, -2.0, 3.0)]), [3.0, -2.0, 1.0]),
        None,
        (rotation_matrix([math.radians(a) for a in (-5.0, 1.0, 2.0)]), [-4.0, 2.5, 3.0]),
        (rotation_matrix([math.radians(a) for a in (1.0, 5.0, -3.0)]), [12.0, -10.0, 12.0]),  # off the brain's lines
    ]
    for axis, bounds in ((2, [0, 4, 15, 19, 22]), (3, [0, 9, 16, 20, 26]), (4, [0, 3, 13, 14, 18])):
        got = motion_from_poses(x, poses, bounds, axis, spacing).numpy()
        axes = (2, 3, 4)
        composed = np.fft.fftshift(np.fft.fftn(x.numpy(), axes=axes), axes=axes)
        for j, pose in enumerate(poses):
            if pose is None:
                continue
            moved = move(x, rigid_grid(x, pose[0], pose[1], spacing)).numpy()
            planes = [slice(None)] * 5
            planes[axis] = slice(bounds[j], bounds[j + 1])
            composed[tuple(planes)] = np.fft.fftshift(np.fft.fftn(moved, axes=axes), axes=axes)[tuple(planes)]
        expected = np.abs(np.fft.ifftn(np.fft.ifftshift(composed, axes=axes), axes=axes))
        np.testing.assert_allclose(got, expected, atol=1e-9, err_msg=f"axis {axis}")
