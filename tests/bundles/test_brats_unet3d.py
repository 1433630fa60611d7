"""Every workflow of bundles/brats_unet3d end to end on tiny phantoms: train, evaluate, infer, torchrun, resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import BUNDLE, REPO, TINY, bundle_command, config_files, copy_bundle, run_bundle
from mlflow.tracking import MlflowClient
from monai.bundle import ConfigWorkflow

from robustseg.data.datalist import load_datalist
from robustseg.data.naming import case_id_from_path
from robustseg.tracking import TrackingUnavailableError, default_tracking_uri

pytestmark = pytest.mark.slow


def runs_named(bundle: Path, name: str) -> list[Any]:
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    experiment = client.get_experiment_by_name("brats_unet3d")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")


def region_dice(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Hand-computed Dice for ET {3}, TC {1, 3}, WT {1, 2, 3} of two BraTS 2023 label maps."""
    out = {}
    for name, classes in {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}.items():
        p, g = np.isin(pred, classes), np.isin(label, classes)
        out[name] = 2.0 * (p & g).sum() / (p.sum() + g.sum())
    return out


def test_training_writes_checkpoints_and_a_finished_mlflow_run(trained: Path) -> None:
    assert (trained / "models" / "model.pt").is_file()
    assert [p.name for p in (trained / "models").glob("checkpoint_epoch=*.pt")] == ["checkpoint_epoch=2.pt"]
    (run,) = runs_named(trained, "train")
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == "2"
    assert json.loads(run.data.params["channels"]) == TINY["channels"]
    client = MlflowClient(default_tracking_uri(trained / "eval"))
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2]
    for name in ("val_mean_dice", "val_dice_ET", "val_dice_TC", "val_dice_WT"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2], name
        assert all(0.0 <= m.value <= 1.0 for m in history)
    mean = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_mean_dice")}
    parts = [
        {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"val_dice_{r}")}
        for r in ["ET", "TC", "WT"]
    ]
    assert mean[2] == pytest.approx(np.mean([p[2] for p in parts]), abs=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "config"} <= artifacts
    executed = json.loads(Path(client.download_artifacts(run.info.run_id, "config/executed_config.json")).read_text())
    assert executed["max_epochs"] == 2 and executed["channels"] == TINY["channels"]


def test_evaluate_scores_test_cases_and_saves_predictions_in_the_input_space(trained: Path, phantom_root: Path) -> None:
    run_bundle(trained, phantom_root, config_files(trained, "evaluate.json"))
    test_cases = load_datalist(phantom_root / "datalist.json", "testing")
    saved = {}
    for case in test_cases:
        path = trained / "eval" / "predictions" / f"{case['case_id']}_pred.nii.gz"
        assert path.is_file(), path
        pred, image = nib.load(path), nib.load(case["image"][0])
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert pred.shape == image.shape
        saved[case["case_id"]] = (np.asarray(pred.dataobj), np.asarray(nib.load(case["label"]).dataobj))
        assert set(np.unique(saved[case["case_id"]][0])) <= {0, 1, 2, 3}
    # the Dice MONAI reported equals a hand computation on the written files
    (run,) = runs_named(trained, "evaluate")
    assert run.info.status == "FINISHED"
    hand = [region_dice(p, g) for p, g in saved.values()]
    for region in ("ET", "TC", "WT"):
        assert run.data.metrics[f"val_dice_{region}"] == pytest.approx(np.mean([h[region] for h in hand]), abs=1e-4)
    rows = (trained / "eval" / "metrics" / "val_mean_dice_raw.csv").read_text().splitlines()[1:]
    assert sorted(case_id_from_path(r.split(",")[0]) for r in rows) == sorted(saved)
    # what was evaluated, and the training run that produced it; tables are artifacts of the run; paths absolute
    from robustseg.workflows.fingerprint import file_sha256

    (train,) = runs_named(trained, "train")
    checkpoint = trained / "models" / "model.pt"
    assert run.data.params["checkpoint"] == str(checkpoint.resolve())
    assert run.data.params["checkpoint_sha256"] == file_sha256(checkpoint)
    assert run.data.params["training_run_id"] == train.info.run_id
    assert Path(run.data.params["dataset_dir"]).is_absolute() and Path(run.data.params["datalist"]).is_absolute()
    client = MlflowClient(default_tracking_uri(trained / "eval"))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "metrics")}
    assert "metrics/dice_per_case.csv" in artifacts and "metrics/val_mean_dice_raw.csv" in artifacts


def test_inference_writes_brats_labels_with_the_input_affine(trained: Path, phantom_root: Path) -> None:
    workflow = ConfigWorkflow(
        config_file=str(trained / "configs" / "inference.json"),
        meta_file=str(trained / "configs" / "metadata.json"),
        logging_file=str(trained / "configs" / "logging.conf"),
        workflow_type="infer",
        bundle_root=str(trained),
        dataset_dir=str(phantom_root),
        **{k: TINY[k] for k in ("channels", "strides", "num_res_units", "roi_size", "num_workers", "device", "amp")},
    )
    workflow.initialize()
    assert not workflow.check_properties()
    workflow.run()
    workflow.finalize()
    for case in load_datalist(phantom_root / "datalist.json", "testing"):
        path = trained / "eval" / "inference" / f"{case['case_id']}_pred.nii.gz"
        pred, image = nib.load(path), nib.load(case["image"][0])
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert pred.shape == image.shape and pred.get_data_dtype() == np.uint8


def test_network_verifies_and_exports(trained: Path, tmp_path: Path) -> None:
    from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

    configs = config_files(trained)
    overrides = {k: TINY[k] for k in ("channels", "strides", "num_res_units")}
    verify_metadata(
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        filepath=str(REPO / "schemas" / "meta_schema_20240725.json"),
    )
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(trained / "configs" / "metadata.json"),
        config_file=configs,
        n=2,
        **overrides,
    )
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(trained / "models" / "model.pt"),
        meta_file=str(trained / "configs" / "metadata.json"),
        config_file=configs,
        **overrides,
    )
    import torch

    scripted = torch.jit.load(str(exported))
    assert scripted(torch.zeros(1, 4, 32, 32, 32)).shape == (1, 4, 32, 32, 32)


def test_contract_ids_are_defined() -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    for key in (
        "bundle_root",
        "dataset_dir",
        "output_dir",
        "device",
        "network_def",
        "spatial_dims",
        "num_classes",
        "label_scheme",
        "train#preprocessing",
        "validate#preprocessing",
        "train#dataset",
        "validate#dataset",
        "inferer",
        "checkpoint",
    ):
        assert key in parser, key
    assert parser.get_parsed_content("spatial_dims") == 3 and parser.get_parsed_content("num_classes") == 4
    assert type(parser.get_parsed_content("inferer")).__name__ == "SlidingWindowInferer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_tracking_server_fails_before_training(tmp_path: Path, phantom_root: Path) -> None:
    bundle = copy_bundle(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError) as info:
        run_bundle(bundle, phantom_root, config_files(bundle), tracking_uri=uri)
    cause = info.value.__cause__
    assert isinstance(cause, TrackingUnavailableError) and uri in str(cause)
    assert not (bundle / "models").exists()


def test_evaluate_without_checkpoint_says_to_train_first(tmp_path: Path, phantom_root: Path) -> None:
    bundle = copy_bundle(tmp_path)
    with pytest.raises(RuntimeError) as info:
        run_bundle(bundle, phantom_root, config_files(bundle, "evaluate.json"))
    assert isinstance(info.value.__cause__, FileNotFoundError) and "Train the bundle first" in str(info.value.__cause__)


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path: Path, phantom_root: Path) -> None:
    bundle = copy_bundle(tmp_path)
    files = config_files(bundle)
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        bundle_command(bundle, phantom_root, files, max_epochs=200), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 240
    while (
        not list((bundle / "models").glob("checkpoint_epoch=*.pt")) and time.time() < deadline and first.poll() is None
    ):
        time.sleep(0.5)
    time.sleep(1.0)  # let the saver finish writing
    first.send_signal(signal.SIGKILL)
    first.wait()
    (killed,) = runs_named(bundle, "train")
    assert killed.info.status == "RUNNING"  # a SIGKILL leaves no chance to close the run
    epoch_done = int(next((bundle / "models").glob("checkpoint_epoch=*.pt")).stem.split("=")[1])

    second = subprocess.run(
        [*bundle_command(bundle, phantom_root, files, max_epochs=epoch_done + 1), "--resume", "true"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming training from" in second.stdout + second.stderr
    (resumed,) = runs_named(bundle, "train")  # the same MLflow run continued
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    steps = [
        m.step
        for m in MlflowClient(default_tracking_uri(bundle / "eval")).get_metric_history(
            resumed.info.run_id, "train_loss"
        )
    ]
    assert steps[-1] == epoch_done + 1 and steps.count(epoch_done + 1) == 1  # only the missing epoch was trained
    assert (bundle / "models" / f"checkpoint_epoch={epoch_done + 1}.pt").is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")
def test_two_process_gloo_training_with_torchrun(tmp_path: Path, phantom_root: Path) -> None:
    bundle = copy_bundle(tmp_path)
    files = [*config_files(bundle, "multi_gpu_train.json"), str(REPO / "configs" / "gloo.json")]
    command = bundle_command(bundle, phantom_root, files)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*torchrun, *command[1:]], capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()
    (run,) = runs_named(bundle, "train")  # only rank 0 records
    assert run.info.status == "FINISHED"
    assert len(list((bundle / "models").glob("checkpoint_epoch=*.pt"))) == 1


def test_invalid_case_stops_training_before_any_compute(tmp_path: Path, phantom_root: Path) -> None:
    import shutil

    from robustseg.data.validation import CaseValidationError

    data = tmp_path / "data"
    shutil.copytree(phantom_root, data)
    case = load_datalist(data / "datalist.json", "training")[0]
    Path(case["image"][2]).write_bytes(b"not a nifti file")
    bundle = copy_bundle(tmp_path / "bundle")
    with pytest.raises(RuntimeError) as info:
        run_bundle(bundle, data, config_files(bundle))
    error = info.value.__cause__
    assert isinstance(error, CaseValidationError)
    assert error.case_id == case["case_id"] and Path(case["image"][2]).name in str(error)
    assert not (bundle / "models").exists()


ATTACK = {
    "attack_eps": [0.1, 0.3],
    "attacks": ["fgsm", {"name": "ifgsm", "steps": 2}],
    "attack_examples": 1,
}


def attack_files(bundle: Path) -> list[str]:
    return [*config_files(bundle), str(REPO / "configs" / "attack.json")]


def test_attack_audit_writes_results_statistics_report_and_one_mlflow_run(trained: Path, phantom_root: Path) -> None:
    workflow = run_bundle(trained, phantom_root, attack_files(trained), **ATTACK)
    out = trained / "eval" / "attack"
    rows = (out / "results.csv").read_text().splitlines()
    cases = load_datalist(phantom_root / "datalist.json", "testing")
    assert len(rows) - 1 == len(cases) * (1 + 3 * 2) * 3  # cases x (clean + (2 attacks + noise) x 2 eps) x regions
    stats = (out / "report" / "statistics.csv").read_text()
    assert "ifgsm@0.3" in stats and "fgsm@0.1" in stats
    html = (out / "report" / "report.html").read_text()
    assert "self-check" in html.lower() and "data:image/png;base64," in html
    (run,) = runs_named(trained, "attack")
    assert run.info.status == "FINISHED"
    assert any(k.startswith("dice_WT_ifgsm") for k in run.data.metrics)
    # the example volume keeps the (preprocessed) input's affine, so it opens beside the case in a viewer
    first = workflow.parser.get_parsed_content("attack_dataset")[0]
    example = out / "examples" / f"{first['case_id']}_ifgsm@0.3_adversarial.nii.gz"  # named by case id
    prediction = out / "examples" / f"{first['case_id']}_ifgsm@0.3_pred_adversarial.nii.gz"
    for path in (example, prediction):
        assert nib.load(path).shape[:3] == tuple(first["image"].shape[1:])
        np.testing.assert_allclose(nib.load(path).affine, first["image"].affine.numpy(), atol=1e-5)
    # a rerun resumes: nothing is recomputed or duplicated
    before, saved_at = (out / "results.csv").read_text(), example.stat().st_mtime_ns
    run_bundle(trained, phantom_root, attack_files(trained), **ATTACK)
    assert (out / "results.csv").read_text() == before
    assert example.stat().st_mtime_ns == saved_at  # the example was read back, not attacked and written again


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"attacks": ["fgsm", "deepfool"]}, "unknown attack 'deepfool'"),
        ({"attack_eps": [0.1, 0.0]}, "--attack_eps (robustseg audit: --eps): every budget must be a finite number > 0"),
        ({"attack_norm": "l1"}, "norm must be one of"),
    ],
)
def test_bad_attack_settings_fail_before_any_compute(
    trained: Path, phantom_root: Path, tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    with pytest.raises(RuntimeError) as info:
        run_bundle(trained, phantom_root, attack_files(trained), attack_output_dir=str(tmp_path / "a"), **override)
    assert message in str(info.value.__cause__)
    assert not (tmp_path / "a").exists()


def test_attack_on_a_mismatched_checkpoint_is_refused(trained: Path, phantom_root: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as info:
        run_bundle(
            trained, phantom_root, attack_files(trained), channels=[8, 16, 32], attack_output_dir=str(tmp_path / "a")
        )
    assert "does not match the network" in str(info.value.__cause__)
