from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

from robustseg.data.transforms import (
    CanonicalBraTSd,
    MapBraTSLabels,
    ReorderBraTSChannels,
    ToBraTSLabels,
    ToBraTSLabelsd,
)

# raw value -> canonical, written out by hand from the BraTS and MSD papers (not taken from layouts.py)
EXPECTED = {
    "brats2021": {0: 0, 1: 1, 2: 2, 4: 3},  # 1 NCR/NET, 2 ED, 4 ET
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 3},  # 1 NCR, 2 ED, 3 ET
    "decathlon": {0: 0, 1: 2, 2: 1, 3: 3},  # 1 oedema, 2 non-enhancing, 3 enhancing
}
ARRAY_TYPES = [np.asarray, torch.as_tensor, MetaTensor]


def _raw(layout: str) -> np.ndarray:
    return np.array(sorted(EXPECTED[layout]) * 2, dtype=np.uint8).reshape(1, 2, 2, 2)


@pytest.mark.parametrize("layout", sorted(EXPECTED))
@pytest.mark.parametrize("to_type", ARRAY_TYPES)
def test_map_labels_matches_hand_written_table(layout, to_type):
    raw = _raw(layout)
    out = MapBraTSLabels(layout)(to_type(raw))
    assert type(out) is type(to_type(raw))
    expected = np.vectorize(EXPECTED[layout].get)(raw)
    np.testing.assert_array_equal(np.asarray(out), expected)
    assert np.asarray(out).dtype == raw.dtype


def test_map_labels_examples():
    np.testing.assert_array_equal(MapBraTSLabels("brats2021")(np.array([0, 4, 4, 2])), [0, 3, 3, 2])
    np.testing.assert_array_equal(MapBraTSLabels("decathlon")(np.array([1, 2, 3, 0])), [2, 1, 3, 0])


@pytest.mark.parametrize(("layout", "bad"), [("brats2021", 3), ("brats2023", 4), ("decathlon", 5)])
@pytest.mark.parametrize("to_type", ARRAY_TYPES)
def test_map_labels_unknown_values_raise(layout, bad, to_type):
    raw = _raw(layout).astype(np.float32)
    raw[0, 0, 0, 0] = bad
    raw[0, 0, 0, 1] = 0.5
    with pytest.raises(ValueError, match=layout) as err:
        MapBraTSLabels(layout)(to_type(raw))
    assert f"[0.5, {float(bad)}]" in str(err.value)


def test_map_labels_nan_raises():
    with pytest.raises(ValueError, match="nan"):
        MapBraTSLabels("brats2023")(np.array([0.0, np.nan]))


@pytest.mark.parametrize("layout", sorted(EXPECTED))
@pytest.mark.parametrize("to_type", ARRAY_TYPES)
def test_to_brats_labels_inverts_map(layout, to_type):
    raw = to_type(_raw(layout))
    back = ToBraTSLabels(layout)(MapBraTSLabels(layout)(raw))
    np.testing.assert_array_equal(np.asarray(back), np.asarray(raw))


def test_to_brats_labels_values_and_unknown():
    np.testing.assert_array_equal(ToBraTSLabels("brats2021")(np.array([0, 1, 2, 3])), [0, 1, 2, 4])
    with pytest.raises(ValueError, match=r"\[4\]"):
        ToBraTSLabels("brats2021")(np.array([0, 4]))


def _decathlon_image(to_type):
    # file channels: FLAIR, T1w, T1gd, T2w; each channel filled with a code of its modality
    codes = {"flair": 40.0, "t1": 10.0, "t1c": 20.0, "t2": 30.0}
    img = np.stack([np.full((3, 3, 3), codes[m], np.float32) for m in ("flair", "t1", "t1c", "t2")])
    return to_type(img)


@pytest.mark.parametrize("to_type", ARRAY_TYPES)
def test_decathlon_reorder_moves_flair_to_last(to_type):
    out = ReorderBraTSChannels("decathlon")(_decathlon_image(to_type))
    assert type(out) is type(_decathlon_image(to_type))
    np.testing.assert_array_equal(np.asarray(out)[:, 0, 0, 0], [10.0, 20.0, 30.0, 40.0])  # T1, T1c, T2, FLAIR


@pytest.mark.parametrize("layout", ["brats2021", "brats2023"])
def test_reorder_is_identity_for_per_modality_layouts(layout):
    img = _decathlon_image(np.asarray)
    np.testing.assert_array_equal(ReorderBraTSChannels(layout)(img), img)


def test_reorder_refuses_channel_last_image():
    img = np.zeros((3, 3, 3, 4), np.float32)  # as loaded without ensure_channel_first
    with pytest.raises(ValueError, match=r"channel-first.*\(3, 3, 3, 4\)"):
        ReorderBraTSChannels("decathlon")(img)


def test_canonical_d_keeps_meta_tensor_affine_and_reads_layout():
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    image = MetaTensor(_decathlon_image(torch.as_tensor), affine=affine, meta={"filename_or_obj": "BRATS_001.nii.gz"})
    label = MetaTensor(torch.as_tensor(_raw("decathlon")), affine=affine)
    out = CanonicalBraTSd()({"image": image, "label": label, "layout": "decathlon", "case_id": "BRATS_001"})
    assert isinstance(out["image"], MetaTensor) and isinstance(out["label"], MetaTensor)
    torch.testing.assert_close(out["image"].affine, affine.double())
    torch.testing.assert_close(out["label"].affine, affine.double())
    assert out["image"].meta["filename_or_obj"] == "BRATS_001.nii.gz"
    assert out["image"][:, 0, 0, 0].tolist() == [10.0, 20.0, 30.0, 40.0]
    np.testing.assert_array_equal(out["label"].numpy(), np.vectorize(EXPECTED["decathlon"].get)(_raw("decathlon")))
    assert out["case_id"] == "BRATS_001"


def test_canonical_d_default_layout_and_missing_label():
    raw = _raw("brats2021")
    out = CanonicalBraTSd(default_layout="brats2021")({"label": raw.copy()})
    assert out["label"].max() == 3
    with pytest.raises(ValueError, match="brats2023"):  # default default: brats2023 has no 4
        CanonicalBraTSd()({"label": raw.copy()})
    img = _decathlon_image(np.asarray)
    out = CanonicalBraTSd()({"image": img, "layout": "decathlon"})  # unlabelled case
    assert out["image"][3, 0, 0, 0] == 40.0 and "label" not in out
    with pytest.raises(ValueError, match="unknown BraTS layout"):
        CanonicalBraTSd()({"image": img, "layout": "brats2019"})


def test_canonical_d_wraps_the_array_transforms(monkeypatch):
    calls = []
    monkeypatch.setattr(MapBraTSLabels, "__call__", lambda self, x: calls.append(("map", self.layout.name)) or x)
    monkeypatch.setattr(
        ReorderBraTSChannels, "__call__", lambda self, x: calls.append(("reorder", self.layout.name)) or x
    )
    CanonicalBraTSd()({"image": 0, "label": 0, "layout": "brats2021"})
    assert calls == [("reorder", "brats2021"), ("map", "brats2021")]


def test_to_brats_labels_d():
    pred = MetaTensor(torch.tensor([[0, 1, 2, 3]]), affine=torch.eye(4) * 2)
    out = ToBraTSLabelsd("pred")({"pred": pred, "layout": "brats2021"})
    assert out["pred"].tolist() == [[0, 1, 2, 4]] and isinstance(out["pred"], MetaTensor)
    torch.testing.assert_close(out["pred"].affine, (torch.eye(4) * 2).double())
    assert ToBraTSLabelsd("pred")({"pred": np.array([1, 2])})["pred"].tolist() == [1, 2]  # brats2023 default


def test_pipeline_from_disk(tmp_path, make_case):
    """LoadImaged + CanonicalBraTSd on a written Decathlon case give canonical channels and labels."""
    from robustseg.data.discovery import discover_cases

    make_case(tmp_path, "decathlon", "BRATS_001")
    _, (record,) = discover_cases(tmp_path)
    data = {**record, "image": str(tmp_path / record["image"]), "label": str(tmp_path / record["label"])}
    out = Compose([LoadImaged(["image", "label"], ensure_channel_first=True), CanonicalBraTSd()])(data)
    raw = LoadImaged(["image", "label"], ensure_channel_first=True)(data)
    assert out["image"].shape == (4, 8, 8, 8)
    torch.testing.assert_close(out["image"][3], raw["image"][0])  # FLAIR moved from channel 0 to 3
    assert sorted(torch.unique(out["label"]).tolist()) == [0, 1, 2, 3]
    assert torch.equal(out["label"] == 1, raw["label"] == 2)


def test_saved_maps_are_written_in_the_input_layout_s_label_values() -> None:
    """Canonical ET (3) is saved as 4 for a BraTS 2018-2022 case, an abstain marker stays, and the inverse holds."""
    import torch

    from robustseg.data.transforms import from_input_labels, to_input_labels
    from robustseg.labels import BRATS, LabelScheme

    classes = torch.tensor([[0, 1, 2, 3, 255]])
    raw = to_input_labels(classes, BRATS.class_names, "brats2021", keep=(255,))
    assert raw.tolist() == [[0, 1, 2, 4, 255]]
    assert from_input_labels(raw, BRATS.class_names, "brats2021", keep=(255,)).tolist() == classes.tolist()
    assert to_input_labels(classes[:, :4], BRATS.class_names, "brats2023").tolist() == [[0, 1, 2, 3]]
    assert to_input_labels(classes[:, :4], BRATS.class_names, None).tolist() == [[0, 1, 2, 3]]  # layout unknown
    other = LabelScheme(("background", "a", "b", "c"))
    assert to_input_labels(classes[:, :4], other.class_names, "brats2021").tolist() == [[0, 1, 2, 3]]
