"""configs/sensitivity.json on the 3-D bundle, tiny: warm-up, refreshes on held-out training cases only, the sampler
handed to the training, MLflow records, resume, and the baseline policies with the same ops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_helpers import REPO, config_files, copy_bundle, run_bundle
from mlflow.tracking import MlflowClient

from robustseg.data.datalist import load_datalist
from robustseg.data.naming import case_ids
from robustseg.tracking import default_tracking_uri

pytestmark = pytest.mark.slow

SENSITIVITY = str(REPO / "configs" / "sensitivity.json")
QUICK = {
    "sensitivity_ops": ["bias_field", "gamma_down"],
    "sensitivity_warmup_epochs": 1,
    "sensitivity_every_epochs": 1,
    "sensitivity_max_evaluations": 4,
    "sensitivity_kid_subsets": 2,
}


def test_adaptive_training_refreshes_on_held_out_training_cases_and_logs_each_refresh(
    tmp_path: Path, phantom_root: Path
) -> None:
    bundle = copy_bundle(tmp_path)
    workflow = run_bundle(bundle, phantom_root, [*config_files(bundle), SENSITIVITY], max_epochs=2, **QUICK)
    parser = workflow.parser
    datalist = str(phantom_root / "datalist.json")
    training = case_ids(load_datalist(datalist, "training", str(phantom_root)))
    others = set(case_ids(load_datalist(datalist, "validation", str(phantom_root))))
    others |= set(case_ids(load_datalist(datalist, "testing", str(phantom_root))))
    held = case_ids(parser.get_parsed_content("sensitivity_dataset").data)
    trained_on = case_ids(parser.get_parsed_content("train#dataset").data)
    assert len(held) == 2 and set(held) <= set(training) and not set(held) & others
    assert not set(held) & set(trained_on) and set(held) | set(trained_on) == set(training)
    folder = bundle / "models" / "augment_adaptive"
    record = json.loads((folder / "defence.json").read_text())
    assert record["defence"] == "augmentation" and sorted(record["held_out"]) == sorted(held)
    refreshes = sorted(folder.glob("sensitivity/refresh_epoch*.json"))
    assert [p.name for p in refreshes] == ["refresh_epoch1.json", "refresh_epoch2.json"]
    first = json.loads(refreshes[0].read_text())
    assert set(first["analyses"]) == {"bias_field", "gamma_down"} and first["refresh_ratio"] > 0
    assert (folder / "sensitivity" / "refresh_epoch1.png").is_file()
    augmentation = parser.get_parsed_content("sensitivity_augmentation")
    assert type(augmentation.sampler).__name__ == "SensitivitySampler"  # the refresh's sampler is in use
    assert sum(augmentation.counts.values()) > 0
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    experiment = client.get_experiment_by_name("brats_unet3d")
    run = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]
    history = client.get_metric_history(run.info.run_id, "sensitivity.bias_field.p")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.params["augmentation"] == "adaptive"
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "sensitivity")]
    assert "sensitivity/refresh_epoch2.png" in artifacts
    # resumed for one more epoch: it starts from the last refresh's sampler and refreshes again after epoch 3
    run_bundle(bundle, phantom_root, [*config_files(bundle), SENSITIVITY], max_epochs=3, resume=True, **QUICK)
    assert (folder / "sensitivity" / "refresh_epoch3.json").is_file()


@pytest.mark.parametrize("policy", ["uniform", "monai", "none"])
def test_baseline_policies_train_on_the_same_split_without_refreshing(
    tmp_path: Path, phantom_root: Path, policy: str
) -> None:
    bundle = copy_bundle(tmp_path)
    workflow = run_bundle(
        bundle, phantom_root, [*config_files(bundle), SENSITIVITY], max_epochs=1, sensitivity_policy=policy, **QUICK
    )
    folder = bundle / "models" / f"augment_{policy}"
    assert (folder / "model.pt").is_file() or any(folder.glob("*.pt"))
    assert not list(folder.glob("sensitivity/refresh_epoch*.json"))
    assert len(workflow.parser.get_parsed_content("sensitivity_dataset").data) == 2


def test_the_2d_bundle_trains_adaptively_with_label_aware_natural_ops(tmp_path: Path) -> None:
    from test_natural2d_bundle import TINY_2D

    from robustseg.data.cli import make_datalist
    from robustseg.data.scenes import SceneConfig, write_scenes

    data = tmp_path / "scenes"
    write_scenes(data, num_train=10, num_val=2, config=SceneConfig(size=32, object_size=(0.4, 0.7)), seed=0)
    make_datalist(data, dataset="scenes", val_fraction=0.2)
    bundle = tmp_path / "bundle"
    import shutil

    shutil.copytree(REPO / "bundles" / "natural2d_segmentation" / "configs", bundle / "configs")
    files = [str(bundle / "configs" / "train.json"), SENSITIVITY]
    quick = {**QUICK, "sensitivity_ops": ["rotate", "contrast_down"], "max_epochs": 1}
    workflow = run_bundle(bundle, data, files, settings=TINY_2D, **quick)
    parser = workflow.parser
    assert parser.get_parsed_content("sensitivity_label_fill") == 255  # VOC's void comes in from outside
    assert parser.get_parsed_content("sensitivity_renormalise") is False  # [0, 1] pixels, not z-scores
    record = json.loads((bundle / "models" / "augment_adaptive" / "sensitivity" / "refresh_epoch1.json").read_text())
    assert set(record["analyses"]) == {"rotate", "contrast_down"}
    trivial = run_bundle(bundle, data, files, settings=TINY_2D, **{**quick, "sensitivity_policy": "trivial"})
    assert type(trivial.parser.get_parsed_content("sensitivity_augmentation").sampler).__name__ == (
        "TrivialAugmentSampler"
    )
