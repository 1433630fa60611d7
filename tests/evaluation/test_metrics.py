"""Tests for :mod:`robustseg.evaluation.metrics` against hand numpy Dice and brute-force surface distances."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion
from scipy.spatial.distance import cdist

from robustseg.attacks import ThreatModel
from robustseg.evaluation.metrics import (
    BRATS_EMPTY_HD95,
    EMPTY_POLICY_TEXT,
    case_metrics,
    describe_empty_policy,
    long_rows,
    region_dice_table,
    region_metrics,
)
from robustseg.labels import BRATS, LabelScheme

REGIONS = {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}


def tumour(shape: tuple[int, ...], centre: tuple[int, ...]) -> np.ndarray:
    """A class map with nested WT (radius 3), TC (radius 2) and ET (a shell of TC)."""
    grid = np.indices(shape)
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    out = np.zeros(shape, dtype=np.int64)
    out[r <= 3.2] = 2
    out[r <= 2.5] = 3
    out[r <= 1.0] = 1
    return out


def hand_dice(pred: np.ndarray, label: np.ndarray) -> float:
    return 2.0 * np.logical_and(pred, label).sum() / (pred.sum() + label.sum())


def brute_hd95(pred: np.ndarray, label: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Symmetric 95th-percentile surface distance over edge voxels (mask minus its erosion), all pairs by cdist."""
    edges = [np.argwhere(m ^ binary_erosion(m)) * np.asarray(spacing) for m in (pred, label)]
    d = cdist(edges[0], edges[1])
    return max(float(np.percentile(d.min(axis=1), 95)), float(np.percentile(d.min(axis=0), 95)))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("use_spacing", [False, True])
def test_dice_and_hd95_match_hand_computation(ndim: int, use_spacing: bool) -> None:
    shape = (12, 11) if ndim == 2 else (10, 9, 8)
    label = np.stack([tumour(shape, (5,) * ndim), tumour(shape, (4,) * ndim)])
    pred = np.stack([tumour(shape, (6,) + (5,) * (ndim - 1)), tumour(shape, (4,) * (ndim - 1) + (3,))])
    pred[1][(slice(0, 2),) * ndim] = 2  # a stray blob far from the tumour raises WT's HD95
    spacing = (1.0, 0.5, 2.0)[:ndim] if use_spacing else (1.0,) * ndim

    rows = case_metrics(
        torch.as_tensor(pred)[:, None], torch.as_tensor(label)[:, None], spacing=spacing if use_spacing else None
    )

    assert len(rows) == 2
    for b in range(2):
        for region, classes in REGIONS.items():
            p, g = np.isin(pred[b], classes), np.isin(label[b], classes)
            assert rows[b][f"{region}_dice"] == pytest.approx(hand_dice(p, g), abs=1e-6)
            assert rows[b][f"{region}_hd95"] == pytest.approx(brute_hd95(p, g, spacing), rel=1e-5)
    assert rows[1]["WT_hd95"] > rows[1]["TC_hd95"]


def single(pred_classes: list[int], label_classes: list[int], **kwargs: Any) -> dict[str, float]:
    """Metrics of one 2-D case: a 3 x 3 block of the listed classes in a 9 x 9 background."""
    maps = []
    for classes in (pred_classes, label_classes):
        m = np.zeros((9, 9), dtype=np.int64)
        for i, c in enumerate(classes):
            m[3 + i, 3:6] = c
        maps.append(torch.as_tensor(m)[None, None])
    return case_metrics(maps[0], maps[1], **kwargs)[0]


@pytest.mark.parametrize("policy", ["brats", "ignore"])
def test_both_empty(policy: str) -> None:
    row = single([2, 2, 2], [2, 2, 2], empty_policy=policy)  # oedema only: ET and TC empty in both
    expected = (1.0, 0.0) if policy == "brats" else (math.nan, math.nan)
    for region in ("ET", "TC"):
        assert (row[f"{region}_dice"], row[f"{region}_hd95"]) == pytest.approx(expected, nan_ok=True)
    assert row["WT_dice"] == pytest.approx(1.0) and row["WT_hd95"] == 0.0


@pytest.mark.parametrize("policy", ["brats", "ignore"])
def test_false_positive_on_empty_ground_truth(policy: str) -> None:
    row = single([3, 3, 3], [2, 2, 2], empty_policy=policy)  # ET predicted where the truth has none
    if policy == "brats":
        assert row["ET_dice"] == 0.0 and row["ET_hd95"] == BRATS_EMPTY_HD95
    else:
        assert math.isnan(row["ET_dice"]) and math.isnan(row["ET_hd95"])


@pytest.mark.parametrize("policy", ["brats", "ignore"])
def test_missed_region_scores_zero_under_both_policies(policy: str) -> None:
    row = single([2, 2, 2], [3, 3, 3], empty_policy=policy, empty_hd95=500.0)
    assert row["ET_dice"] == 0.0 and row["ET_hd95"] == 500.0


def test_empty_policy_text_names_the_values() -> None:
    assert "Dice 1" in EMPTY_POLICY_TEXT["brats"] and "373.13" in EMPTY_POLICY_TEXT["brats"]
    assert "NaN" in EMPTY_POLICY_TEXT["ignore"]
    assert "500" in describe_empty_policy("brats", 500.0)
    with pytest.raises(ValueError, match="empty_policy"):
        describe_empty_policy("zero")


def test_ignore_index_is_excluded_from_both_masks() -> None:
    scheme = LabelScheme(class_names=("background", "tumour"), ignore_index=255)
    label = np.zeros((1, 1, 6, 6), dtype=np.int64)
    label[0, 0, 1:4, 1:4] = 1
    label[0, 0, 4, :] = 255  # unlabelled row, predicted as tumour
    pred = label.copy()
    pred[0, 0, 4, :] = 1
    row = case_metrics(torch.as_tensor(pred), torch.as_tensor(label), scheme=scheme)[0]
    assert row["tumour_dice"] == pytest.approx(1.0) and row["tumour_hd95"] == 0.0
    without = case_metrics(torch.as_tensor(pred), torch.as_tensor(np.where(label == 255, 0, label)), scheme=scheme)
    assert without[0]["tumour_dice"] < 1.0


def test_region_table_skips_nan_and_long_rows() -> None:
    rows = [
        {"ET_dice": 0.5, "ET_hd95": 2.0, "WT_dice": 0.9, "WT_hd95": 1.0},
        {"ET_dice": math.nan, "ET_hd95": math.nan, "WT_dice": 0.7, "WT_hd95": 3.0},
    ]
    table = region_dice_table(rows)
    assert table["ET"] == {"dice": 0.5, "hd95": 2.0, "n": 1.0}
    assert table["WT"] == pytest.approx({"dice": 0.8, "hd95": 2.0, "n": 2.0})
    long = long_rows(rows, ["c1", "c2"], "fgsm")
    assert len(long) == 4
    assert long[1] == {"case_id": "c1", "condition": "fgsm", "region": "WT", "dice": 0.9, "hd95": 1.0}


def test_rejects_wrong_shapes_and_policy() -> None:
    x = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        case_metrics(torch.zeros(1, 4, 4, 4), x)
    with pytest.raises(ValueError, match="same shape"):
        case_metrics(torch.zeros(1, 1, 4, 5, dtype=torch.long), x)
    with pytest.raises(ValueError, match="empty_policy"):
        case_metrics(x, x, empty_policy="skip")
    assert BRATS.region_names == tuple(REGIONS)


PERMUTED_ANISOTROPIC = np.array(
    [[0.0, 0.0, 3.0, -20.0], [-0.9, 0.0, 0.0, 30.0], [0.0, 1.1, 0.0, -15.0], [0.0, 0.0, 0.0, 1.0]]
)


class FixedPrediction(torch.nn.Module):
    """Logits of a fixed class map, whatever the input (an 'oracle' to score known masks through the sweep)."""

    def __init__(self, classes: torch.Tensor, num_classes: int = 4) -> None:
        super().__init__()
        onehot = (
            torch.nn.functional.one_hot(classes.as_subclass(torch.Tensor).long(), num_classes).movedim(-1, 0).float()
        )
        self.register_buffer("logits", 10 * onehot[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, *x.shape[2:]) + 0 * x[:, :1]


def test_hd95_is_in_mm_of_the_preprocessed_grid_after_orientation_and_spacing(tmp_path) -> None:
    """Read with ITK (as .nrrd/.mha and many CT bundles are), the image has no pixdim and a stale header spacing
    after Orientationd + Spacingd; the old code then measured HD95 in voxels. The affine knows the grid."""
    import nibabel as nib
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    from robustseg.conditions import NoiseCondition
    from robustseg.evaluation.metrics import spacing_from_affine
    from robustseg.workflows.sweep import ConditionSweep

    label = tumour((24, 20, 10), (12, 10, 5)).astype(np.uint8)
    image = np.where(label > 0, 2.0, 1.0).astype(np.float32)
    for name, array in (("image", image), ("label", label)):
        nib.save(nib.Nifti1Image(array, PERMUTED_ANISOTROPIC), tmp_path / f"{name}.nii.gz")
    pipeline = Compose(
        [
            LoadImaged(["image", "label"], reader="ITKReader"),
            EnsureChannelFirstd(["image", "label"]),
            Orientationd(["image", "label"], axcodes="RAS"),
            Spacingd(["image", "label"], pixdim=(1.5, 1.5, 2.0), mode=("bilinear", "nearest")),
        ]
    )
    item = pipeline({"image": str(tmp_path / "image.nii.gz"), "label": str(tmp_path / "label.nii.gz")})
    assert spacing_from_affine(item["image"]) == pytest.approx([1.5, 1.5, 2.0])
    assert "pixdim" not in item["image"].meta  # the old code fell back to voxels
    stale = [float(v) for v in np.asarray(item["image"].meta["spacing"]).ravel()]
    assert stale == pytest.approx([0.9, 1.1, 3.0])  # the file's voxel size in its own axis order

    truth = torch.as_tensor(item["label"])[0].long()
    shifted = torch.roll(truth, shifts=2, dims=0)  # a prediction 2 voxels (3 mm) off along the first axis
    net = FixedPrediction(shifted)
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    dataset = [{**item, "case_id": "c0"}]
    sweep = ConditionSweep(
        net, checkpoint, lambda x, n: n(x), dataset, [NoiseCondition(ThreatModel("linf", 0.1))], tmp_path / "out",
        num_examples=0,
    )  # fmt: skip
    rows = {r["region"]: r for r in sweep.run()["rows"] if r["condition"] == "clean"}
    for region, classes in REGIONS.items():
        p, g = np.isin(shifted.numpy(), classes), np.isin(truth.numpy(), classes)
        assert rows[region]["hd95"] == pytest.approx(brute_hd95(p, g, (1.5, 1.5, 2.0)), rel=1e-5), region
        assert rows[region]["hd95"] != pytest.approx(brute_hd95(p, g, (1.0, 1.0, 1.0)), rel=1e-3)
        assert rows[region]["hd95"] != pytest.approx(brute_hd95(p, g, tuple(stale)), rel=1e-3)


def test_iou_per_region_and_no_hd95_for_natural_images() -> None:
    """IoU = |P & G| / |P | G| by hand, NaN for a region in neither mask; hd95=False leaves HD95 out (NaN)."""
    rng = np.random.default_rng(0)
    pred = torch.tensor(rng.random((2, 3, 9, 11)) > 0.5)
    label = torch.tensor(rng.random((2, 3, 9, 11)) > 0.6)
    pred[1, 2] = False
    label[1, 2] = False  # region 2 absent from case 1
    rows = region_metrics(pred, label, ["a", "b", "c"], iou=True, hd95=False, empty_policy="ignore")
    for b in range(2):
        for r, name in enumerate("abc"):
            p, g = pred[b, r].numpy(), label[b, r].numpy()
            union = (p | g).sum()
            expected = (p & g).sum() / union if union else math.nan
            got = rows[b][f"{name}_iou"]
            assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
            assert math.isnan(rows[b][f"{name}_hd95"])
    assert "a_iou" not in region_metrics(pred, label, ["a", "b", "c"])[0]
