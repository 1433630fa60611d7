"""Basis perturbations: identity at 0, monotone, aligned, seeded, and each against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from robustseg.sensitivity.perturbations import MRI_OPS, NATURAL_OPS, perturb

LEVELS = (0.25, 0.5, 0.75, 1.0)


def _rgb(seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, 3, size, size), generator=g)


def _volume(dims: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 50 + 20 * torch.rand((1, 4) + (16,) * dims, generator=g, dtype=torch.float64)


def _cases() -> list[tuple[str, torch.Tensor]]:
    return [(op, _rgb()) for op in NATURAL_OPS] + [(op, _volume(d)) for op in MRI_OPS for d in (2, 3)]


@pytest.mark.parametrize(("op", "image"), _cases(), ids=lambda v: v if isinstance(v, str) else str(v.ndim - 2) + "d")
def test_identity_at_zero_monotone_in_magnitude_and_seeded(op: str, image: torch.Tensor) -> None:
    label = (image[:, :1] > image[:, :1].mean()).long()
    same, same_label = perturb(image, label, op, 0.0, seed=3)
    assert torch.equal(same, image) and torch.equal(same_label, label)
    change = [float((perturb(image, label, op, m, seed=3)[0] - image).abs().mean()) for m in LEVELS]
    assert change[0] > 0 and bool(np.all(np.diff(change) >= -1e-9)), change
    first, first_label = perturb(image, label, op, 0.6, seed=3)
    again, again_label = perturb(image, label, op, 0.6, seed=3)
    assert torch.equal(first, again) and torch.equal(first_label, again_label)
    assert first.shape == image.shape and first.dtype == image.dtype


def test_bad_requests_are_refused_with_what_is_known() -> None:
    with pytest.raises(KeyError, match="known"):
        perturb(_rgb(), None, "fog", 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        perturb(_rgb(), None, "blur", 1.5)
    with pytest.raises(ValueError, match="2,\\)-D"):
        perturb(_volume(3), None, "rotate", 0.5)
    with pytest.raises(ValueError, match="channels"):
        perturb(_volume(3), None, "gibbs", 0.5, channels=[4])


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def _back(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.float64).transpose(2, 0, 1) / 255


@pytest.mark.parametrize(
    ("op", "enhancer", "factor"),
    [
        ("brightness_up", ImageEnhance.Brightness, 1.5),
        ("colour_up", ImageEnhance.Color, 2.0),
        ("colour_down", ImageEnhance.Color, 0.85),
        ("contrast_down", ImageEnhance.Contrast, 0.7),
        ("sharpness_up", ImageEnhance.Sharpness, 1.5),
    ],
)
def test_photometric_ops_match_pillow(op: str, enhancer: type, factor: float) -> None:
    image = torch.from_numpy(_back(_pil(_rgb())))[None].float()  # on the uint8 grid, as PIL sees it
    m = {"brightness_up": 0.5, "colour_up": 0.5, "colour_down": 0.5, "contrast_down": 0.5, "sharpness_up": 0.5}[op]
    ours = perturb(image, None, op, m)[0][0].numpy()
    theirs = _back(enhancer(_pil(image)).enhance(factor))
    tolerance = 3.5 / 255 if op.startswith("contrast") else 1.5 / 255  # PIL rounds its grey mean to an integer
    assert np.abs(ours - theirs).max() <= tolerance


def test_posterize_and_solarize_match_pillow() -> None:
    image = torch.from_numpy(_back(_pil(_rgb())))[None].float()
    ours = perturb(image, None, "posterize", 4 / 7)[0][0].numpy()  # 8 - 4 = 4 bits
    assert np.abs(ours - _back(ImageOps.posterize(_pil(image), 4))).max() < 1e-6
    ours = perturb(image, None, "solarize", 0.3)[0][0].numpy()  # invert above 0.7 = 178.5 / 255
    assert np.abs(ours - _back(ImageOps.solarize(_pil(image), 179))).max() < 1e-6


def test_translation_moves_image_and_label_by_the_same_whole_pixels() -> None:
    image = _rgb(size=48)
    label = (image[:, :1] > 0.5).long()
    moved, moved_label = perturb(image, label, "translate_x", 0.5, seed=0, label_fill=255)
    shifts = []
    for b in range(2):  # 0.5 * 48 / 4 = 6 pixels, of a random sign per image
        shift = 6 if torch.allclose(moved[b, :, :, 6:], image[b, :, :, :-6], atol=1e-5) else -6
        inside, outside = (slice(6, None), slice(None, 6)) if shift > 0 else (slice(None, -6), slice(-6, None))
        assert torch.allclose(moved[b, ..., inside], torch.roll(image[b], shift, -1)[..., inside], atol=1e-5)
        assert torch.equal(moved_label[b, ..., inside], torch.roll(label[b], shift, -1)[..., inside])
        assert torch.all(moved_label[b, ..., outside] == 255)  # brought in from outside: the fill label
        shifts.append(shift)
    assert sorted(shifts) == [-6, 6]  # this seed draws both signs


@pytest.mark.parametrize("op", ["rotate", "shear_x", "shear_y"])
def test_geometric_ops_keep_image_and_label_aligned(op: str) -> None:
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    disc = (((yy - 20) ** 2 + (xx - 28) ** 2) < 100).float()
    image = disc.expand(1, 3, 48, 48).clone()
    moved, label = perturb(image, disc[None, None].long(), op, 0.8, seed=1)
    agree = ((moved[:, :1] > 0.5).long() == label).float().mean()
    assert agree > 0.985 and label.sum() > 0.8 * disc.sum()


def test_ghosting_scales_every_fourth_k_space_line_by_one_minus_its_intensity() -> None:
    image = _volume(2)
    ghosted = perturb(image, None, "ghosting", 0.2)[0]
    k_in = torch.fft.fftshift(torch.fft.fftn(image, dim=(2, 3)), dim=(2, 3))
    k_out = torch.fft.fftshift(torch.fft.fftn(ghosted, dim=(2, 3)), dim=(2, 3))
    ratio = (k_out / k_in).real[0, 0, :, 0]
    lines = torch.arange(16) - 8
    expected = torch.where((lines % 4 == 0) & (lines != 0), 1 - 2.5 * 0.2, 1.0).double()
    assert torch.allclose(ratio, expected, atol=1e-6)


def test_bias_field_spans_exactly_its_range_on_the_chosen_sequence_only() -> None:
    image = _volume(3)
    biased = perturb(image, None, "bias_field", 0.5, seed=2, channels=[1])[0]
    log_ratio = torch.log(biased / image)
    assert float(log_ratio[:, 1].abs().max()) == pytest.approx(0.6 * 0.5, rel=1e-9)
    assert torch.equal(biased[:, [0, 2, 3]], image[:, [0, 2, 3]])


def test_rician_noise_on_background_has_rayleigh_mean() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.zeros((1, 1, 64, 64, 64), dtype=torch.float64)
    image[..., :32] = 100 + 10 * torch.randn((1, 1, 64, 64, 32), generator=g, dtype=torch.float64)
    noisy = perturb(image, None, "rician", 1.0, seed=0)[0]
    sigma = 0.5 * float(image[..., :32].std())
    assert float(noisy[..., 32:].mean()) == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)


def test_spike_adds_one_k_space_peak_of_its_height_and_gibbs_empties_the_outer_band() -> None:
    image = _volume(3)
    spiked = perturb(image, None, "spike", 1.0, seed=4)[0]
    dc = torch.fft.fftn(image, dim=(2, 3, 4)).flatten(2)[..., 0].abs()
    diff = (torch.fft.fftn(spiked, dim=(2, 3, 4)) - torch.fft.fftn(image, dim=(2, 3, 4))).abs()
    assert torch.allclose(diff.flatten(2).max(-1).values, 0.05 * dc, rtol=1e-6)
    assert int((diff.flatten(2) > 1e-6 * dc.unsqueeze(-1)).sum()) == 8  # a spike and its mirror per sequence
    ringed = perturb(image, None, "gibbs", 0.5)[0]
    k = torch.fft.fftshift(torch.fft.fftn(ringed, dim=(2, 3, 4)), dim=(2, 3, 4)).abs()
    assert float(k[:, :, :4].max()) < 1e-8 * float(k.max())  # kept: |frequency| <= 0.6 * 16 / 2, i.e. 4
    assert float(k[:, :, 13:].max()) < 1e-8 * float(k.max())
    assert float(k[:, :, 4:13, 4:13, 4:13].min()) > 0


def test_monai_transforms_keep_type_and_meta_and_move_labels_with_images() -> None:
    from monai.data import MetaTensor

    from robustseg.sensitivity import BasisPerturbation, BasisPerturbationd

    image = _rgb(size=40)[0]
    label = (image[:1] > 0.5).long()
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0]))
    meta_image = MetaTensor(image, affine=affine)
    out = BasisPerturbation("rotate", 0.5, seed=2)(meta_image)
    expected, expected_label = perturb(image[None], label[None], "rotate", 0.5, seed=2)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine)
    assert torch.allclose(out.as_tensor(), expected[0])
    assert isinstance(BasisPerturbation("blur", 0.5)(image.numpy()), np.ndarray)
    d = BasisPerturbationd(["image", "other"], "rotate", 0.5, label_keys="label", seed=2)(
        {"image": image, "other": image.clone(), "label": label}
    )
    assert torch.equal(d["label"], expected_label[0]) and torch.equal(d["image"], d["other"])
    untouched = BasisPerturbationd("image", "brightness_up", 0.5, label_keys="label")({"image": image, "label": label})
    assert untouched["label"] is label  # a photometric op leaves labels alone
