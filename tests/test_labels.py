"""Tests for :mod:`robustseg.labels`: region masks, heads and the class map they rebuild."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustseg.labels import BRATS, LabelScheme

# A hand-built 2-D class map holding every BraTS class, plus an ignored voxel (255) when asked.
CLASS_MAP_2D = np.array(
    [
        [0, 1, 2, 3],
        [3, 3, 1, 0],
        [2, 2, 0, 1],
    ]
)


def class_map(ndim: int) -> np.ndarray:
    """``(N=1, *spatial)`` class map, 2-D as above or 3-D as two differing slices of it."""
    if ndim == 2:
        return CLASS_MAP_2D[None]
    return np.stack([CLASS_MAP_2D, CLASS_MAP_2D[::-1]], axis=-1)[None]


def hand_regions(cmap: np.ndarray) -> dict[str, np.ndarray]:
    """The BraTS regions by definition, voxel by voxel."""
    return {
        "ET": cmap == 3,
        "TC": (cmap == 1) | (cmap == 3),
        "WT": (cmap == 1) | (cmap == 2) | (cmap == 3),
    }


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("with_channel", [False, True])
def test_brats_regions_match_definition(ndim: int, with_channel: bool) -> None:
    cmap = class_map(ndim)
    tensor = torch.as_tensor(cmap)
    if with_channel:
        tensor = tensor[:, None]
    masks = BRATS.to_regions(tensor)
    assert masks.shape == (1, 3, *cmap.shape[1:])
    assert masks.dtype == torch.float32
    expected = hand_regions(cmap)
    for r, name in enumerate(BRATS.region_names):
        np.testing.assert_array_equal(masks[:, r].numpy(), expected[name].astype(np.float32), err_msg=name)
    # spot checks written out by hand: voxel (0, 1) is necrotic core -> TC, WT; voxel (0, 2) is oedema -> WT only
    idx = (0, slice(None), 0, 1) + ((0,) if ndim == 3 else ())
    np.testing.assert_array_equal(masks[idx].numpy(), [0, 1, 1])
    idx = (0, slice(None), 0, 2) + ((0,) if ndim == 3 else ())
    np.testing.assert_array_equal(masks[idx].numpy(), [0, 0, 1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_ignore_index_voxels_are_in_no_region(ndim: int) -> None:
    scheme = LabelScheme(class_names=BRATS.class_names, regions=dict(BRATS.regions), ignore_index=255)
    cmap = class_map(ndim).copy()
    ignored = np.zeros_like(cmap, dtype=bool)
    ignored[0, 0, :2] = True
    cmap[ignored] = 255
    masks = scheme.to_regions(torch.as_tensor(cmap))
    assert masks.shape[1] == 3
    for r in range(3):
        assert not masks[:, r].numpy()[ignored].any()
    # voxels that are not ignored keep their regions
    expected = hand_regions(cmap)
    for r, name in enumerate(scheme.region_names):
        np.testing.assert_array_equal(masks[:, r].numpy()[~ignored], expected[name][~ignored])


@pytest.mark.parametrize("ignore_index", [255, -1, -100])
def test_ignore_index_outside_region_holding_background(ignore_index: int) -> None:
    scheme = LabelScheme(class_names=("bg", "fg"), regions={"any": (0, 1), "fg": (1,)}, ignore_index=ignore_index)
    masks = scheme.to_regions(torch.tensor([[0, 1, ignore_index]]))
    np.testing.assert_array_equal(masks[0].numpy(), [[1, 1, 0], [0, 1, 0]])


def test_default_regions_one_per_foreground_class() -> None:
    scheme = LabelScheme(class_names=("background", "liver", "spleen"))
    assert dict(scheme.regions) == {"liver": (1,), "spleen": (2,)}
    assert scheme.region_names == ("liver", "spleen")
    assert scheme.num_classes == 3
    cmap = torch.tensor([[[0, 1], [2, 1]]])
    masks = scheme.to_regions(cmap)
    np.testing.assert_array_equal(masks[0, 0].numpy(), [[0, 1], [0, 1]])
    np.testing.assert_array_equal(masks[0, 1].numpy(), [[0, 0], [1, 0]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"class_names": ("background",)}, "at least 2 classes"),
        ({"class_names": ("bg", "fg"), "regions": {"X": (2,)}}, "region 'X'"),
        ({"class_names": ("bg", "fg"), "regions": {"X": (-1,)}}, "region 'X'"),
        ({"class_names": ("bg", "fg"), "regions": {"X": ()}}, "region 'X'"),
        ({"class_names": ("bg", "fg"), "sigmoid_regions": ("nope",)}, "nope"),
    ],
)
def test_invalid_schemes_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LabelScheme(**kwargs)


@pytest.mark.parametrize("ndim", [2, 3])
def test_softmax_head_is_argmax(ndim: int) -> None:
    cmap = torch.as_tensor(class_map(ndim))
    # logits whose arg-max is the class map, with distractor values in the other channels
    gen = torch.Generator().manual_seed(0)
    logits = torch.rand((1, 4, *cmap.shape[1:]), generator=gen)
    logits.scatter_(1, cmap[:, None].long(), 5.0)
    out = BRATS.class_map_from_logits(logits)
    assert out.shape == (1, 1, *cmap.shape[1:])
    torch.testing.assert_close(out[:, 0], cmap.long())


def test_softmax_head_wrong_channel_count() -> None:
    with pytest.raises(ValueError, match="4 channels but has 3"):
        BRATS.class_map_from_logits(torch.zeros(1, 3, 2, 2), head="softmax")


def test_bad_head_name() -> None:
    with pytest.raises(ValueError, match="'softmax' or 'sigmoid'"):
        BRATS.class_map_from_logits(torch.zeros(1, 4, 2, 2), head="softplus")


def test_sigmoid_masks_rebuild_class_map() -> None:
    # channels in head order TC, WT, ET; one voxel per case written by hand
    tc = [0, 0, 1, 1]
    wt = [0, 1, 1, 1]
    et = [0, 0, 0, 1]
    masks = torch.tensor([tc, wt, et], dtype=torch.bool)[None, :, None, :]  # (1, 3, 1, 4)
    out = BRATS.class_map_from_region_masks(masks)
    assert out.shape == (1, 1, 1, 4)
    # nothing -> 0, WT only -> oedema 2, TC without ET -> necrotic core 1, ET -> enhancing 3
    np.testing.assert_array_equal(out[0, 0, 0].numpy(), [0, 2, 1, 3])


def test_sigmoid_head_thresholds_logits() -> None:
    logits = torch.tensor([[-10.0, 10.0, 10.0], [-10.0, 10.0, 10.0], [-10.0, -10.0, 10.0]])[None, :, :, None]
    out = BRATS.class_map_from_logits(logits, head="sigmoid")
    np.testing.assert_array_equal(out[0, 0, :, 0].numpy(), [0, 1, 3])


@pytest.mark.parametrize("ndim", [2, 3])
def test_sigmoid_round_trip(ndim: int) -> None:
    cmap = torch.as_tensor(class_map(ndim))[:, None]
    targets = BRATS.region_targets_for_sigmoid(cmap)
    assert targets.shape == (1, 3, *cmap.shape[2:])
    expected = hand_regions(cmap[:, 0].numpy())
    for c, name in enumerate(("TC", "WT", "ET")):
        np.testing.assert_array_equal(targets[:, c].numpy(), expected[name])
    logits = targets * 20.0 - 10.0
    torch.testing.assert_close(BRATS.class_map_from_logits(logits, head="sigmoid"), cmap.long())


def test_sigmoid_head_needs_sigmoid_regions_and_channels() -> None:
    with pytest.raises(ValueError, match="no sigmoid_regions"):
        LabelScheme(class_names=("bg", "fg")).class_map_from_logits(torch.zeros(1, 1, 2), head="sigmoid")
    with pytest.raises(ValueError, match="3 channels"):
        BRATS.class_map_from_logits(torch.zeros(1, 2, 2, 2), head="sigmoid")


def test_region_mask_labels_become_a_class_map_when_nested_and_are_refused_otherwise() -> None:
    classes = torch.tensor([0, 1, 2, 3, 2, 0]).reshape(1, 1, 6, 1)
    masks = BRATS.region_targets_for_sigmoid(
        classes
    )  # TC, WT, ET channels, as ConvertToMultiChannelBasedOnBratsClassesd
    assert torch.equal(BRATS.label_class_map(masks), classes)
    assert torch.equal(BRATS.label_class_map(classes), classes)  # a class map passes as it is
    broken = masks.clone()
    broken[0, 0, 0, 0] = 1  # TC at a voxel outside WT: no class map holds it
    with pytest.raises(ValueError, match="not nested"):
        BRATS.label_class_map(broken)
    with pytest.raises(ValueError, match="has 2 channels"):
        BRATS.label_class_map(masks[:, :2])
