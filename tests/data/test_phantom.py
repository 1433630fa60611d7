from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from robustseg.data.datalist import load_datalist
from robustseg.data.layouts import get_layout
from robustseg.data.phantom import PhantomConfig, case_id, generate_case, make_phantom_dataset, mni152_anatomy

SPACING = 4.0
CONFIG = PhantomConfig(spacing=SPACING)
T1, T1C, T2, FLAIR = range(4)


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return [generate_case(i, seed=3, config=CONFIG) for i in range(4)]


@pytest.fixture(scope="module")
def maps() -> dict[str, np.ndarray]:
    return mni152_anatomy(SPACING).probability_maps()


def _healthy(case: dict) -> np.ndarray:
    """Brain voxels at least two voxels away from the tumour."""
    return mni152_anatomy(SPACING).mask & ~ndimage.binary_dilation(case["label"] > 0, iterations=2)


def test_arrays(cases):
    anatomy = mni152_anatomy(SPACING)
    for case in cases:
        assert case["image"].shape == (4, *anatomy.shape) and case["image"].dtype == np.float32
        assert case["label"].shape == anatomy.shape and case["label"].dtype == np.uint8
        assert np.allclose(np.diag(case["affine"])[:3], SPACING)
        assert np.all(case["image"][:, ~anatomy.mask] == 0), "background must be zero outside the brain mask"
        assert np.all(case["image"][:, anatomy.mask] > 0)


def test_regions_nested_and_inside_brain(cases):
    mask = mni152_anatomy(SPACING).mask
    for case in cases:
        label = case["label"]
        assert set(np.unique(label)) == {0, 1, 2, 3}, "every case has necrosis, oedema and enhancing tumour"
        et, tc, wt = label == 3, (label == 1) | (label == 3), label > 0
        assert not (et & ~tc).any() and not (tc & ~wt).any()
        assert not (wt & ~mask).any(), "the tumour must lie inside the brain mask"
        # geometric nesting: the necrosis is wrapped in the rim, the core (mostly) in oedema
        assert not (ndimage.binary_dilation(label == 1) & ~tc).any()
        core_shell = ndimage.binary_dilation(tc) & ~tc & mask
        assert (label[core_shell] == 2).mean() > 0.6


def test_contrast_order(cases, maps):
    for case in cases:
        healthy = _healthy(case)
        med = {name: np.median(case["image"][:, (maps[name] > 0.85) & healthy], axis=1) for name in ("wm", "gm", "csf")}
        assert med["wm"][T1] > med["gm"][T1] > med["csf"][T1]
        assert med["csf"][T2] > med["gm"][T2] > med["wm"][T2]
        assert med["csf"][FLAIR] < min(med["gm"][FLAIR], med["wm"][FLAIR])
        et, ed, ncr = (np.median(case["image"][:, case["label"] == k], axis=1) for k in (3, 2, 1))
        assert et[T1C] > med["wm"][T1C], "enhancing rim brighter than WM on T1c"
        assert ed[FLAIR] > 1.1 * med["wm"][FLAIR], "oedema brighter than WM on FLAIR"
        assert ncr[T1C] < med["wm"][T1C] and ncr[T1] < med["gm"][T1], "necrosis dark on T1 and T1c"
        assert ncr[T2] > med["gm"][T2] and ed[T2] > med["gm"][T2], "necrosis and oedema bright on T2"


def test_tumour_and_healthy_ranges_overlap_in_every_modality(cases):
    for case in cases:
        tumour, healthy = case["label"] > 0, _healthy(case)
        for m in range(4):
            t_lo, t_hi = np.percentile(case["image"][m][tumour], [5, 95])
            h_lo, h_hi = np.percentile(case["image"][m][healthy], [5, 95])
            assert min(t_hi, h_hi) > max(t_lo, h_lo), f"{case['case_id']} modality {m}: no single threshold"


def test_same_seed_same_arrays_other_seed_other_arrays(cases):
    again = generate_case(1, seed=3, config=CONFIG)
    assert again["image"].tobytes() == cases[1]["image"].tobytes()
    assert again["label"].tobytes() == cases[1]["label"].tobytes()
    other = generate_case(1, seed=4, config=CONFIG)
    assert not np.array_equal(other["image"], cases[1]["image"])
    assert not np.array_equal(other["label"], cases[1]["label"])
    assert not np.array_equal(cases[0]["label"], cases[1]["label"])


def test_rim_thick_enough_at_2mm():
    case = generate_case(0, seed=0, config=PhantomConfig())
    assert case["image"].shape == (4, 99, 117, 95)
    label = case["label"]
    tc, ncr = (label == 1) | (label == 3), label == 1

    def surface(b: np.ndarray) -> int:
        return int((b & ~ndimage.binary_erosion(b)).sum())

    thickness = (label == 3).sum() / (0.5 * (surface(tc) + surface(ncr)))
    assert thickness >= 2.0
    wt_diameter = 2 * (3 * (label > 0).sum() * 8 / (4 * np.pi)) ** (1 / 3)
    assert 30 <= wt_diameter <= 80


def test_files_datalist_and_case_independent_of_num_cases(tmp_path, cases):
    path = make_phantom_dataset(tmp_path, num_cases=3, seed=3, config=CONFIG, progress=False)
    assert path == tmp_path / "datalist.json"
    data = json.loads(path.read_text())
    assert data["source"] == "phantom" and data["config"]["spacing"] == SPACING
    assert sum(len(data[s]) for s in ("training", "validation", "testing")) == 3
    layout = get_layout("brats2023")
    for i in range(3):
        cid = case_id(i)
        for suffix in (*layout.modality_suffixes, layout.label_suffix):
            assert (tmp_path / cid / f"{cid}-{suffix}.nii.gz").is_file()
    entries = load_datalist(path, "training")
    assert all(e["layout"] == "brats2023" and len(e["image"]) == 4 for e in entries)
    # case 1 of a 3-case dataset is case 1 generated on its own
    label = nib.load(tmp_path / case_id(1) / f"{case_id(1)}-seg.nii.gz")
    assert label.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(np.asarray(label.dataobj), cases[1]["label"])
    np.testing.assert_allclose(label.affine, cases[1]["affine"])
    flair = nib.load(tmp_path / case_id(1) / f"{case_id(1)}-t2f.nii.gz")
    assert flair.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(flair.dataobj), cases[1]["image"][FLAIR])


def _cli():
    script = Path(__file__).parents[2] / "scripts" / "make_phantoms.py"
    spec = importlib.util.spec_from_file_location("make_phantoms", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    assert _cli().main(["--output", str(tmp_path), "--num-cases", "2", "--spacing", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "datalist.json") in out and "training" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--num-cases", "0"],
        ["--num-cases", "2", "--spacing", "0.5"],
        ["--num-cases", "2", "--fractions", "1", "1", "0"],
        ["--num-cases", "2", "--seed", "-1"],
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as e:
        _cli().main(["--output", str(tmp_path), *args])
    assert e.value.code == 2
    assert "must" in capsys.readouterr().err
    assert not (tmp_path / "datalist.json").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="spacing"):
        PhantomConfig(spacing=0.5)
    with pytest.raises(ValueError, match="wt_diameter_mm"):
        PhantomConfig(wt_diameter_mm=(70.0, 30.0))
    with pytest.raises(ValueError, match="num_cases"):
        make_phantom_dataset("unused", num_cases=0)
