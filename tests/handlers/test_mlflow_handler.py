"""Tests for :class:`robustseg.handlers.mlflow.MLflowTracker` on tiny Ignite engines, read back with MlflowClient."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from mlflow.tracking import MlflowClient

from robustseg.handlers.mlflow import MLflowTracker
from robustseg.tracking import TrackingUnavailableError

ITERS = 2  # iterations per epoch
EXPERIMENT = "handler-test"


def known_loss(epoch: int, iteration: int) -> float:
    """Loss of the ``iteration``-th (1-based, within the epoch) step of ``epoch``."""
    return epoch + 0.25 * iteration


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def make_trainer(fail_at_epoch: int | None = None) -> Engine:
    def step(engine: Engine, batch: int) -> list[dict]:
        epoch = engine.state.epoch
        if epoch == fail_at_epoch:
            raise RuntimeError(f"boom at epoch {epoch}")
        within = (engine.state.iteration - 1) % ITERS + 1
        return [{"loss": torch.tensor(known_loss(epoch, within))}]

    trainer = Engine(step)
    trainer.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)  # type: ignore[attr-defined]
    return trainer


def make_evaluator(trainer: Engine | None = None) -> Engine:
    evaluator = Engine(lambda engine, batch: None)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def set_metrics(engine: Engine) -> None:
        epoch = trainer.state.epoch if trainer is not None else 0
        engine.state.metrics = {
            "val_dice": 0.5 + 0.1 * epoch,
            "val_nan": math.nan,  # not finite: not logged
            "val_tensor": torch.tensor(0.25),
            "val_vector": torch.tensor([1.0, 2.0]),  # not a scalar: not logged
        }

    return evaluator


def run_training(tracker: MLflowTracker, trainer: Engine, evaluator: Engine, epochs: int = 3) -> None:
    tracker.attach(trainer)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:
        evaluator.run([0], max_epochs=1)

    trainer.run(list(range(ITERS)), max_epochs=epochs)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def only_run(client: MlflowClient, run_name: str) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    assert len(runs) == 1
    return runs[0].info.run_id


def test_training_run_is_recorded(uri: str, tmp_path: Path) -> None:
    artifact_file = tmp_path / "summary.json"
    artifact_file.write_text('{"ok": true}')
    artifact_dir = tmp_path / "plots"
    artifact_dir.mkdir()
    (artifact_dir / "curve.txt").write_text("1 2 3")
    trainer = make_trainer()
    evaluator = make_evaluator(trainer)
    tracker = MLflowTracker(
        tmp_path / "eval",
        experiment_name=EXPERIMENT,
        run_name="train-ok",
        params={"lr": 0.01, "network": {"channels": [4, 8]}},
        artifacts=[artifact_file, artifact_dir, tmp_path / "missing.txt"],
        evaluator=evaluator,
        tracking_uri=uri,
        tags={"bundle": "tiny"},
    )
    run_training(tracker, trainer, evaluator)

    client = MlflowClient(uri)
    run_id = json.loads((tmp_path / "eval" / "mlflow_run_train-ok.json").read_text())["run_id"]
    assert only_run(client, "train-ok") == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train-ok"
    assert run.data.tags["bundle"] == "tiny"
    assert run.data.params == {"lr": "0.01", "network.channels": "[4, 8]"}
    # per-epoch means by hand: epoch e has losses e + 0.25 and e + 0.5
    assert history(client, run_id, "train_loss") == [(1, 1.375), (2, 2.375), (3, 3.375)]
    assert history(client, run_id, "learning_rate") == [(e, 0.01) for e in (1, 2, 3)]
    val_dice = history(client, run_id, "val_dice")
    assert [step for step, _ in val_dice] == [1, 2, 3]  # validation steps are the trainer's epochs
    assert [value for _, value in val_dice] == pytest.approx([0.6, 0.7, 0.8])
    assert history(client, run_id, "val_tensor") == [(1, 0.25), (2, 0.25), (3, 0.25)]
    assert set(run.data.metrics) == {"train_loss", "learning_rate", "val_dice", "val_tensor"}
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["plots", "summary.json"]  # a folder by its name
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/curve.txt"]


def test_exception_fails_the_run_and_propagates(uri: str, tmp_path: Path) -> None:
    trainer = make_trainer(fail_at_epoch=2)
    evaluator = make_evaluator(trainer)
    tracker = MLflowTracker(
        tmp_path, experiment_name=EXPERIMENT, run_name="train-fail", evaluator=evaluator, tracking_uri=uri
    )
    with pytest.raises(RuntimeError, match="boom at epoch 2"):
        run_training(tracker, trainer, evaluator)
    client = MlflowClient(uri)
    run = client.get_run(only_run(client, "train-fail"))
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: boom at epoch 2"
    assert history(client, run.info.run_id, "train_loss") == [(1, 1.375)]


def test_sigterm_ends_the_run_killed_with_its_params(uri: str, tmp_path: Path) -> None:
    """A signal's default action would end the process with the run RUNNING forever; the tracker makes it KILLED."""
    import os
    import signal

    trainer = make_trainer()

    @trainer.on(Events.ITERATION_COMPLETED(once=3))
    def terminate(engine: Engine) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    evaluator = make_evaluator(trainer)
    tracker = MLflowTracker(
        tmp_path, experiment_name=EXPERIMENT, run_name="train-term", evaluator=evaluator, tracking_uri=uri,
        params={"lr": 0.01},
    )  # fmt: skip
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        run_training(tracker, trainer, evaluator)
    assert info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is removed with the run
    client = MlflowClient(uri)
    run = client.get_run(only_run(client, "train-term"))
    assert run.info.status == "KILLED" and run.data.params == {"lr": "0.01"}


def test_evaluation_run_logs_metrics_once(uri: str, tmp_path: Path) -> None:
    evaluator = make_evaluator()
    tracker = MLflowTracker(tmp_path, experiment_name=EXPERIMENT, run_name="evaluate", tracking_uri=uri)
    tracker.attach(evaluator)
    evaluator.run([0, 1], max_epochs=1)
    client = MlflowClient(uri)
    run = client.get_run(only_run(client, "evaluate"))
    assert run.info.status == "FINISHED"
    assert history(client, run.info.run_id, "val_dice") == [(0, 0.5)]
    assert history(client, run.info.run_id, "val_tensor") == [(0, 0.25)]
    assert set(run.data.metrics) == {"val_dice", "val_tensor"}


def test_resume_continues_an_unfinished_run_only(uri: str, tmp_path: Path) -> None:
    def tracker(evaluator: Engine) -> MLflowTracker:
        return MLflowTracker(
            tmp_path,
            experiment_name=EXPERIMENT,
            run_name="train-resume",
            params={"lr": 0.01},
            evaluator=evaluator,
            tracking_uri=uri,
            resume=True,
        )

    client = MlflowClient(uri)
    record = tmp_path / "mlflow_run_train-resume.json"
    # a killed training: the run stays unfinished, its id recorded in output_dir
    trainer = make_trainer(fail_at_epoch=2)
    evaluator = make_evaluator(trainer)
    with pytest.raises(RuntimeError):
        run_training(tracker(evaluator), trainer, evaluator)
    first = json.loads(record.read_text())["run_id"]
    assert json.loads(record.read_text())["tracking_uri"] == uri
    assert client.get_run(first).info.status == "FAILED"

    trainer = make_trainer()
    evaluator = make_evaluator(trainer)
    run_training(tracker(evaluator), trainer, evaluator, epochs=1)
    assert json.loads(record.read_text())["run_id"] == first
    run = client.get_run(first)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.01"}

    # the recorded run is FINISHED now: a new run is created
    trainer = make_trainer()
    evaluator = make_evaluator(trainer)
    run_training(tracker(evaluator), trainer, evaluator, epochs=1)
    second = json.loads(record.read_text())["run_id"]
    assert second != first
    assert client.get_run(second).info.status == "FINISHED"
    assert client.get_run(first).info.status == "FINISHED"


def test_unreachable_server_fails_at_construction(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingUnavailableError, match=f"127.0.0.1:{port}"):
        MLflowTracker(tmp_path, tracking_uri=f"http://127.0.0.1:{port}")
