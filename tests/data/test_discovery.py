from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from robustseg.data.cli import main, make_datalist
from robustseg.data.datalist import SPLITS, load_datalist
from robustseg.data.discovery import discover_cases


def test_brats2021_records_in_canonical_order(tmp_path, make_case):
    for case in ("BraTS2021_00002", "BraTS2021_00000"):
        make_case(tmp_path, "brats2021", case)
    layout, records = discover_cases(tmp_path)
    assert layout == "brats2021"
    assert [r["case_id"] for r in records] == ["BraTS2021_00000", "BraTS2021_00002"]
    c = "BraTS2021_00000"
    assert records[0] == {
        "case_id": c,
        "layout": "brats2021",
        "image": [f"{c}/{c}_t1.nii.gz", f"{c}/{c}_t1ce.nii.gz", f"{c}/{c}_t2.nii.gz", f"{c}/{c}_flair.nii.gz"],
        "label": f"{c}/{c}_seg.nii.gz",
    }


def test_brats2023_records_in_canonical_order(tmp_path, make_case):
    c = "BraTS-GLI-00001-000"
    make_case(tmp_path, "brats2023", c)
    layout, records = discover_cases(tmp_path)
    assert layout == "brats2023"
    assert records == [
        {
            "case_id": c,
            "layout": "brats2023",
            "image": [f"{c}/{c}-t1n.nii.gz", f"{c}/{c}-t1c.nii.gz", f"{c}/{c}-t2w.nii.gz", f"{c}/{c}-t2f.nii.gz"],
            "label": f"{c}/{c}-seg.nii.gz",
        }
    ]


def test_decathlon_records(tmp_path, make_case):
    for case in ("BRATS_002", "BRATS_001"):
        make_case(tmp_path, "decathlon", case)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "BRATS"}))
    (tmp_path / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")  # as in the MSD tarball
    layout, records = discover_cases(tmp_path)
    assert layout == "decathlon"
    assert records == [
        {
            "case_id": f"BRATS_00{i}",
            "layout": "decathlon",
            "image": f"imagesTr/BRATS_00{i}.nii.gz",
            "label": f"labelsTr/BRATS_00{i}.nii.gz",
        }
        for i in (1, 2)
    ]


def test_cases_one_level_deeper_are_found_with_paths_from_root(tmp_path, make_case):
    make_case(tmp_path, "brats2021", "BraTS2021_00000", subdir="BraTS2021_Training_Data")
    layout, records = discover_cases(tmp_path)
    assert layout == "brats2021"
    assert records[0]["image"][0] == "BraTS2021_Training_Data/BraTS2021_00000/BraTS2021_00000_t1.nii.gz"
    assert records[0]["label"] == "BraTS2021_Training_Data/BraTS2021_00000/BraTS2021_00000_seg.nii.gz"


def test_decathlon_task_folder_one_level_deeper(tmp_path, make_case):
    make_case(tmp_path, "decathlon", "BRATS_001", subdir="Task01_BrainTumour")
    _, records = discover_cases(tmp_path)
    assert records[0]["image"] == "Task01_BrainTumour/imagesTr/BRATS_001.nii.gz"


def test_search_depth_is_bounded(tmp_path, make_case):
    make_case(tmp_path, "brats2023", "BraTS-GLI-00001-000", subdir="a/b/c")  # case folder 4 levels down
    with pytest.raises(ValueError, match="no BraTS layout"):
        discover_cases(tmp_path, max_depth=3)
    assert len(discover_cases(tmp_path, max_depth=4)[1]) == 1


def test_mixed_layouts_are_refused_with_counts(tmp_path, make_case):
    make_case(tmp_path, "brats2021", "BraTS2021_00000")
    make_case(tmp_path, "brats2021", "BraTS2021_00001")
    make_case(tmp_path, "brats2023", "BraTS-GLI-00001-000")
    with pytest.raises(ValueError, match="more than one BraTS layout") as err:
        discover_cases(tmp_path)
    assert "2 brats2021" in str(err.value)
    assert "1 brats2023" in str(err.value)


def test_unknown_layout_is_refused_with_examples(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), folder / "patient7_T1.nii.gz")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no BraTS layout recognised") as err:
        discover_cases(tmp_path)
    assert "scans/patient7_T1.nii.gz" in str(err.value)
    assert "notes.txt" not in str(err.value)


def test_missing_root_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        discover_cases(tmp_path / "nowhere")


def test_partial_case_is_a_record_with_expected_paths(tmp_path, make_case):
    make_case(tmp_path, "brats2021", "BraTS2021_00000", drop=("t2", "seg"))
    make_case(tmp_path, "brats2021", "BraTS2021_00001")
    _, records = discover_cases(tmp_path)
    partial = records[0]
    assert partial["image"][2] == "BraTS2021_00000/BraTS2021_00000_t2.nii.gz"
    assert not (tmp_path / partial["image"][2]).exists()
    # another case is labelled, so the missing segmentation is kept for validation to report
    assert partial["label"] == "BraTS2021_00000/BraTS2021_00000_seg.nii.gz"


def test_unlabelled_dataset_has_no_label_key(tmp_path, make_case):
    make_case(tmp_path, "brats2023", "BraTS-GLI-00001-000", with_label=False)
    make_case(tmp_path, "brats2023", "BraTS-GLI-00002-000", with_label=False)
    _, records = discover_cases(tmp_path)
    assert len(records) == 2
    assert all("label" not in r and len(r["image"]) == 4 for r in records)


def test_duplicate_case_ids_are_refused(tmp_path, make_case):
    make_case(tmp_path, "brats2021", "BraTS2021_00000", subdir="copy1")
    make_case(tmp_path, "brats2021", "BraTS2021_00000", subdir="copy2")
    with pytest.raises(ValueError, match="more than once"):
        discover_cases(tmp_path)


# --- command line -------------------------------------------------------------------------------------------------


def test_cli_writes_datalist_relative_to_root(tmp_path, make_case, capsys):
    for i in range(4):
        make_case(tmp_path, "brats2023", f"BraTS-GLI-0000{i}-000")
    assert main(["--root", str(tmp_path), "--seed", "3", "--fractions", "0.5", "0.25", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "4 brats2023 cases" in out and "4 valid, 0 rejected" in out and str(tmp_path / "datalist.json") in out
    data = json.loads((tmp_path / "datalist.json").read_text())
    assert data["seed"] == 3 and data["layout"] == "brats2023"
    assert [len(data[s]) for s in SPLITS] == [2, 1, 1]
    entry = load_datalist(tmp_path / "datalist.json", "training")[0]
    assert all((tmp_path / p).is_file() for p in entry["image"])
    assert not any(p.startswith("/") for p in data["training"][0]["image"])  # stored relative


def test_cli_exits_2_on_empty_root(tmp_path, capsys):
    assert main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_datalist.py: error: no BraTS layout recognised")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "datalist.json").exists()


def test_cli_exits_2_on_invalid_case_and_skip_invalid_writes_report(tmp_path, make_case, capsys):
    for i in range(3):
        make_case(tmp_path, "brats2021", f"BraTS2021_0000{i}")
    make_case(tmp_path, "brats2021", "BraTS2021_00009", nan="flair")
    out = tmp_path / "lists" / "dl.json"
    assert main(["--root", str(tmp_path), "--output", str(out)]) == 2
    assert "BraTS2021_00009" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "--output", str(out), "--skip-invalid"]) == 0
    report = json.loads((tmp_path / "lists" / "dl_rejected.json").read_text())
    assert [r["case_id"] for r in report] == ["BraTS2021_00009"]
    data = json.loads(out.read_text())
    assert sorted(e["case_id"] for s in SPLITS for e in data[s]) == [f"BraTS2021_0000{i}" for i in range(3)]
    assert "base_dir" in capsys.readouterr().out  # datalist written outside root: says how to load it
    assert load_datalist(out, "training", base_dir=data["root"])[0]["label"].startswith(str(tmp_path))


def test_no_validate_keeps_invalid_cases(tmp_path, make_case):
    make_case(tmp_path, "brats2021", "BraTS2021_00000", corrupt={"t1": "garbage"})
    make_case(tmp_path, "brats2021", "BraTS2021_00001")
    summary = make_datalist(tmp_path, validate=False, fractions=(1.0, 0.0, 0.0))
    assert summary["valid"] == 2 and summary["splits"] == {"training": 2, "validation": 0, "testing": 0}


def test_script_runs_as_subprocess(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_datalist.py"
    res = subprocess.run([sys.executable, str(script), "--root", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "no BraTS layout recognised" in res.stderr
