"""bundles/natural2d_segmentation end to end on tiny scenes through ConfigWorkflow: train, evaluate, infer, metadata."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import REPO, bundle_command, run_bundle
from mlflow.tracking import MlflowClient
from monai.bundle import ConfigWorkflow, verify_metadata
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion

from robustseg.data.cli import make_datalist
from robustseg.data.natural import get_dataset
from robustseg.data.png import read_image, read_label
from robustseg.data.scenes import SceneConfig, write_scenes
from robustseg.tracking import default_tracking_uri

pytestmark = pytest.mark.slow

BUNDLE_2D = REPO / "bundles" / "natural2d_segmentation"
TINY_2D: dict[str, Any] = {
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
    "crop_size": [32, 32],
    "batch_size": 2,
    "max_epochs": 2,
    "val_interval": 1,
    "num_workers": 0,
    "device": "$torch.device('cpu')",
    "amp": False,
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 32-pixel scenes in VOC's layout: 8 train (6 training, 2 validation: one per rank of the gloo test),
    4 val (testing)."""
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, num_train=8, num_val=4, config=SceneConfig(size=32, object_size=(0.4, 0.7)), seed=0)
    make_datalist(root, dataset="scenes", val_fraction=0.25)
    return root


def run_2d(bundle: Path, data: Path, overlays: tuple[str, ...] = (), **overrides: Any) -> Any:
    files = [str(bundle / "configs" / "train.json"), *(str(bundle / "configs" / o) for o in overlays)]
    return run_bundle(bundle, data, files, settings=TINY_2D, **overrides)


@pytest.fixture(scope="module")
def trained_2d(tmp_path_factory: pytest.TempPathFactory, scenes: Path) -> Path:
    bundle = tmp_path_factory.mktemp("bundle2d")
    shutil.copytree(BUNDLE_2D / "configs", bundle / "configs")
    run_2d(bundle, scenes)
    return bundle


def test_metadata_is_schema_valid() -> None:
    verify_metadata(
        meta_file=str(BUNDLE_2D / "configs" / "metadata.json"),
        filepath=str(REPO / "schemas" / "meta_schema_20240725.json"),
    )
    meta = json.loads((BUNDLE_2D / "configs" / "metadata.json").read_text())
    names = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert list(names.values()) == list(get_dataset("scenes").class_names)
    assert (BUNDLE_2D / "LICENSE").is_file() and (BUNDLE_2D / "docs" / "README.md").is_file()


def test_training_tracks_miou_and_saves_the_best_model(trained_2d: Path) -> None:
    assert (trained_2d / "models" / "model.pt").is_file()
    client = MlflowClient(default_tracking_uri(trained_2d / "eval"))
    experiment = client.get_experiment_by_name("natural2d_segmentation")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'train'")
    assert run.info.status == "FINISHED" and run.data.params["dataset"] == "scenes"
    for name in ("val_mean_iou", "val_pixel_accuracy"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2] and all(0.0 <= m.value <= 1.0 for m in history), name
    state = torch.load(trained_2d / "models" / "model.pt", map_location="cpu")
    weights = state.get("model", state)
    assert torch.allclose(weights["mean"], torch.tensor([0.485, 0.456, 0.406]))  # normalisation inside the model


def test_evaluate_writes_miou_tables_and_palette_pngs(trained_2d: Path, scenes: Path) -> None:
    workflow = run_2d(trained_2d, scenes, ("evaluate.json",))
    metrics = trained_2d / "eval" / "metrics"
    summary = json.loads((metrics / "iou_summary.json").read_text())
    data = json.loads((scenes / "datalist.json").read_text())
    tests = data["testing"]
    assert summary["images"] == len(tests) == 4
    network = workflow.parser.get_parsed_content("network")
    network.eval()
    dataset = get_dataset("scenes")
    truth, predicted = [], []
    for entry in tests:
        png = trained_2d / "eval" / "predictions" / f"{entry['case_id']}_pred.png"
        img = Image.open(png)
        assert img.mode == "P" and img.getpalette()[:6] == [0, 0, 0, 128, 0, 0]  # the dataset's colours
        pred = read_label(png)
        image = torch.tensor(read_image(scenes / entry["image"]), dtype=torch.float32).permute(2, 0, 1)[None] / 255
        with torch.no_grad():
            expected = network(image).argmax(1)[0].numpy()
        np.testing.assert_array_equal(pred, expected)  # the PNG holds the class map, pixel for pixel
        truth.append(read_label(scenes / entry["label"]).ravel())
        predicted.append(pred.ravel())
    y, p = np.concatenate(truth), np.concatenate(predicted)
    scored = y != 255
    cm = sk_confusion(y[scored], p[scored], labels=list(range(dataset.num_classes)))  # scikit-learn's reference
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    assert summary["mIoU"] == pytest.approx(np.nanmean(iou), abs=1e-6)
    assert summary["pixel_accuracy"] == pytest.approx(tp.sum() / cm.sum(), abs=1e-6)
    with (metrics / "iou_per_class.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == list(dataset.class_names)
    for c, row in enumerate(rows):
        if np.isnan(iou[c]):
            assert row["iou"] == "nan"
        else:
            assert float(row["iou"]) == pytest.approx(iou[c], abs=1e-5)
    with (metrics / "iou_per_case.csv").open() as f:
        cases = list(csv.DictReader(f))
    assert [r["case_id"] for r in cases] == [e["case_id"] for e in tests]


def test_inference_writes_palette_pngs(trained_2d: Path, scenes: Path) -> None:
    workflow = ConfigWorkflow(
        config_file=str(trained_2d / "configs" / "inference.json"),
        meta_file=str(trained_2d / "configs" / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(trained_2d),
        dataset_dir=str(scenes),
        **{k: v for k, v in TINY_2D.items() if k not in ("max_epochs", "val_interval", "batch_size")},
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    written = sorted(p.name for p in (trained_2d / "eval" / "inference").glob("*.png"))
    tests = json.loads((scenes / "datalist.json").read_text())["testing"]
    assert written == sorted(f"{e['case_id']}_pred.png" for e in tests)


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")
def test_two_process_gloo_training_with_torchrun(tmp_path: Path, scenes: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE_2D / "configs", bundle / "configs")
    files = [str(bundle / "configs" / f) for f in ("train.json", "multi_gpu_train.json")]
    files.append(str(REPO / "configs" / "gloo.json"))
    command = bundle_command(bundle, scenes, files, settings=TINY_2D)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*torchrun, *command[1:]], capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    experiment = client.get_experiment_by_name("natural2d_segmentation")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])  # only rank 0 records
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_mean_iou")
    assert [m.step for m in history] == [1, 2]


def test_attack_overlay_runs_unchanged_on_the_2d_bundle(trained_2d: Path, scenes: Path) -> None:
    """configs/attack.json on the 2-D bundle: budgets in /255 pixel units, clip [0, 1], no mask, tested by IoU."""
    files = [str(trained_2d / "configs" / "train.json"), str(REPO / "configs" / "attack.json")]  # the 3-D's overlay
    attacks = ["fgsm", {"name": "ifgsm", "steps": 2}]
    workflow = run_bundle(trained_2d, scenes, files, settings=TINY_2D, attacks=attacks, attack_examples=1)
    out = trained_2d / "eval" / "attack"
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    tests = json.loads((scenes / "datalist.json").read_text())["testing"]
    classes = get_dataset("scenes").class_names
    conditions = 1 + 3 * 3  # clean + (fgsm, ifgsm, noise) x the three default budgets 2/255, 4/255, 8/255
    assert len(rows) == len(tests) * conditions * (len(classes) + 1)  # one row per class and the case's mIoU
    assert {r["condition"] for r in rows} >= {"fgsm@0.0313725", "ifgsm@0.0313725", "noise@0.0313725"}
    assert all(r["hd95"] == "nan" for r in rows) and {r["region"] for r in rows} == {*classes, "mIoU"}
    sweep = workflow.parser.get_parsed_content("attack_sweep")
    threat = sweep.conditions[0].attack.threat
    assert threat.unit == "[0, 1] pixel units" and threat.mask == "none"
    assert float(threat.clip_min) == 0.0 and float(threat.clip_max) == 1.0
    html = (out / "report" / "report.html").read_text()
    assert "IoU against eps" in html and "mean clean IoU" in html
    with (out / "report" / "statistics.csv").open() as f:
        tested = {(r["region"], r["condition"]) for r in csv.DictReader(f)}
    assert ("mIoU", "worst@0.0313725") in tested and ("horse", "ifgsm@0.0313725") in tested
    first = tests[0]["case_id"]  # the example, as NIfTI and as PNG: the image in 8 bits of [0, 1], the map in colours
    adversarial = out / "examples" / f"{first}_ifgsm@0.0313725_adversarial"
    picture = np.asarray(Image.open(f"{adversarial}.png")) / 255.0
    exact = np.asarray(nib.load(f"{adversarial}.nii.gz").dataobj)
    np.testing.assert_allclose(picture, exact.reshape(picture.shape), atol=0.5 / 255 + 1e-6)
    predicted = Image.open(out / "examples" / f"{first}_ifgsm@0.0313725_pred_adversarial.png")
    assert predicted.getpalette()[:6] == [c for rgb in get_dataset("scenes").palette[:2] for c in rgb]


def test_certification_overlay_runs_on_the_2d_bundle_with_its_mask(trained_2d: Path, scenes: Path) -> None:
    """configs/certify.json on the 2-D bundle: the noise covers every pixel (perturbation_mask none), not non-zero."""
    files = [str(trained_2d / "configs" / "train.json"), str(REPO / "configs" / "certify.json")]
    small = {"certify_n0": 4, "certify_n": 20, "certify_alpha": 0.05, "certify_max_cases": 2, "certify_batch_size": 4}
    workflow = run_bundle(trained_2d, scenes, files, settings=TINY_2D, **small)
    run = workflow.parser.get_parsed_content("certification")
    assert run.mask == "none"
    out = trained_2d / "eval" / "certify"
    assert (out / "report" / "report.html").is_file()
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["case_id"] for r in rows} == {
        e["case_id"] for e in json.loads((scenes / "datalist.json").read_text())["testing"][:2]
    }


DENOISER_2D: dict[str, Any] = {
    "denoiser_channels": [8, 16],
    "denoiser_roi_size": [32, 32],
    "denoiser_epochs": 2,
    "denoiser_val_interval": 1,
}


def test_noise_training_denoiser_and_denoised_certification_run_on_the_2d_bundle(
    trained_2d: Path, scenes: Path
) -> None:
    """Laousy's setting on the 2-D bundle with the 3-D's overlays unchanged: a noise-trained model, the DDPM
    denoiser on the scenes (its map to [-1, 1] from the contract's [0, 1] input), and plain against denoised
    smoothing of the model trained without noise at sigma 0.25 and 0.5, tau 0.75, scored by IoU."""
    overlays = [str(REPO / "configs" / name) for name in ("noise_training.json", "denoiser.json", "certify.json")]
    train = str(trained_2d / "configs" / "train.json")
    run_bundle(trained_2d, scenes, [train, overlays[0]], settings=TINY_2D, noise_sigma=0.5)
    assert (trained_2d / "models" / "noise_sigma0.5" / "model.pt").is_file()

    run_bundle(trained_2d, scenes, [train, overlays[1]], settings={**TINY_2D, **DENOISER_2D})
    mapping = json.loads((trained_2d / "models" / "denoiser" / "intensity_mapping.json").read_text())
    assert mapping == {"scale": 0.5, "shift": 0.5}  # [0, 1] pixels onto the diffusion range [-1, 1]

    files = [train, overlays[1], overlays[2], str(REPO / "configs" / "certify_denoised.json")]
    small = {"certify_n0": 4, "certify_n": 12, "certify_alpha": 0.05, "certify_max_cases": 2, "certify_batch_size": 6}
    out = trained_2d / "eval" / "certify_denoised"
    workflow = run_bundle(
        trained_2d, scenes, files, settings={**TINY_2D, **DENOISER_2D, **small}, certify_sigmas=[0.25, 0.5],
        certify_output_dir=str(out),
    )  # fmt: skip
    run = workflow.parser.get_parsed_content("certification")
    assert run.metric == "iou" and run.trained_sigma is None and run.modes == ["plain", "denoised"]
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    classes = get_dataset("scenes").class_names
    assert len(rows) == 2 * 2 * 2 * (len(classes) + 1)  # cases x modes x sigmas x (classes + mIoU)
    case = rows[0]["case_id"]
    for mode in ("plain", "denoised"):
        stem = out / "maps" / f"{case}_{mode}_sigma0.5_tau0.75_certified"
        png = Image.open(f"{stem}.png")
        assert png.mode == "P" and np.array_equal(np.asarray(png), np.asarray(nib.load(f"{stem}.nii.gz").dataobj))
    with (out / "report" / "statistics.csv").open() as f:
        stats = list(csv.DictReader(f))
    compared = {(r["condition"], r["metric"], r["region"]) for r in stats}
    assert ("denoised vs plain, sigma=0.5 tau=0.75", "certified_accuracy", "voxels") in compared
    assert ("denoised vs plain, sigma=0.25 tau=0.75", "certified_iou", "mIoU") in compared
