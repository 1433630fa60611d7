"""The defence overlays on both bundles, tiny: adversarial training (resume, refused settings), distillation."""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from bundle_helpers import REPO, config_files, copy_bundle, run_bundle
from mlflow.tracking import MlflowClient
from test_natural2d_bundle import BUNDLE_2D, run_2d, scenes  # noqa: F401  (the scenes fixture)

from robustseg.tracking import default_tracking_uri

pytestmark = pytest.mark.slow

ADV = str(REPO / "configs" / "adversarial_training.json")
DISTILL = str(REPO / "configs" / "distillation.json")


@contextmanager
def refused(message: str) -> Iterator[None]:
    """The workflow fails with ``message`` somewhere in its exception chain (MONAI wraps config errors)."""
    with pytest.raises(Exception) as info:
        yield
    chain, error = [], info.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert re.search(message, "\n".join(chain)), "\n".join(chain)


def run(bundle: Path, data: Path, overlay: str, **overrides: Any) -> Any:
    return run_bundle(bundle, data, [*config_files(bundle), overlay], **overrides)


def params_of_last_run(bundle: Path, experiment: str = "brats_unet3d") -> dict[str, str]:
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], order_by=["start_time DESC"])
    return runs[0].data.params


def test_adversarial_training_resumes_and_refuses_other_settings_in_its_folder(
    tmp_path: Path, phantom_root: Path, trained: Path
) -> None:
    bundle = copy_bundle(tmp_path)
    adv = {"adv_method": "pgd", "adv_steps": 1, "adv_eps": 0.1, "init_checkpoint": str(trained / "models/model.pt")}
    run(bundle, phantom_root, ADV, max_epochs=1, **adv)
    folder = bundle / "models" / "adv_pgd_eps0.1"
    assert (folder / "checkpoint_epoch=1.pt").is_file() and (folder / "defence.json").is_file()
    assert not (bundle / "models" / "model.pt").exists()  # the clean model's place is left alone
    workflow = run(bundle, phantom_root, ADV, max_epochs=2, resume=True, **adv)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and (folder / "checkpoint_epoch=2.pt").is_file()
    assert trainer.state.iteration == 2 * len(workflow.parser.get_parsed_content("train#dataloader"))
    params = params_of_last_run(bundle)
    assert (params["adv_method"], params["adv_eps"], params["adv_steps"], params["defence"]) == (
        "pgd",
        "0.1",
        "1",
        "adversarial_training",
    )
    with refused("other defence settings"):
        run(bundle, phantom_root, ADV, max_epochs=3, resume=True, **{**adv, "adv_steps": 2})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"adv_eps": 0.0}, "eps must be a finite number > 0"),
        ({"adv_steps": 0}, r"steps \(k\) must be an integer >= 1"),
        ({"adv_ratio": 1.5}, r"must be in \[0, 1\]"),
    ],
)
def test_bad_adversarial_settings_stop_before_training(
    tmp_path: Path, phantom_root: Path, overrides: dict, message: str
) -> None:
    bundle = copy_bundle(tmp_path)
    with refused(message):
        run(bundle, phantom_root, ADV, **overrides)
    assert not list((bundle / "models").rglob("*.pt"))  # nothing trained


def test_distillation_teacher_then_student_deployed_as_a_normal_network(
    tmp_path: Path, phantom_root: Path, trained: Path
) -> None:
    bundle = copy_bundle(tmp_path)
    with refused("does not exist: train it first"):
        run(bundle, phantom_root, DISTILL, distill_stage="student")
    with refused("temperature T must be a finite number > 0"):
        run(bundle, phantom_root, DISTILL, distill_temperature=0.0)
    run(bundle, phantom_root, DISTILL, max_epochs=1, init_checkpoint=str(trained / "models/model.pt"))
    teacher = bundle / "models" / "distill_T20_teacher" / "model.pt"
    assert teacher.is_file()
    assert params_of_last_run(bundle)["defence"] == "distillation_teacher"
    workflow = run(bundle, phantom_root, DISTILL, max_epochs=1, distill_stage="student")
    student = bundle / "models" / "distill_T20" / "model.pt"
    network = workflow.parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(student, weights_only=True))  # a normal network of the bundle
    iteration = workflow.parser.get_parsed_content("train#trainer#iteration_update")
    assert iteration.objective.temperature == 20.0
    params = params_of_last_run(bundle)
    assert params["defence"] == "distillation_student" and params["distill_temperature"] == "20.0"
    other = tmp_path / "other_teacher.pt"
    torch.save({"model": torch.nn.Conv3d(4, 4, 1).state_dict()}, other)
    with refused("other_teacher.pt"):
        run(bundle, phantom_root, DISTILL, distill_stage="student", distill_teacher_checkpoint=str(other))


def test_defences_run_unchanged_on_the_2d_bundle(tmp_path: Path, scenes: Path) -> None:  # noqa: F811
    bundle = tmp_path / "bundle2d"
    shutil.copytree(BUNDLE_2D / "configs", bundle / "configs")
    run_2d(bundle, scenes, max_epochs=1)
    adversarial = (str(REPO / "configs" / "adversarial_training.json"),)
    run_2d(bundle, scenes, adversarial, max_epochs=1, adv_method="fast")
    assert (bundle / "models" / "adv_fast_eps0.0313725" / "model.pt").is_file()  # 8/255, the largest budget
    distill = (str(REPO / "configs" / "distillation.json"),)
    run_2d(bundle, scenes, distill, max_epochs=1, distill_temperature=5.0)
    run_2d(bundle, scenes, distill, max_epochs=1, distill_temperature=5.0, distill_stage="student")
    assert (bundle / "models" / "distill_T5" / "model.pt").is_file()
    compare = (str(REPO / "configs" / "compare.json"),)
    workflow = run_2d(bundle, scenes, compare, **{**QUICK_COMPARE, "compare_eps": [8 / 255], "compare_max_cases": 4})
    comparison = workflow.parser.get_parsed_content("comparison")
    names = [(m.name, m.temperature) for m in comparison.models]
    assert names == [
        ("baseline", 1.0),
        ("adv_fast_eps0.0313725", 1.0),
        ("distill_T5", 5.0),
        ("distill_T5_teacher", 5.0),
    ]
    with (bundle / "eval" / "compare" / "report" / "statistics.csv").open() as f:
        stats = list(csv.DictReader(f))
    miou = [r for r in stats if r["region"] == "mIoU"]  # scored by IoU, with the per-image mIoU
    assert (
        miou and all(int(r["n"]) == 4 for r in miou) and {r["condition"] for r in miou} >= {"clean", "worst@0.0313725"}
    )


COMPARE = str(REPO / "configs" / "compare.json")
QUICK_COMPARE = {
    "compare_attacks": ["fgsm"],
    "compare_margin_attacks": [{"name": "pgd", "steps": 1, "loss": "margin", "label": "pgd-margin"}],
    "compare_eps": [0.1],
    "compare_examples": 0,
}


def test_compare_finds_the_defended_models_and_records_one_report_and_run(
    tmp_path: Path, phantom_root: Path, trained: Path
) -> None:
    bundle = copy_bundle(tmp_path)
    models = bundle / "models"
    models.mkdir()
    shutil.copy(trained / "models" / "model.pt", models / "model.pt")
    student = models / "distill_T20"
    student.mkdir()
    torch.save(torch.load(trained / "models" / "model.pt", weights_only=True), student / "model.pt")
    (student / "defence.json").write_text('{"defence": "distillation", "stage": "student", "temperature": 20.0}')
    (models / "not_a_model").mkdir()  # no defence.json: not found
    workflow = run(bundle, phantom_root, COMPARE, **QUICK_COMPARE)
    comparison = workflow.parser.get_parsed_content("comparison")
    assert [(m.name, m.temperature) for m in comparison.models] == [("baseline", 1.0), ("distill_T20", 20.0)]
    out = bundle / "eval" / "compare"
    assert (out / "report" / "report.html").is_file() and (out / "distill_T20" / "report" / "report.html").is_file()
    with (out / "report" / "statistics.csv").open() as f:
        stats = list(csv.DictReader(f))
    conditions = {r["condition"] for r in stats}
    assert {
        "clean",
        "fgsm@0.1",
        "fgsm-T@0.1",
        "pgd-margin@0.1",
        "transfer-fgsm@0.1",
        "noise@0.1",
        "worst@0.1",
    } <= conditions
    client = MlflowClient(default_tracking_uri(bundle / "eval"))
    experiment = client.get_experiment_by_name("brats_unet3d")
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'compare'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "selfcheck.distill_T20.temperature" in runs[0].data.tags
    assert any(k.endswith("_distill_T20") for k in runs[0].data.metrics)
    stored = {name: (out / name / "results.csv").read_text() for name in ("baseline", "distill_T20")}
    again = run(bundle, phantom_root, COMPARE, **QUICK_COMPARE)  # resumed: every row reused, none written again
    for name, sweep in again.parser.get_parsed_content("comparison").sweeps.items():
        assert (out / name / "results.csv").read_text() == stored[name]
        assert sweep.reused_rows == len(stored[name].splitlines()) - 1
    with refused("does not exist; train it first"):
        run(
            bundle,
            phantom_root,
            COMPARE,
            **QUICK_COMPARE,
            compare_models=["baseline=" + str(models / "model.pt"), "x=nowhere.pt"],
        )
