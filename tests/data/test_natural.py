"""2-D datasets: the label tables, the readers on tiny trees in the real layouts, validation and the datalist."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from natural_trees import cityscapes_tree, context_tree, index_png, jpeg, label_map, voc_tree
from PIL import Image

from robustseg.data import cityscapes_labels
from robustseg.data.cli import main as datalist_main
from robustseg.data.cli import make_datalist
from robustseg.data.natural import DATASETS, get_dataset, voc_colormap
from robustseg.data.natural_discovery import discover_natural
from robustseg.data.natural_transforms import EncodeNaturalLabels, EncodeNaturalLabelsd
from robustseg.data.png import LabelFileError, read_label, write_label
from robustseg.data.validation import CaseValidationError, validate_case, validate_cases


def test_cityscapes_table_known_ids():
    table = cityscapes_labels.label_id_to_train_id()
    known = {7: 0, 8: 1, 11: 2, 17: 5, 21: 8, 23: 10, 24: 11, 26: 13, 31: 16, 33: 18}
    assert {i: int(table[i]) for i in known} == known
    for ignored in (0, 1, 4, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 200):  # void, parking, guard rail, caravan ...
        assert table[ignored] == 255
    assert len(cityscapes_labels.TRAIN_CLASSES) == 19
    assert cityscapes_labels.TRAIN_CLASSES[0] == "road" and cityscapes_labels.TRAIN_CLASSES[18] == "bicycle"
    assert cityscapes_labels.TRAIN_PALETTE[13] == (0, 0, 142)  # car


def test_cityscapes_table_matches_the_official_one():
    official = cityscapes_labels.official_table()
    if official is None:
        pytest.skip("cityscapesscripts is not installed; the known ids above pin the typed table")
    assert [tuple(r) for r in official] == [tuple(r) for r in cityscapes_labels.LABELS]


def test_voc_colormap():
    cmap = voc_colormap()
    assert cmap[0] == (0, 0, 0) and cmap[1] == (128, 0, 0) and cmap[2] == (0, 128, 0)
    assert cmap[15] == (192, 128, 128)  # person
    assert cmap[255] == (224, 224, 192)  # the void band's cream


def test_datasets_classes():
    assert DATASETS["voc"].num_classes == 21
    assert DATASETS["cityscapes"].num_classes == 19
    assert DATASETS["context60"].num_classes == 60 and DATASETS["context60"].class_names[0] == "background"
    assert DATASETS["context59"].num_classes == 59 and DATASETS["context59"].class_names[0] == "aeroplane"
    assert DATASETS["scenes"].num_classes >= 7
    scheme = DATASETS["voc"].label_scheme()
    assert scheme.ignore_index == 255 and scheme.region_names[15] == "person"
    with pytest.raises(ValueError, match="unknown 2-D dataset"):
        get_dataset("ade20k")


def test_palette_png_round_trip(tmp_path):
    ds = get_dataset("voc")
    classes = label_map([0, 3, 15, 255, 20])
    path = write_label(tmp_path / "p.png", classes, ds)
    img = Image.open(path)
    assert img.mode == "P"
    assert img.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]
    np.testing.assert_array_equal(np.asarray(img), classes)
    np.testing.assert_array_equal(read_label(path), classes)
    rgb = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(rgb, ds.colorize(classes))


def test_rgb_label_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "rgb.png"
    Image.open(write_label(tmp_path / "p.png", label_map([0, 1]), get_dataset("voc"))).convert("RGB").save(path)
    with pytest.raises(LabelFileError, match=r"loses the ids") as e:
        read_label(path, rgb_hint="SegmentationClass/")
    assert "SegmentationClass/" in str(e.value) and "RGB" in str(e.value)


# -- readers ---------------------------------------------------------------------------------------------------


def test_voc_reader_official_splits(tmp_path):
    voc_tree(tmp_path)
    found = discover_natural(tmp_path)
    assert found.layout == "voc2012" and found.dataset.name == "voc"
    assert [r["case_id"] for r in found.splits["train"]] == ["2007_000032", "2007_000039", "2007_000063"]
    assert [r["case_id"] for r in found.splits["val"]] == ["2007_000033", "2007_000042"]
    rec = found.splits["train"][0]
    assert rec["image"] == "VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg"
    assert rec["label"] == "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png"
    assert rec["label_encoding"] == "index" and rec["dataset"] == "voc"
    assert validate_case(rec, tmp_path) == []


@pytest.mark.parametrize("aug_list", [False, True])
def test_voc_reader_trainaug(tmp_path, aug_list):
    voc_tree(tmp_path, aug=("2008_000001", "2008_000002"), aug_list=aug_list)
    found = discover_natural(tmp_path)
    train = {r["case_id"]: r for r in found.splits["train"]}
    assert set(train) == {"2007_000032", "2007_000039", "2007_000063", "2008_000001", "2008_000002"}
    assert all("SegmentationClassAug" in r["label"] for r in train.values())
    assert all("/SegmentationClass/" in r["label"] for r in found.splits["val"])  # val keeps the official labels
    assert any("trainaug" in n for n in found.notes)
    plain = discover_natural(tmp_path, aug=False)
    assert len(plain.splits["train"]) == 3
    assert validate_cases(found.splits["train"] + found.splits["val"], tmp_path)


def test_voc_reader_missing_split_list(tmp_path):
    base = voc_tree(tmp_path)
    (base / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        discover_natural(tmp_path)


def test_cityscapes_reader_label_ids_and_train_ids(tmp_path):
    cityscapes_tree(tmp_path, train_ids_for=("aachen_000001_000019",))
    found = discover_natural(tmp_path)
    assert found.layout == "cityscapes"
    train = {r["case_id"]: r for r in found.splits["train"]}
    assert train["aachen_000000_000019"]["label"] == "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    assert train["aachen_000000_000019"]["label_encoding"] == "labelIds"
    assert train["aachen_000001_000019"]["label"].endswith("_gtFine_labelTrainIds.png")
    assert train["aachen_000001_000019"]["label_encoding"] == "trainIds"
    assert [r["case_id"] for r in found.splits["val"]] == ["lindau_000000_000019"]
    assert any("test split" in n for n in found.notes)
    for rec in [*train.values(), *found.splits["val"]]:
        assert validate_case(rec, tmp_path) == []
    # the labelIds file and the labelTrainIds file of one image encode the same classes
    enc = EncodeNaturalLabels("cityscapes")
    ids = read_label(tmp_path / train["aachen_000000_000019"]["label"])
    trained = read_label(tmp_path / train["aachen_000001_000019"]["label"])
    np.testing.assert_array_equal(enc(ids, "labelIds"), enc(trained, "trainIds"))


@pytest.mark.parametrize(("classes", "background", "first"), [(59, 255, 0), (60, 0, 1)])
def test_context_59_and_60(tmp_path, classes, background, first):
    context_tree(tmp_path)
    found = discover_natural(tmp_path, context_classes=classes)
    assert found.layout == "pascal_context" and found.dataset.name == f"context{classes}"
    rec = found.splits["train"][0]
    assert rec["label"] == "VOCdevkit/VOC2010/SegmentationClassContext/2008_000002.png"
    assert len(found.splits["train"]) == 2 and len(found.splits["val"]) == 1
    assert validate_case(rec, tmp_path) == []
    out = EncodeNaturalLabels(found.dataset)(read_label(tmp_path / rec["label"]))
    stored = label_map([0, 1, 59, 15])
    assert out[stored == 0].tolist()[0] == background  # background: ignored (59) or class 0 (60)
    assert out[stored == 1].tolist()[0] == first  # aeroplane
    assert out[stored == 59].tolist()[0] == 59 - (60 - classes)  # wood, the last class
    with pytest.raises(ValueError, match="59 or 60"):
        discover_natural(tmp_path, context_classes=61)


def test_no_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="no Pascal VOC, Cityscapes or Pascal-Context layout"):
        discover_natural(tmp_path)


# -- validation ------------------------------------------------------------------------------------------------


def _voc_record(tmp_path):
    voc_tree(tmp_path)
    return discover_natural(tmp_path).splits["train"][0]


def _one_problem(record, root) -> CaseValidationError:
    problems = validate_case(record, root)
    assert len(problems) == 1, [str(p) for p in problems]
    p = problems[0]
    assert p.case_id == record["case_id"] and p.path in str(p) and "robustseg datalist" in str(p)
    return p


def test_image_without_label(tmp_path):
    rec = _voc_record(tmp_path)
    (tmp_path / rec["label"]).unlink()
    p = _one_problem(rec, tmp_path)
    assert "has no label" in p.reason and p.path.endswith("2007_000032.png")


def test_missing_image(tmp_path):
    rec = _voc_record(tmp_path)
    (tmp_path / rec["image"]).unlink()
    assert "image is missing" in _one_problem(rec, tmp_path).reason


def test_label_of_another_size(tmp_path):
    rec = _voc_record(tmp_path)
    index_png(tmp_path / rec["label"], label_map([0, 1], size=(10, 16)))
    p = _one_problem(rec, tmp_path)
    assert "16x10" in p.reason and "16x12" in p.reason and "nearest" in p.reason


def test_label_values_outside_the_set(tmp_path):
    rec = _voc_record(tmp_path)
    index_png(tmp_path / rec["label"], label_map([0, 21, 40]))
    p = _one_problem(rec, tmp_path)
    assert "21, 40" in p.reason and "0..20 and 255" in p.reason


def test_rgb_label_in_validation(tmp_path):
    rec = _voc_record(tmp_path)
    path = tmp_path / rec["label"]
    Image.open(path).convert("RGB").save(path)
    p = _one_problem(rec, tmp_path)
    assert "colour image" in p.reason and "VOCtrainval_11-May-2012.tar" in p.reason


def test_cityscapes_colour_label_hint(tmp_path):
    cityscapes_tree(tmp_path)
    rec = discover_natural(tmp_path).splits["val"][0]
    rec["label"] = rec["label"].replace("_labelIds", "_color")
    assert "*_gtFine_labelIds.png" in _one_problem(rec, tmp_path).reason


@pytest.mark.parametrize("which", ["image", "label"])
def test_unreadable_file(tmp_path, which):
    rec = _voc_record(tmp_path)
    path = tmp_path / rec[which]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    p = _one_problem(rec, tmp_path)
    assert "corrupt or truncated" in p.reason


def test_jpeg_checked_by_decoding(tmp_path):
    rec = _voc_record(tmp_path)
    (tmp_path / rec["image"]).write_bytes(b"not a jpeg")
    assert "cannot be decoded" in _one_problem(rec, tmp_path).reason


# -- the datalist ----------------------------------------------------------------------------------------------


def test_datalist_keeps_official_splits(tmp_path):
    voc_tree(tmp_path, train=[f"2007_{i:06d}" for i in range(10)], val=["2008_000001", "2008_000002"])
    summary = make_datalist(tmp_path, val_fraction=0.2, seed=3)
    data = json.loads((tmp_path / "datalist.json").read_text())
    assert summary["splits"] == {"training": 8, "validation": 2, "testing": 2}
    assert [r["case_id"] for r in data["testing"]] == ["2008_000001", "2008_000002"]
    held = {r["case_id"] for r in data["validation"]}
    assert held <= {f"2007_{i:06d}" for i in range(10)} and not held & {r["case_id"] for r in data["training"]}
    assert data["dataset"] == "voc" and data["ignore_index"] == 255 and data["labels"]["15"] == "person"
    again = make_datalist(tmp_path, val_fraction=0.2, seed=3, overwrite=True)
    assert again["splits"] == summary["splits"]
    assert {r["case_id"] for r in json.loads((tmp_path / "datalist.json").read_text())["validation"]} == held


def test_datalist_cli_skip_invalid(tmp_path, capsys):
    base = voc_tree(tmp_path)
    index_png(base / "SegmentationClass" / "2007_000039.png", label_map([0, 30]))
    assert datalist_main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2007_000039" in err and "outside the voc" in err
    assert not (tmp_path / "datalist.json").exists()
    assert datalist_main(["--root", str(tmp_path), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "voc2012 images" in out and "1 rejected" in out
    rejected = json.loads((tmp_path / "datalist_rejected.json").read_text())
    assert [r["case_id"] for r in rejected] == ["2007_000039"]


def test_datalist_for_another_dataset_in_voc_layout(tmp_path):
    base = voc_tree(tmp_path)
    for case in ("2007_000032", "2007_000039", "2007_000063", "2007_000033", "2007_000042"):
        index_png(base / "SegmentationClass" / f"{case}.png", label_map([0, 6, 255]))
    summary = make_datalist(tmp_path, dataset="scenes", val_fraction=0.0)
    assert summary["dataset"] == "scenes" and summary["splits"]["validation"] == 0


# -- transforms ------------------------------------------------------------------------------------------------


def test_encode_labels_dict_reads_the_encoding():
    stored = torch.tensor(label_map([7, 26, 0, 33])[None].astype(np.float32))
    meta = MetaTensor(stored.clone(), meta={"filename_or_obj": "x.png"})
    out = EncodeNaturalLabelsd("label", dataset="cityscapes")({"label": meta, "label_encoding": "labelIds"})["label"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "x.png"
    assert sorted(torch.unique(out).tolist()) == [0.0, 13.0, 18.0, 255.0]
    with pytest.raises(ValueError, match=r"\[26, 33\] outside"):  # 26 and 33 are label ids, not train ids
        EncodeNaturalLabelsd("label", dataset="cityscapes")({"label": stored.clone(), "label_encoding": "trainIds"})


def test_encode_labels_refuses_nan_and_unknown_encoding():
    with pytest.raises(ValueError, match="NaN"):
        EncodeNaturalLabels("voc")(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="no label encoding 'labelIds'"):
        EncodeNaturalLabels("voc", "labelIds")


def test_scene_dataset_reads_through_the_voc_reader(tmp_path):
    base = tmp_path / "scenes"
    jpeg(base / "JPEGImages" / "scene_00000.jpg", 0)
    index_png(base / "SegmentationClass" / "scene_00000.png", label_map([0, 6, 255]))
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("scene_00000\n")
    (lists / "val.txt").write_text("scene_00000\n")
    found = discover_natural(base, dataset="scenes")
    assert found.layout == "voc2012" and found.splits["train"][0]["dataset"] == "scenes"
