"""A user's first hour, as a user meets it: bundle runs and ``robustseg`` commands in subprocesses.

Bad input ends the output with robustseg's one-line message and exit status 2, without a traceback, and leaves
nothing behind; a killed audit leaves its MLflow run KILLED with its params, and the resume continues that run and
says how many rows it reused; long steps print progress lines into a log file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import REPO, bundle_command, config_files
from mlflow.tracking import MlflowClient

from robustseg.data.datalist import load_datalist
from robustseg.tracking import RUN_FILE, default_tracking_uri

pytestmark = pytest.mark.slow

ENV = {**os.environ, "ROBUSTSEG_DEBUG": "", "ROBUSTSEG_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1"}
ENV["PYTHONFAULTHANDLER"] = "1"  # should a child crash, its log shows where


def tree(*roots: Path) -> set[str]:
    """Every path under ``roots`` (the folders themselves included)."""
    return {str(p) for root in roots if root.exists() for p in [root, *root.rglob("*")]}


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 2 and the output ends with the ``robustseg: error:`` line, which holds ``needles``."""
    output = (result.stdout + result.stderr).rstrip()
    assert result.returncode == 2, output[-4000:]
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("robustseg: error: "), output[-4000:]
    for needle in needles:
        assert needle in last, last
    assert "Traceback" not in output, output[-4000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path) -> dict[str, Path]:
    """Copies of the phantoms: one sound, one with label value 5 in a test case, one with an empty test split."""
    base = tmp_path_factory.mktemp("first_hour")
    out = {}
    for name in ("sound", "label5", "empty"):
        shutil.copytree(phantom_root, base / name)
        out[name] = base / name
    label = Path(load_datalist(out["label5"] / "datalist.json", "testing", out["label5"])[0]["label"])
    img = nib.load(label)
    values = np.asarray(img.dataobj).copy()
    values[values == 2] = 5
    nib.save(nib.Nifti1Image(values.astype(np.uint8), img.affine), label)
    datalist = json.loads((out["empty"] / "datalist.json").read_text())
    datalist["testing"] = []
    (out["empty"] / "datalist.json").write_text(json.dumps(datalist))
    return out


def evaluate_files(bundle: Path) -> list[str]:
    return config_files(bundle, "evaluate.json")


def attack_files(bundle: Path) -> list[str]:
    return [*config_files(bundle), str(REPO / "configs" / "attack.json")]


ATTACK: dict[str, Any] = {"attacks": ["fgsm"], "attack_eps": [0.1], "attack_examples": 0}


@pytest.mark.parametrize(
    ("case", "files", "overrides", "needles"),
    [
        ("label5", evaluate_files, {}, ("segmentation values [5]", "robustseg datalist --root")),
        ("empty", evaluate_files, {}, ("'testing' split", "is empty")),
        ("sound", attack_files, {**ATTACK, "attack_eps": [-1]}, ("--attack_eps", "finite number > 0")),
        ("sound", attack_files, {**ATTACK, "attacks": ["foo"]}, ("--attacks", "unknown attack 'foo'")),
    ],
    ids=["label-value-5", "empty-datalist", "eps-minus-1", "unknown-attack"],
)
def test_bad_input_in_a_bundle_run_ends_with_one_line_and_leaves_nothing(
    trained: Path, data: dict[str, Path], tmp_path: Path, case: str, files: Any, overrides: dict, needles: tuple
) -> None:
    out = tmp_path / "out"
    before = tree(trained, data[case], tmp_path)
    command = bundle_command(trained, data[case], files(trained), output_dir=str(out), **overrides)
    result = run(command)
    assert_one_line_error(result, *needles)
    assert tree(trained, data[case], tmp_path) == before  # not even an empty output folder


def test_bad_input_to_robustseg_audit_ends_with_one_line_and_leaves_nothing(
    trained: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "audit"
    before = tree(trained, data["sound"], tmp_path)
    command = [sys.executable, "-m", "robustseg.cli", "audit", str(trained), "--dataset_dir", str(data["sound"])]
    command += ["--output_dir", str(out), "--attack", "fgsm", "--eps", "-1", "--set", "channels=[4, 8, 16]"]
    command += ["--set", "strides=[2, 2]", "--set", "num_res_units=1", "--set", "device=$torch.device('cpu')"]
    result = run(command)
    assert_one_line_error(result, "--eps", "finite number > 0")
    assert tree(trained, data["sound"], tmp_path) == before  # the overlays it wrote are gone again


def test_make_datalist_refuses_to_overwrite(data: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from robustseg.data.cli import main

    assert main(["--root", str(data["sound"]), "--no-validate"]) == 2
    assert "--overwrite" in capsys.readouterr().err.splitlines()[-1]
    assert main(["--root", str(data["sound"]), "--no-validate", "--overwrite"]) == 0
    assert "Split (seed 0)" in capsys.readouterr().out


def test_killed_audit_ends_killed_with_params_and_its_resume_continues_the_run(
    trained: Path, phantom_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "attack"
    settings = {
        "attacks": [{"name": "ifgsm", "steps": 80}],
        "attack_eps": [0.1],
        "attack_examples": 0,
        "attack_output_dir": str(out),
        "output_dir": str(tmp_path),
    }
    command = bundle_command(trained, phantom_root, attack_files(trained), **settings)
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    results = out / "results.csv"
    deadline = time.time() + 300
    while first.poll() is None and time.time() < deadline:  # the first case scored: kill in the middle of the sweep
        if results.is_file() and len(results.read_text().splitlines()) > 1:
            break
        time.sleep(0.2)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    first.send_signal(signal.SIGTERM)
    code = first.wait(timeout=60)
    assert code != 0, (tmp_path / "first.log").read_text()[-3000:]
    client = MlflowClient(default_tracking_uri(tmp_path))
    run_id = json.loads((out / RUN_FILE).read_text())["run_id"]
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED", f"exit status {code}: " + (tmp_path / "first.log").read_text()[-3000:]
    assert json.loads(killed.data.params["eps"]) == [0.1]  # params were logged at the start
    stored = len(results.read_text().splitlines()) - 1

    second = run(command)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"reusing {stored} stored rows" in second.stdout + second.stderr
    assert f"continuing the unfinished MLflow run {run_id}" in second.stdout + second.stderr
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics["rows_reused"] == stored
    experiment = client.get_experiment(resumed.info.experiment_id)
    assert len(client.search_runs([experiment.experiment_id])) == 1  # no second run for the same audit


def test_progress_lines_in_a_log_file(trained: Path, phantom_root: Path, tmp_path: Path) -> None:
    """Training off a terminal: one line per epoch with epoch N/total, loss, the validation metric and an ETA."""
    from bundle_helpers import copy_bundle

    bundle = copy_bundle(tmp_path / "bundle")
    result = run(bundle_command(bundle, phantom_root, config_files(bundle)))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    lines = [line for line in log.splitlines() if "epoch 1/2:" in line]
    assert lines and "loss " in lines[0] and "val_mean_dice " in lines[0] and "ETA " in lines[0], log[-3000:]
    assert "\r" not in log  # no tqdm redraws in a file
    assert "validating cases: 6/6 cases (100 %)" in log
    assert "Orientationd" not in log  # a known, harmless warning is not repeated on every run
