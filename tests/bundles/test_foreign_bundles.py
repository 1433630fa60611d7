"""``robustseg audit`` on bundles it has never seen: model zoo shaped BraTS (sigmoid) and CT (softmax), and ours.

Each audit runs with no user-written id; the clean condition's per-region Dice is checked against the bundle's own
metric (its evaluator's MeanDice, or our bundle's per-case MetricsSaver table), computed by the bundle itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import TINY, config_files, copy_bundle, run_bundle
from zoo_bundles import brats_zoo_bundle, ct_zoo_bundle, natural2d_bundle, train_and_evaluate

from robustseg.cli import main
from robustseg.corruptions import NATURAL_C

pytestmark = pytest.mark.slow


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def clean_means(out: Path) -> dict[str, float]:
    rows = [r for r in read_rows(out / "attack" / "results.csv") if r["condition"] == "clean"]
    regions = dict.fromkeys(r["region"] for r in rows)
    return {region: float(np.mean([float(r["dice"]) for r in rows if r["region"] == region])) for region in regions}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def brats_zoo(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path) -> tuple[Path, Path, dict[str, float]]:
    bundle, data = brats_zoo_bundle(tmp_path_factory.mktemp("zoo"), phantom_root)
    return bundle, data, train_and_evaluate(bundle, epochs=8)


@pytest.fixture(scope="module")
def ct_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    bundle, data = ct_zoo_bundle(tmp_path_factory.mktemp("ct"))
    return bundle, data, train_and_evaluate(bundle, epochs=25)


def test_a_model_zoo_brats_bundle_with_a_sigmoid_head_is_audited_as_downloaded(brats_zoo, tmp_path: Path) -> None:
    bundle, data, metrics = brats_zoo
    configs = digest(bundle / "configs")
    out = tmp_path / "audit"
    args = ["audit", str(bundle), "--dataset_dir", str(data), "--output_dir", str(out), "--attack", "fgsm"]
    assert main([*args, "--eps", "0.2"]) == 0
    assert digest(bundle / "configs") == configs  # no edit to the bundle
    overlay = json.loads((out / "bundle_overlay.json").read_text())
    assert overlay["head"] == "sigmoid" and overlay["label_scheme"] == "$robustseg.labels.BRATS"
    assert overlay["inferer"] == "@validate#inferer" and overlay["test_data"] == "@validate#dataset#data"
    assert "dataset_dir" not in overlay  # given on the command line (and set as the bundle's data_file_base_dir)
    # scored per region channel as the bundle's own MeanDice on its SplitChanneld outputs
    clean = clean_means(out)
    for region in ("TC", "WT", "ET"):
        assert clean[region] == pytest.approx(metrics[f"val_mean_dice_{region.lower()}"], abs=1e-4), region
    assert max(clean.values()) > 0.2  # a trained model, not a trivial match of empty predictions
    rows = read_rows(out / "attack" / "results.csv")
    assert {r["case_id"] for r in rows} == {"Brats18_PH005_000", "Brats18_PH006_000", "Brats18_PH007_000"}
    page = (out / "attack" / "report" / "report.html").read_text()
    assert "per region channel of the sigmoid head" in page
    assert "python -m monai.bundle run" in (out / "audit_command.sh").read_text()


def test_a_model_zoo_brats_bundle_gets_the_corruption_benchmark_from_the_audit(brats_zoo, tmp_path: Path) -> None:
    """``--corruptions``: BraTS-C through the zoo bundle's own preprocessing, cut before its NormalizeIntensityd; the
    clean cases scored through that split agree with the attack audit's, which ran the whole preprocessing."""
    bundle, data, _ = brats_zoo
    out = tmp_path / "audit"
    args = ["audit", str(bundle), "--dataset_dir", str(data), "--output_dir", str(out), "--attack", "fgsm"]
    args += ["--eps", "0.2", "--corruptions", "--set", "corruption_severities=[5]"]
    assert main([*args, "--set", 'corruptions=["affine", "missing_sequence"]']) == 0
    scores = read_rows(out / "corruptions" / "report" / "scores.csv")
    assert {r["condition"] for r in scores} == {"clean", "affine@5", "missing_sequence@5"}
    attack_clean = {(r["case_id"], r["region"]): float(r["dice"]) for r in read_rows(out / "attack" / "results.csv")
                    if r["condition"] == "clean"}  # fmt: skip
    corruption_clean = {(r["case_id"], r["region"]): float(r["dice"]) for r in scores if r["condition"] == "clean"}
    assert corruption_clean.keys() == attack_clean.keys()
    for key, value in attack_clean.items():
        assert corruption_clean[key] == pytest.approx(value, abs=1e-5), key
    assert "corruptions.json" in (out / "audit_command.sh").read_text()


def test_a_softmax_ct_bundle_with_anisotropic_voxels_is_audited_as_downloaded(ct_zoo, tmp_path: Path) -> None:
    bundle, _, metrics = ct_zoo
    out = tmp_path / "audit"
    args = ["audit", str(bundle), "--output_dir", str(out), "--attack", "fgsm", "--eps", "0.05"]
    assert main([*args, "--set", "attack_mask=none", "--set", "attack_unit=[0,1] intensity"]) == 0
    overlay = json.loads((out / "bundle_overlay.json").read_text())
    assert (
        overlay["head"] == "softmax"
        and overlay["label_scheme"] == "$robustseg.labels.LabelScheme(('background', 'organ'))"
    )
    clean = clean_means(out)
    assert list(clean) == ["organ"]
    assert clean["organ"] == pytest.approx(metrics["val_mean_dice"], abs=1e-4)
    assert clean["organ"] > 0.3
    rows = read_rows(out / "attack" / "results.csv")
    assert {r["case_id"] for r in rows} == {"organ_05", "organ_06"}  # named by their image files


def test_a_2d_rgb_bundle_reading_png_files_is_audited_in_pixel_units(tmp_path: Path) -> None:
    bundle, _ = natural2d_bundle(tmp_path / "zoo")
    metrics = train_and_evaluate(bundle, epochs=30)
    out = tmp_path / "audit"
    args = ["audit", str(bundle), "--output_dir", str(out), "--attack", "fgsm", "--eps", "0.03", "--corruptions"]
    assert main([*args, "--set", "corruption_severities=[3]"]) == 0  # mask, clip bounds, unit, benchmark inferred
    overlay = json.loads((out / "bundle_overlay.json").read_text())
    inferred = {k: overlay[k] for k in ("perturbation_mask", "input_min", "input_max", "corruption_benchmark")}
    expected = {"perturbation_mask": "none", "input_min": 0.0, "input_max": 1.0, "corruption_benchmark": "natural-c"}
    assert inferred == expected
    scores = read_rows(out / "corruptions" / "report" / "scores.csv")
    assert {r["condition"] for r in scores} == {"clean", *(f"{c}@3" for c in NATURAL_C)}
    clean = clean_means(out)
    assert list(clean) == ["disc", "ring"]
    assert np.mean(list(clean.values())) == pytest.approx(metrics["val_mean_dice"], abs=1e-4)
    assert min(clean.values()) > 0.5
    rows = read_rows(out / "attack" / "results.csv")
    attacked = [r for r in rows if r["condition"] == "fgsm@0.03"]
    assert max(float(r["linf"]) for r in attacked) == pytest.approx(0.03, abs=1e-6)
    example = nib.load(out / "attack" / "examples" / "scene_05_fgsm@0.03_pred_adversarial.nii.gz")
    assert example.shape == (32, 32)


def test_a_bundle_missing_ids_stops_before_compute_with_every_line_to_add(ct_zoo, tmp_path: Path, capsys) -> None:
    bundle, _, _ = ct_zoo
    broken = tmp_path / "broken"
    shutil.copytree(bundle / "configs", broken / "configs")
    config = json.loads((broken / "configs" / "train.json").read_text())
    del config["validate"]["preprocessing"], config["network_def"], config["network"]
    (broken / "configs" / "train.json").write_text(json.dumps(config))
    (broken / "models").mkdir()
    (broken / "models" / "model.pt").write_bytes(b"")
    assert main(["audit", str(broken), "--output_dir", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "lacks 2 config id(s)" in message
    for line in ('"validate#preprocessing": {"_target_": "Compose"', '"network": "$@network_def.to(@device)"'):
        assert line in message
    assert not (tmp_path / "out" / "attack").exists()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path) -> tuple[Path, Path, Path]:
    """Our bundle trained on the phantoms; a copy of the data whose first test case has no enhancing tumour."""
    data = tmp_path_factory.mktemp("no_et") / "phantoms"
    shutil.copytree(phantom_root, data)
    datalist = json.loads((data / "datalist.json").read_text())
    seg = data / datalist["testing"][0]["label"]
    image = nib.load(seg)
    labels = np.asarray(image.dataobj).copy()
    labels[labels == 3] = 1  # the enhancing rim becomes necrotic core: ET empty in the truth, TC unchanged
    nib.save(nib.Nifti1Image(labels, image.affine), seg)
    bundle = copy_bundle(tmp_path_factory.mktemp("ours"))
    run_bundle(bundle, data, config_files(bundle))
    tiny = bundle / "tiny.json"
    tiny.write_text(json.dumps({k: v for k, v in TINY.items() if k not in ("max_epochs", "val_interval")}))
    return bundle, data, tiny


def test_our_bundle_audited_and_evaluated_agree_case_by_case_even_without_enhancing_tumour(ours, tmp_path) -> None:
    bundle, data, tiny = ours
    run_bundle(bundle, data, config_files(bundle, "evaluate.json"))
    raw = read_rows(bundle / "eval" / "metrics" / "val_mean_dice_raw.csv")
    evaluated = {Path(r["filename"]).name.split("-t1n")[0]: [float(r[f"class{i}"]) for i in range(3)] for r in raw}
    out = tmp_path / "audit"
    args = ["audit", str(bundle), "--dataset_dir", str(data), "--config_file", str(tiny), "--output_dir", str(out)]
    assert main([*args, "--attack", "fgsm", "--eps", "0.1"]) == 0
    clean = [r for r in read_rows(out / "attack" / "results.csv") if r["condition"] == "clean"]
    audited = {r["case_id"]: {} for r in clean}
    for r in clean:
        audited[r["case_id"]][r["region"]] = float(r["dice"])
    assert set(audited) == set(evaluated)
    for case, values in evaluated.items():
        for region, value in zip(("ET", "TC", "WT"), values, strict=True):
            assert audited[case][region] == pytest.approx(value, abs=1e-5), (case, region)
    first = json.loads((data / "datalist.json").read_text())["testing"][0]["case_id"]
    assert not np.isnan(evaluated[first][0])  # ET empty in the truth: scored (0 or 1), not left out as NaN
    page = (out / "attack" / "report" / "report.html").read_text()
    assert "BraTS 2023+" in page  # the phantoms are in the BraTS 2023 layout: that era's official convention


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")
def test_the_audit_and_certification_sharded_over_two_gloo_processes_equal_one_process(ours, tmp_path) -> None:
    bundle, data, tiny = ours
    args = ["audit", str(bundle), "--dataset_dir", str(data), "--config_file", str(tiny), "--certify"]
    args += ["--attack", "fgsm", "--attack", '{"name": "pgd", "steps": 2}', "--eps", "0.1", "0.3"]
    args += ["--set", "certify_n0=4", "--set", "certify_n=12", "--set", "certify_alpha=0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = [sys.executable, "-m", "robustseg.cli", *args, "--output_dir", str(tmp_path / "one")]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    two = [*torchrun, "-m", "robustseg.cli", *args, "--output_dir", str(tmp_path / "two")]
    for command in (one, two):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for workflow in ("attack", "certify"):
        rows = {name: read_rows(tmp_path / name / workflow / "results.csv") for name in ("one", "two")}
        key = sorted(rows["one"][0])
        as_set = {name: sorted(tuple(r[k] for k in key) for r in table) for name, table in rows.items()}
        assert as_set["one"] == as_set["two"], workflow  # identical rows, none duplicated
        assert not list((tmp_path / "two" / workflow).glob("results.rank*.csv"))  # merged on rank 0
        stats = {n: (tmp_path / n / workflow / "report" / "statistics.csv").read_text() for n in ("one", "two")}
        assert stats["one"] == stats["two"]
    cases = {r["case_id"] for r in read_rows(tmp_path / "two" / "attack" / "results.csv")}
    assert len(cases) == 2  # both test cases, one on each rank
