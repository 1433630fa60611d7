"""configs/corruptions.json on both bundles, tiny: BraTS-C and the natural-image corruptions as conditions of the
sweep, the ROOD summary from the scored rows, tests between models, resume, one MLflow run."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import REPO, config_files, copy_bundle, run_bundle
from mlflow.tracking import MlflowClient
from test_natural2d_bundle import TINY_2D, scenes, trained_2d  # noqa: F401  (fixtures)

from robustseg.tracking import default_tracking_uri

pytestmark = pytest.mark.slow

CORRUPTIONS = str(REPO / "configs" / "corruptions.json")


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_brats_c_scores_two_models_summarises_rood_style_and_resumes(
    tmp_path: Path, phantom_root: Path, trained: Path
) -> None:
    bundle = copy_bundle(tmp_path)
    (bundle / "models").mkdir()
    shutil.copy(trained / "models" / "model.pt", bundle / "models" / "model.pt")
    (bundle / "models" / "other").mkdir()
    shutil.copy(trained / "models" / "model.pt", bundle / "models" / "other" / "model.pt")
    settings = {
        "corruption_models": [f"baseline={bundle / 'models/model.pt'}", f"other={bundle / 'models/other/model.pt'}"],
        "corruptions": [{"name": "bias_field", "severities": [1, 5]}, {"name": "missing_sequence", "severities": [5]}],
    }
    run_bundle(bundle, phantom_root, [*config_files(bundle), CORRUPTIONS], **settings)
    out = bundle / "eval" / "corruptions"
    report = out / "report"
    assert (report / "report.html").is_file() and (report / "curves_dice.png").is_file()
    assert (report / "gallery.png").is_file()
    scores = read(report / "scores.csv")
    conditions = {r["condition"] for r in scores}
    assert conditions == {"clean", "bias_field@1", "bias_field@5", "missing_sequence@5"}
    # the summary against a hand computation from the scored rows
    summary = {(r["model"], r["corruption"], r["region"]): r for r in read(report / "summary.csv")}
    for region in ("ET", "TC", "WT"):
        mean = {
            c: np.nanmean(
                [
                    float(r["dice"])
                    for r in scores
                    if r["model"] == "baseline" and r["region"] == region and r["condition"] == c
                ]
            )
            for c in ("clean", "bias_field@1", "bias_field@5")
        }
        w1, w5 = 2 / 3, (2 / 3) ** 5
        row = summary[("baseline", "bias_field", region)]
        expected = (w1 * mean["bias_field@1"] + w5 * mean["bias_field@5"] + mean["clean"]) / (w1 + w5 + 1)
        if not math.isnan(expected):
            assert float(row["overall"]) == pytest.approx(expected)
    # two models: tests between them under every corruption, one Holm family
    tests = read(report / "model_tests.csv")
    assert {r["condition"] for r in tests} >= {"clean", "bias_field@5", "missing_sequence@5"}
    p_holm = [float(r["p_holm"]) for r in tests if r["p_holm"] not in ("", "nan")]
    p_raw = [float(r["p_value"]) for r in tests if r["p_holm"] not in ("", "nan")]
    assert all(h >= p - 1e-12 for h, p in zip(p_holm, p_raw, strict=True))
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    experiment = client.get_experiment_by_name("brats_unet3d")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.runName = 'corruptions'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert any(k.endswith("_overall") for k in runs[0].data.metrics)
    history = client.get_metric_history(runs[0].info.run_id, "dice_WT_bias_field_baseline")
    assert sorted(m.step for m in history) == [0, 1, 5]
    # a second run reuses every stored row
    rows_before = (out / "baseline" / "results.csv").read_text()
    run_bundle(bundle, phantom_root, [*config_files(bundle), CORRUPTIONS], **settings)
    assert (out / "baseline" / "results.csv").read_text() == rows_before


def test_natural_c_on_the_2d_bundle(tmp_path: Path, scenes: Path, trained_2d: Path) -> None:  # noqa: F811
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_2d / "configs", bundle / "configs")
    shutil.copytree(trained_2d / "models", bundle / "models")
    files = [str(bundle / "configs" / "train.json"), CORRUPTIONS]
    run_bundle(
        bundle,
        scenes,
        files,
        settings=TINY_2D,
        corruption_models=[f"model={bundle / 'models/model.pt'}"],
        corruptions=[{"name": n, "severities": [3]} for n in ("gaussian_noise", "jpeg", "fog")],
    )
    report = bundle / "eval" / "corruptions" / "report"
    summary = read(report / "summary.csv")
    assert {r["corruption"] for r in summary} == {"gaussian_noise", "jpeg", "fog", "all corruptions"}
    assert "mIoU" in {r["region"] for r in summary}
    assert not (report / "model_tests.csv").exists()  # one model: no tests between models
