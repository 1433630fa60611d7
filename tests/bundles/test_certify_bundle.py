"""The certification workflow of bundles/brats_unet3d on tiny phantoms: noise training, then certify.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import REPO, config_files, copy_bundle, run_bundle
from mlflow.tracking import MlflowClient
from test_denoiser_bundle import DENOISER

from robustseg.data.datalist import load_datalist
from robustseg.tracking import default_tracking_uri

pytestmark = pytest.mark.slow

CERTIFY = {
    "certify_n0": 4,
    "certify_n": 24,
    "certify_alpha": 0.01,
    "certify_batch_size": 4,
    "certify_taus": [0.6, 0.75],
}


def run(bundle: Path, data: Path, overlays: list[str], **overrides: Any) -> Any:
    files = [*config_files(bundle), *(str(REPO / "configs" / o) for o in overlays)]
    return run_bundle(bundle, data, files, **overrides)


@pytest.fixture(scope="module")
def noise_trained(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path) -> Path:
    bundle = copy_bundle(tmp_path_factory.mktemp("noise_bundle"))
    run(bundle, phantom_root, ["noise_training.json"], noise_sigma=0.5)
    return bundle


def test_noise_training_writes_its_own_checkpoint_and_records_sigma(noise_trained: Path) -> None:
    assert (noise_trained / "models" / "noise_sigma0.5" / "model.pt").is_file()
    assert not (noise_trained / "models" / "model.pt").exists()  # the plain model is never overwritten
    client = MlflowClient(default_tracking_uri(noise_trained / "eval"))
    (train,) = client.search_runs([client.get_experiment_by_name("brats_unet3d").experiment_id])
    assert train.data.params["noise_sigma"] == "0.5"


def test_certify_overlay_certifies_test_cases_into_maps_report_and_one_mlflow_run(
    noise_trained: Path, phantom_root: Path
) -> None:
    workflow = run(noise_trained, phantom_root, ["noise_training.json", "certify.json"], noise_sigma=0.5, **CERTIFY)
    out = noise_trained / "eval" / "certify"
    cases = load_datalist(phantom_root / "datalist.json", "testing")
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) - 1 == len(cases) * 1 * 1 * 2 * 3  # cases x plain x sigma x taus x regions
    first = workflow.parser.get_parsed_content("certify_dataset")[0]
    saved = nib.load(out / "maps" / f"{first['case_id']}_plain_sigma0.5_tau0.75_certified.nii.gz")
    assert saved.shape[:3] == tuple(first["image"].shape[1:])
    np.testing.assert_allclose(saved.affine, first["image"].affine.numpy(), atol=1e-5)
    assert set(np.unique(np.asarray(saved.dataobj))) <= {0, 1, 2, 3, 255}
    assert (out / "report" / "report.html").is_file()
    client = MlflowClient(default_tracking_uri(noise_trained / "eval"))
    experiment = client.get_experiment_by_name("brats_unet3d")
    (certify,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'certify'")
    assert certify.info.status == "FINISHED"
    assert certify.data.params["n"] == "24"
    assert certify.data.params["sigmas"] == "[0.5]" and certify.data.params["trained_sigma"] == "0.5"  # from training


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"certify_sigmas": [0.0]}, "sigma must be a finite number > 0"),
        ({"certify_taus": [0.5]}, "tau must lie in"),
        ({"certify_n": 0}, "n must be an integer >= 1"),
        ({"certify_alpha": 2.0}, "alpha must lie in"),
        ({"certify_modes": ["plain", "denoised"]}, "needs a denoiser"),
    ],
)
def test_bad_certification_settings_fail_before_any_compute(
    noise_trained: Path, phantom_root: Path, tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    with pytest.raises(RuntimeError) as info:
        run(
            noise_trained,
            phantom_root,
            ["noise_training.json", "certify.json"],
            noise_sigma=0.5,
            certify_output_dir=str(tmp_path / "c"),
            **override,
        )
    assert message in str(info.value.__cause__)
    assert not (tmp_path / "c").exists()


def test_denoised_certification_compares_both_modes(noise_trained: Path, phantom_root: Path, tmp_path: Path) -> None:
    run(noise_trained, phantom_root, ["noise_training.json", "denoiser.json"], noise_sigma=0.5, **DENOISER)
    assert (noise_trained / "models" / "denoiser" / "denoiser.pt").is_file()
    out = tmp_path / "certify_denoised"
    overlays = ["noise_training.json", "denoiser.json", "certify.json", "certify_denoised.json"]
    fast = {**DENOISER, **CERTIFY, "certify_n": 8, "certify_max_cases": 1}  # the denoiser runs ~100 windows a sample
    run(noise_trained, phantom_root, overlays, noise_sigma=0.5, certify_output_dir=str(out), **fast)
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) - 1 == 1 * 2 * 2 * 3  # one case x (plain, denoised) x taus x regions
    assert any(p.name.endswith("_denoised_sigma0.5_tau0.75_certified.nii.gz") for p in (out / "maps").iterdir())
    stats = (out / "report" / "statistics.csv").read_text()
    assert "denoised vs plain, sigma=0.5 tau=0.75" in stats and "certified_accuracy" in stats
