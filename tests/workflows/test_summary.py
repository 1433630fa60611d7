"""The demo's summary reads MONAI MetricsSaver output and reports per-region Dice by case id."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from robustseg.workflows.summary import main, read_case_dice, summarize

RAW = """filename,class0,class1,class2,mean
/d/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz,0.5,0.8,0.9,0.7333
/d/BraTS2021_00002/BraTS2021_00002_t1.nii.gz,nan,0.6,0.7,0.65
/d/imagesTr/BRATS_003.nii.gz,0.7,1.0,0.5,0.7333
"""


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    (tmp_path / "val_mean_dice_raw.csv").write_text(RAW)
    return tmp_path


def test_cases_are_named_by_case_id_and_regions(metrics_dir: Path) -> None:
    cases = read_case_dice(metrics_dir)
    assert sorted(cases) == ["BRATS_003", "BraTS-GLI-00001-000", "BraTS2021_00002"]
    assert cases["BraTS-GLI-00001-000"] == {"ET": 0.5, "TC": 0.8, "WT": 0.9}


def test_summary_skips_nan_and_matches_hand_means(metrics_dir: Path) -> None:
    table = summarize(read_case_dice(metrics_dir))
    assert table["ET"]["mean"] == pytest.approx(0.6) and table["ET"]["n"] == 2  # the NaN case is left out
    assert table["TC"]["mean"] == pytest.approx(0.8) and table["TC"]["median"] == pytest.approx(0.8)
    assert table["WT"]["min"] == pytest.approx(0.5)
    assert table["mean"]["mean"] == pytest.approx((0.6 + 0.8 + 0.7) / 3)
    assert math.isnan(table["mean"]["median"])


def test_cli_prints_table_and_writes_case_csv(
    metrics_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path), "--metrics-dir", str(metrics_dir)]) == 0
    out = capsys.readouterr().out
    assert "Dice on 3 held-out cases" in out and "mlflow ui --backend-store-uri sqlite:///" in out
    rows = (metrics_dir / "dice_per_case.csv").read_text().splitlines()
    assert rows[0] == "case_id,ET,TC,WT" and len(rows) == 4


def test_cli_without_evaluation_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "run the bundle's evaluate workflow first" in capsys.readouterr().err


def test_cli_prints_the_iou_table_of_a_2d_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    summary = {"mIoU": 0.5, "pixel_accuracy": 0.9, "images": 3, "per_class_iou": {"background": 0.75, "cat": 0.25}}
    summary["per_class_iou"]["dog"] = math.nan
    (metrics / "iou_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IoU on 3 held-out images" in out and "label 255 ignored" in out
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert lines["background"] == "0.750" and lines["cat"] == "0.250" and lines["dog"] == "absent"
    assert lines["mIoU"] == "0.500"
