"""Training-batch policies, the held-out slice, the per-case score and the refresh's sampler table."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from robustseg.labels import BRATS
from robustseg.sensitivity import check_holdout, split_holdout
from robustseg.sensitivity.augment import (
    MonaiAugmentation,
    SampledAugmentation,
    TrivialAugmentSampler,
    UniformSampler,
    perturb_normalised,
)
from robustseg.sensitivity.perturbations import perturb
from robustseg.sensitivity.refresh import case_score, deepest_layer, sampler_table


def zscored(shape=(1, 2, 12, 10, 8), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(shape)
    x[..., 2:10, 2:8, 1:7] = torch.randn((*shape[:2], 8, 6, 6), generator=g)
    return x


def test_perturb_normalised_acts_on_a_raw_like_image_and_z_scores_again() -> None:
    x = zscored()
    out, _ = perturb_normalised(x, None, "rician", 0.6, seed=2, renormalise=True)
    inside = x.ne(0).any(1, keepdim=True)
    low = torch.where(inside, x, torch.tensor(1e9)).flatten(2).min(-1).values.view(1, 2, 1, 1, 1)
    raw = (x - low + 1) * inside
    moved, _ = perturb(raw, None, "rician", 0.6, seed=2)
    flat = moved[inside.expand_as(moved)].view(2, -1)
    expected = (moved - flat.mean(1).view(1, 2, 1, 1, 1)) / flat.std(1, unbiased=False).view(1, 2, 1, 1, 1) * inside
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out[~inside.expand_as(out)].abs().max() == 0
    # a natural-image op, or no renormalisation, is perturb itself; chosen channels leave the others untouched
    torch.testing.assert_close(
        perturb_normalised(x, None, "rician", 0.6, seed=2)[0], perturb(x, None, "rician", 0.6, seed=2)[0]
    )
    one, _ = perturb_normalised(x, None, "bias_field", 0.8, seed=1, channels=[1], renormalise=True)
    assert torch.equal(one[:, 0], x[:, 0]) and not torch.allclose(one[:, 1], x[:, 1])


def test_uniform_and_trivial_samplers_draw_what_they_say() -> None:
    ops = ["blur", "noise", "rotate"]
    g = torch.Generator().manual_seed(0)
    uniform = [UniformSampler(ops).draw_with(g) for _ in range(3000)]
    counts = {op: sum(d.op == op for d in uniform) for op in ops}
    assert all(abs(c / 3000 - 1 / 3) < 0.04 for c in counts.values())
    assert abs(np.mean([d.level for d in uniform]) - 0.5) < 0.03
    trivial = [TrivialAugmentSampler(ops).draw_with(g) for _ in range(4000)]
    assert abs(sum(d.op is None for d in trivial) / 4000 - 0.25) < 0.03  # the identity is one of four choices
    levels = {round(d.level * 30, 6) for d in trivial if d.op is not None}
    assert levels <= {float(k) for k in range(31)} and len(levels) > 25
    with pytest.raises(KeyError):
        UniformSampler(["snow"])


def test_sampled_augmentation_is_seeded_by_step_and_moves_labels_with_geometric_ops() -> None:
    images = torch.rand(3, 3, 16, 16)
    labels = torch.zeros(3, 1, 16, 16)
    labels[:, :, 4:12, 6:10] = 1
    augment = SampledAugmentation(UniformSampler(["rotate", "translate_x"]), seed=5)
    a_images, a_labels = augment(images, labels, step=7)
    b_images, b_labels = augment(images, labels, step=7)
    assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    c_images, _ = augment(images, labels, step=8)
    assert not torch.equal(a_images, c_images)
    assert not torch.equal(a_labels, labels)  # the label moved with the image
    assert sum(augment.counts.values()) == 9


def test_monai_augmentation_is_seeded_and_keeps_labels() -> None:
    x = zscored((2, 2, 12, 10, 8))
    labels = torch.ones(2, 1, 12, 10, 8)
    augment = MonaiAugmentation(seed=1)
    a, la = augment(x, labels, step=3)
    b, _ = augment(x, labels, step=3)
    c, _ = augment(x, labels, step=4)
    assert torch.equal(a, b) and not torch.equal(a, c) and la is labels and a.shape == x.shape


def entries(n: int) -> list[dict]:
    return [
        {"case_id": f"case{i:02d}", "image": [f"/d/case{i:02d}_t1.nii.gz"], "label": f"/d/case{i:02d}_seg.nii.gz"}
        for i in range(n)
    ]


def test_the_held_out_slice_does_not_depend_on_order_and_never_shares_files_with_validation_or_test() -> None:
    train, held = split_holdout(entries(20), fraction=0.2, minimum=2, seed=0)
    assert len(held) == 4 and len(train) == 16 and not {e["case_id"] for e in held} & {e["case_id"] for e in train}
    shuffled = entries(20)
    random.Random(3).shuffle(shuffled)
    assert sorted(e["case_id"] for e in split_holdout(shuffled, 0.2, 2, 0)[1]) == sorted(e["case_id"] for e in held)
    assert len(split_holdout(entries(5), 0.1, 2, 0)[1]) == 2  # the minimum
    assert len(split_holdout(entries(100), 0.2, 2, 0, maximum=8)[1]) == 8  # the maximum
    with pytest.raises(ValueError, match="too few"):
        split_holdout(entries(2), 0.5, 2, 0)
    check_holdout(held, {"validation": entries(30)[20:25], "testing": entries(30)[25:]})
    with pytest.raises(ValueError, match="validation"):
        check_holdout(held, {"validation": [held[0]], "testing": []})


def test_case_score_is_the_mean_dice_over_regions_by_hand() -> None:
    label = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    label[..., :2, :, :] = 2  # oedema: WT only
    label[..., 0, 0, 0] = 3  # one enhancing voxel: ET, TC, WT
    logits = torch.zeros(1, 4, 4, 4, 4)
    logits[:, 2, :2] = 5  # predicts oedema on the same half, misses the ET voxel
    score = case_score(BRATS)(logits, label)
    wt = 1.0  # WT: 32 predicted, 32 true
    et = tc = 0.0  # one true voxel, none predicted
    assert score == pytest.approx((et + tc + wt) / 3)


@pytest.mark.parametrize("policy", ["brats", "brats2023", "ignore"])
def test_case_score_equals_the_evaluations_region_metrics(policy: str) -> None:
    from robustseg.data.natural import get_dataset
    from robustseg.evaluation.metrics import mean_present, region_metrics

    voc = get_dataset("voc").label_scheme()
    for scheme, metric, shape in ((BRATS, "dice", (8, 8, 8)), (voc, "iou", (16, 16))):
        g = torch.Generator().manual_seed(1)
        k = len(scheme.class_names)
        for trial in range(6):
            label = torch.randint(0, min(k, 4), (1, 1, *shape), generator=g)
            if trial == 1:
                label[:] = 0  # empty regions
            if scheme.ignore_index is not None:
                label[..., 0, :] = scheme.ignore_index
            logits = torch.randn((1, k, *shape), generator=g) * (3 if trial % 2 else 0.1)
            if trial == 1:
                logits = torch.zeros((1, k, *shape))
            logits[:, 0] += 10.0 if trial in (1, 3) else 0.0  # a prediction of background only
            got = case_score(scheme, "softmax", metric, policy)(logits, label)
            classes = scheme.label_class_map(label)
            values = region_metrics(
                scheme.regions_from_logits(logits),
                scheme.to_regions(classes),
                scheme.region_names,
                valid=scheme.valid_mask(classes),
                empty_policy=policy,
                hd95=False,
                iou=metric == "iou",
            )[0]
            expected = mean_present([values[f"{r}_{metric}"] for r in scheme.region_names])
            assert got == pytest.approx(expected, nan_ok=True), (scheme.class_names[:3], trial)


def test_deepest_layer_finds_the_bottleneck_of_a_unet() -> None:
    net = UNet(3, 2, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    name = deepest_layer(net, torch.zeros(1, 2, 16, 16, 16))
    assert name in dict(net.named_modules())
    sizes = []
    handle = dict(net.named_modules())[name].register_forward_hook(lambda m, i, o: sizes.append(o.shape[2:]))
    net(torch.zeros(1, 2, 16, 16, 16))
    handle.remove()
    assert tuple(sizes[0]) == (4, 4, 4)  # 16 / 2 / 2: the coarsest grid


def test_sampler_table_ranks_levels_at_targets_by_the_interpolated_score() -> None:
    from robustseg.sensitivity.analysis import OpAnalysis
    from robustseg.sensitivity.curve import AdaptiveCurve, SensitivityCurve, SensitivityPoint

    points = (SensitivityPoint(0.0, 0.0, 0.0), SensitivityPoint(0.5, 0.2, 0.1), SensitivityPoint(1.0, 0.6, 0.3))
    curve = AdaptiveCurve(SensitivityCurve(points), (0.4, 0.8), (0.25, 0.75), 0.01, 3)
    analysis = OpAnalysis("blur", curve, 0.9, {0.0: 0.9, 0.5: 0.7, 1.0: 0.3})
    table = sampler_table({"blur": analysis})
    assert table["blur"] == [(0.25, pytest.approx(0.8)), (0.75, pytest.approx(0.5))]


def test_foreground_crop_centres_on_the_label_and_pads_small_cases() -> None:
    from robustseg.sensitivity.refresh import foreground_crop

    image = torch.arange(20 * 20, dtype=torch.float32).view(1, 1, 20, 20)
    label = torch.zeros(1, 1, 20, 20)
    label[..., 14:18, 2:4] = 1
    crop_image, crop_label = foreground_crop(image, label, [8, 8])
    assert crop_image.shape == (1, 1, 8, 8) and crop_label.sum() == label.sum()
    assert crop_image[0, 0, 0, 0] == image[0, 0, 11, 0]  # centre row (14 + 17) // 2 - 4 = 11, column clamped at 0
    small, _ = foreground_crop(image[..., :6, :6], label[..., :6, :6], [8, 8])
    assert small.shape == (1, 1, 8, 8) and small[0, 0, 6:].abs().max() == 0
