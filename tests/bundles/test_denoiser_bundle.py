"""The denoiser's training overlay (configs/denoiser.json on train.json) end to end on tiny phantoms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from bundle_helpers import REPO, TINY, config_files, copy_bundle, run_bundle
from mlflow.tracking import MlflowClient
from monai.bundle import ConfigParser

from robustseg.certification.denoiser import DiffusionDenoiser, IntensityMapping, load_denoiser
from robustseg.data.datalist import load_datalist
from robustseg.tracking import default_tracking_uri

pytestmark = pytest.mark.slow

DENOISER: dict[str, Any] = {
    "denoiser_channels": [8, 16],
    "denoiser_roi_size": [16, 16, 16],
    "denoiser_epochs": 2,
    "denoiser_val_interval": 1,
    "denoiser_scale": 5.0,
}


def denoiser_files(bundle: Path) -> list[str]:
    return [*config_files(bundle), str(REPO / "configs" / "denoiser.json")]


def train_denoiser(bundle: Path, data: Path, **overrides: Any) -> None:
    run_bundle(bundle, data, denoiser_files(bundle), **{**DENOISER, **overrides})


def denoiser_runs(bundle: Path) -> list[Any]:
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    experiment = client.get_experiment_by_name("brats_unet3d")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'denoiser'")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path) -> Path:
    bundle = copy_bundle(tmp_path_factory.mktemp("denoiser_bundle"))
    train_denoiser(bundle, phantom_root)
    return bundle


def test_training_writes_weights_mapping_and_one_finished_mlflow_run(trained: Path) -> None:
    folder = trained / "models" / "denoiser"
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint_epoch=2.pt",
        "denoiser.pt",
        "intensity_mapping.json",
    ]
    assert not (trained / "models" / "model.pt").exists()  # the segmentation model is not touched
    assert json.loads((folder / "intensity_mapping.json").read_text()) == {"scale": 5.0, "shift": 0.0}
    (run,) = denoiser_runs(trained)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["scale"] == "5.0" and params["timesteps"] == "1000" and json.loads(params["channels"]) == [8, 16]
    assert params["val_sigma"] == "0.5" and params["norm_num_groups"] == "8"
    client = MlflowClient(default_tracking_uri(trained / "eval"))
    for name in ("train_loss", "val_denoise_mse", "val_noisy_mse"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2], name
    # the noisy input's MSE is sigma^2 (0.5 std) over the whole cropped volume; the same noise at every validation
    noisy = [m.value for m in client.get_metric_history(run.info.run_id, "val_noisy_mse")]
    assert noisy[0] == noisy[1] and noisy[0] == pytest.approx(0.25, rel=0.03)
    assert {"denoiser.pt", "intensity_mapping.json", "config"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }


def test_load_denoiser_loads_what_the_training_wrote(trained: Path, phantom_root: Path) -> None:
    parser = ConfigParser()
    parser.read_config(denoiser_files(trained))
    parser.update({**TINY, **DENOISER, "bundle_root": str(trained), "dataset_dir": str(phantom_root)})
    network, scheduler = (
        parser.get_parsed_content("denoiser_network_def"),
        parser.get_parsed_content("denoiser_scheduler"),
    )
    denoiser = load_denoiser(
        parser.get_parsed_content("denoiser_checkpoint"),
        network,
        scheduler,
        inferer=parser.get_parsed_content("denoiser_inferer"),
    )
    assert isinstance(denoiser, DiffusionDenoiser) and denoiser.mapping == IntensityMapping(5.0)
    case = parser.get_parsed_content("validate#preprocessing")(
        load_datalist(phantom_root / "datalist.json", "validation")[0]
    )
    clean = case["image"].as_tensor()[None]
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = denoiser(noisy, 0.5)
    assert out.shape == clean.shape and torch.isfinite(out).all() and out.abs().max() <= 5.0


def test_resume_continues_from_the_last_checkpoint(trained: Path, phantom_root: Path) -> None:
    with pytest.raises(RuntimeError) as info:  # the checkpoint records the mapping it was trained under
        train_denoiser(trained, phantom_root, resume=True, denoiser_epochs=3, denoiser_scale=6.0)
    assert "resume with --denoiser_scale 5" in str(info.value.__cause__ or info.value)
    assert not (trained / "models" / "denoiser" / "checkpoint_epoch=3.pt").exists()
    train_denoiser(trained, phantom_root, resume=True, denoiser_epochs=3)
    assert (trained / "models" / "denoiser" / "checkpoint_epoch=3.pt").is_file()
    second = max(denoiser_runs(trained), key=lambda r: r.info.start_time)  # the first run had finished
    client = MlflowClient(default_tracking_uri(trained / "eval"))
    assert [m.step for m in client.get_metric_history(second.info.run_id, "train_loss")] == [3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"denoiser_scale": 0.0}, "scale must be a finite number > 0"),
        ({"denoiser_roi_size": [16, 16, 15]}, "multiple of 2"),
        ({"denoiser_val_sigma": -0.5}, "denoiser_val_sigma = -0.5"),
    ],
)
def test_bad_settings_fail_before_any_compute(
    tmp_path: Path, phantom_root: Path, overrides: dict[str, Any], message: str
) -> None:
    bundle = copy_bundle(tmp_path)
    with pytest.raises(RuntimeError) as info:
        train_denoiser(bundle, phantom_root, **overrides)
    assert isinstance(info.value.__cause__, ValueError) and message in str(info.value.__cause__)
    assert not (bundle / "models").exists() and not (bundle / "eval").exists()
