from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from robustseg.data.discovery import discover_cases
from robustseg.data.validation import CaseValidationError, validate_case, validate_cases

C21 = "BraTS2021_00000"
C23 = "BraTS-GLI-00001-000"


def _record(root, case_id):
    _, records = discover_cases(root)
    (record,) = [r for r in records if r["case_id"] == case_id]
    return record


def _only_problem(root, case_id, **kwargs):
    problems = validate_case(_record(root, case_id), root, **kwargs)
    assert len(problems) == 1, [str(p) for p in problems]
    (p,) = problems
    assert isinstance(p, CaseValidationError) and isinstance(p, ValueError)
    assert p.case_id == case_id
    assert case_id in str(p) and p.path in str(p)
    return p


@pytest.mark.parametrize(("layout", "case_id"), [("brats2021", C21), ("brats2023", C23), ("decathlon", "BRATS_001")])
def test_sound_case_has_no_problems(tmp_path, make_case, layout, case_id):
    make_case(tmp_path, layout, case_id)
    assert validate_case(_record(tmp_path, case_id), tmp_path) == []


def test_missing_modality(tmp_path, make_case):
    case = make_case(tmp_path, "brats2021", C21, drop=("t2",))
    p = _only_problem(tmp_path, C21)
    assert p.path == str(case["files"]["t2"])
    assert "t2 image is missing" in p.reason and "add it" in p.reason


def test_missing_segmentation_of_labelled_dataset(tmp_path, make_case):
    make_case(tmp_path, "brats2021", C21, drop=("seg",))
    make_case(tmp_path, "brats2021", "BraTS2021_00001")
    p = _only_problem(tmp_path, C21)
    assert p.path.endswith(f"{C21}_seg.nii.gz") and "segmentation is missing" in p.reason


@pytest.mark.parametrize(
    ("mode", "words"), [("truncate", "truncated or corrupt"), ("garbage", "cannot be read as NIfTI")]
)
def test_unreadable_file(tmp_path, make_case, mode, words):
    case = make_case(tmp_path, "brats2023", C23, corrupt={"t1c": mode})
    p = _only_problem(tmp_path, C23)
    assert p.path == str(case["files"]["t1c"])
    assert words in p.reason


def test_non_nifti_image_is_refused(tmp_path, make_case):
    import nibabel as nib
    import numpy as np

    case = make_case(tmp_path, "brats2023", C23)
    path = case["files"]["t2"]
    # an MGH volume saved under the NIfTI name: nibabel opens it, but it is not NIfTI
    nib.save(nib.MGHImage(np.zeros((8, 8, 8), np.float32), np.eye(4)), tmp_path / "x.mgz")
    path.write_bytes((tmp_path / "x.mgz").read_bytes())
    (tmp_path / "x.mgz").unlink()
    p = _only_problem(tmp_path, C23)
    assert p.path == str(path)
    assert "NIfTI" in p.reason


@pytest.mark.parametrize("key", ["flair", "seg"])
def test_shape_mismatch(tmp_path, make_case, key):
    case = make_case(tmp_path, "brats2021", C21, bad_shape=key)
    p = _only_problem(tmp_path, C21)
    assert p.path == str(case["files"][key])
    assert "(8, 8, 9) differs from (8, 8, 8)" in p.reason and f"{C21}_t1.nii.gz" in p.reason


def test_affine_mismatch_beyond_tolerance(tmp_path, make_case):
    case = make_case(tmp_path, "brats2021", C21, bad_affine=("t1c", 0.01))
    p = _only_problem(tmp_path, C21)
    assert p.path == str(case["files"]["t1c"]) and "affine differs" in p.reason and "0.01" in p.reason


def test_affine_within_tolerance_passes_and_tolerance_is_configurable(tmp_path, make_case):
    make_case(tmp_path, "brats2021", C21, bad_affine=("seg", 1e-4))
    record = _record(tmp_path, C21)
    assert validate_case(record, tmp_path) == []
    (p,) = validate_case(record, tmp_path, atol=1e-5)
    assert p.path.endswith("_seg.nii.gz")


@pytest.mark.parametrize(("layout", "case_id", "key"), [("brats2023", C23, "t2"), ("decathlon", "BRATS_001", "image")])
def test_non_finite_intensities(tmp_path, make_case, layout, case_id, key):
    case = make_case(tmp_path, layout, case_id, nan=key)
    p = _only_problem(tmp_path, case_id)
    assert p.path == str(case["files"][key])
    assert "2 non-finite" in p.reason


@pytest.mark.parametrize(
    ("layout", "case_id", "value"), [("brats2021", C21, 3), ("brats2023", C23, 4), ("decathlon", "BRATS_001", 4)]
)
def test_unknown_label_value(tmp_path, make_case, layout, case_id, value):
    case = make_case(tmp_path, layout, case_id, unknown_label=value)
    p = _only_problem(tmp_path, case_id)
    assert p.path == str(case["files"]["seg"])
    assert f"[{value}]" in p.reason and layout in p.reason


@pytest.mark.parametrize("channels", [1, 3])
def test_decathlon_image_must_have_4_channels(tmp_path, make_case, channels):
    case = make_case(tmp_path, "decathlon", "BRATS_001", image_channels=channels)
    p = _only_problem(tmp_path, "BRATS_001")
    assert p.path == str(case["files"]["image"]) and "4-D with 4 channels" in p.reason


def test_decathlon_image_must_be_4d(tmp_path, make_case):
    import nibabel as nib
    import numpy as np

    case = make_case(tmp_path, "decathlon", "BRATS_001")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), case["files"]["image"])
    p = _only_problem(tmp_path, "BRATS_001")
    assert "must be 4-D" in p.reason and "(8, 8, 8)" in p.reason


def test_all_problems_of_a_case_are_listed(tmp_path, make_case):
    make_case(tmp_path, "brats2021", C21, drop=("t1",), nan="flair", unknown_label=7)
    problems = validate_case(_record(tmp_path, C21), tmp_path)
    assert [p.path.rsplit("_", 1)[1] for p in problems] == ["t1.nii.gz", "flair.nii.gz", "seg.nii.gz"]


def test_validate_cases_raises_for_first_bad_case(tmp_path, make_case):
    make_case(tmp_path, "brats2021", "BraTS2021_00000")
    make_case(tmp_path, "brats2021", "BraTS2021_00001", drop=("t1",), nan="t2")
    make_case(tmp_path, "brats2021", "BraTS2021_00002", bad_shape="t1c")
    _, records = discover_cases(tmp_path)
    with pytest.raises(CaseValidationError) as err:
        validate_cases(records, tmp_path)
    e = err.value
    assert e.case_id == "BraTS2021_00001" and len(e.problems) == 2
    assert "2 problems" in str(e) and "BraTS2021_00001_t1.nii.gz" in str(e) and "BraTS2021_00001_t2.nii.gz" in str(e)
    assert "BraTS2021_00002" not in str(e)
    assert pickle.loads(pickle.dumps(e)).problems[0].path == e.problems[0].path


def test_skip_invalid_keeps_good_cases_and_writes_report(tmp_path, make_case):
    make_case(tmp_path, "brats2023", "BraTS-GLI-00000-000")
    make_case(tmp_path, "brats2023", "BraTS-GLI-00001-000", corrupt={"seg": "truncate"})
    make_case(tmp_path, "brats2023", "BraTS-GLI-00002-000")
    make_case(tmp_path, "brats2023", "BraTS-GLI-00003-000", drop=("t1",), bad_affine=("t2", 1.0))
    _, records = discover_cases(tmp_path)
    report = tmp_path / "out" / "rejected.json"
    valid = validate_cases(records, tmp_path, skip_invalid=True, report_path=report)
    assert [r["case_id"] for r in valid] == ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000"]
    rejected = json.loads(report.read_text())
    assert [r["case_id"] for r in rejected] == ["BraTS-GLI-00001-000", "BraTS-GLI-00003-000"]
    assert [len(r["problems"]) for r in rejected] == [1, 2]
    assert rejected[0]["problems"][0]["path"].endswith("BraTS-GLI-00001-000-seg.nii.gz")
    assert "truncated" in rejected[0]["problems"][0]["reason"] and "re-extract" in rejected[0]["problems"][0]["reason"]


def test_skip_invalid_report_is_empty_list_when_all_valid(tmp_path, make_case):
    make_case(tmp_path, "decathlon", "BRATS_001")
    _, records = discover_cases(tmp_path)
    report = tmp_path / "rejected.json"
    assert validate_cases(records, tmp_path, skip_invalid=True, report_path=report) == records
    assert json.loads(report.read_text()) == []


def test_malformed_record(tmp_path):
    (p,) = validate_case({"case_id": "x", "layout": "brats2021", "image": "one.nii.gz"}, tmp_path)
    assert "needs 4 image paths" in str(p) and "'x'" in str(p)
    (p,) = validate_case({"case_id": "y", "layout": "nnunet", "image": []}, tmp_path)
    assert "unknown BraTS layout 'nnunet'" in str(p)


def test_entries_without_a_layout_get_the_file_checks_and_relative_paths_start_at_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nibabel as nib
    import numpy as np

    from robustseg.data.validation import validate_entries

    (tmp_path / "data").mkdir()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), affine), tmp_path / "data" / "img.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.uint8), affine), tmp_path / "data" / "seg.nii.gz")
    monkeypatch.chdir(tmp_path)
    entries = [{"image": "data/img.nii.gz", "label": "data/img.nii.gz"}]
    assert validate_entries(entries) == 1  # a zoo-style entry: no case_id, no layout, relative to the working folder
    with pytest.raises(CaseValidationError, match=r"spatial shape \(4, 4, 3\) differs"):
        validate_entries([{"image": "data/img.nii.gz", "label": "data/seg.nii.gz"}])
    with pytest.raises(CaseValidationError, match="the image is missing"):
        validate_entries([{"image": "data/nothing.nii.gz"}])
