"""Ignite handler that records a training or evaluation run in MLflow (through :mod:`robustseg.tracking`)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from robustseg.handlers.metrics import loss_from_output
from robustseg.tracking import (
    CHECKPOINT_TAG,
    MlflowRun,
    absolute_paths,
    check_tracking_uri,
    current_bundle_config,
    end_status,
    raise_on_termination,
    resolve_tracking_uri,
    run_id_path,
    training_run_of,
    ui_command,
)

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["MLflowTracker"]

logger = logging.getLogger(__name__)


class MLflowTracker:
    """Record one run: params at start, per-epoch loss and validation metrics, artifacts and the final status.

    Attached to a trainer it logs the mean training loss of each epoch (``train_loss``) and, when ``evaluator`` is
    given, the evaluator's metrics after each validation at the trainer's epoch as step. Attached to an evaluator
    (an evaluation workflow) it logs the evaluator's metrics once. At completion it logs ``artifacts`` and the executed
    bundle config and ends the run FINISHED; an exception ends it FAILED and is re-raised.

    The tracking store is checked when the handler is built, i.e. while the bundle config is parsed and before any
    training starts, so an unreachable server is reported at once.

    Args:
        output_dir: the bundle's ``eval/`` folder; holds the default SQLite store and the run-id file used to resume.
        experiment_name: MLflow experiment.
        run_name: MLflow run name (``train``, ``evaluate``, ...).
        params: key config values, logged flat (``a.b``) as params.
        artifacts: files or folders logged when the run completes (missing ones are skipped with a warning).
        evaluator: the validation engine of a trainer, whose metrics are logged each validation.
        tracking_uri: overrides ``MLFLOW_TRACKING_URI`` and the default store.
        resume: continue the unfinished run recorded in ``output_dir`` (after a killed training) instead of a new one.
        checkpoint: the weights an evaluation uses: their path, SHA-256 and the training run that produced them
            (the run tagged with that hash) are logged as params.

    A training run tags itself with the SHA-256 of the checkpoint files among its ``artifacts`` when it completes.
    Relative paths among the params are logged absolute.
    """

    def __init__(
        self,
        output_dir: str | Path,
        experiment_name: str = "robustseg",
        run_name: str = "train",
        params: Mapping[str, Any] | None = None,
        artifacts: Sequence[str | Path] = (),
        evaluator: Engine | None = None,
        tracking_uri: str | None = None,
        resume: bool = False,
        tags: Mapping[str, str] | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.tracking_uri = resolve_tracking_uri(self.output_dir, tracking_uri)
        check_tracking_uri(self.tracking_uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.params = absolute_paths(dict(params or {}))
        self.checkpoint = Path(checkpoint).resolve() if checkpoint is not None else None
        self.artifacts = list(artifacts)
        self.evaluator = evaluator
        self.resume = resume
        self.tags = dict(tags or {})
        self.config = current_bundle_config()
        self.run: MlflowRun | None = None
        self._trainer: Engine | None = None
        self._losses: list[float] = []
        self._restore_signals: Callable[[], None] = lambda: None

    @property
    def run_id_file(self) -> Path:
        return run_id_path(self.output_dir, self.run_name)

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.COMPLETED, self.complete)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.fail)
        if self.evaluator is not None:
            self._trainer = engine
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_loss)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._log_epoch)
            self.evaluator.add_event_handler(Events.COMPLETED, self._log_validation)

    def _previous_run_id(self) -> str | None:
        if not (self.resume and self.run_id_file.is_file()):
            return None
        record = json.loads(self.run_id_file.read_text())
        if record.get("tracking_uri") != self.tracking_uri:
            return None
        from mlflow.tracking import MlflowClient

        try:
            status = MlflowClient(self.tracking_uri).get_run(record["run_id"]).info.status
        except Exception:  # the run was deleted or the store replaced: start afresh
            return None
        return record["run_id"] if status != "FINISHED" else None

    def start(self, engine: Engine) -> None:
        if self.run is not None:
            return
        previous = self._previous_run_id()
        self.run = MlflowRun(self.tracking_uri, self.experiment_name, self.run_name, run_id=previous, tags=self.tags)
        self._restore_signals = raise_on_termination(self._killed)  # a killed run ends KILLED, not RUNNING forever
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.run_id_file.write_text(json.dumps({"run_id": self.run.run_id, "tracking_uri": self.tracking_uri}) + "\n")
        self.run.log_params({**self.params, **self._checkpoint_params()})
        if self.config is not None and previous is None:
            self.run.log_dict(self.config, "config/executed_config.json")
        logger.info(
            "MLflow run %s (%s) %s in %s; open the UI with: %s",
            self.run.run_id,
            self.run_name,
            "resumed" if previous else "started",
            self.tracking_uri,
            ui_command(self.tracking_uri),
        )

    def _checkpoint_params(self) -> dict[str, str]:
        if self.checkpoint is None or not self.checkpoint.is_file():
            return {}
        from robustseg.workflows.fingerprint import file_sha256

        sha = file_sha256(self.checkpoint)
        found = training_run_of(self.tracking_uri, sha)
        return {
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": sha,
            "training_run_id": found or "unknown (no run in this store produced this checkpoint)",
        }

    def _collect_loss(self, engine: Engine) -> None:
        loss = loss_from_output(engine.state.output)
        if loss is not None:
            self._losses.append(loss)

    def _log_epoch(self, engine: Engine) -> None:
        if self.run is None:
            return
        metrics: dict[str, float] = {}
        if self._losses:
            metrics["train_loss"] = sum(self._losses) / len(self._losses)
        self._losses = []
        optimizer = getattr(engine, "optimizer", None)
        if optimizer is not None:
            metrics["learning_rate"] = float(optimizer.param_groups[0]["lr"])
        self.run.log_metrics(metrics, step=engine.state.epoch)

    def _log_validation(self, evaluator: Engine) -> None:
        if self.run is None:
            return
        step = self._trainer.state.epoch if self._trainer is not None else 0
        self.run.log_metrics(_finite_scalars(evaluator.state.metrics), step=step)

    def complete(self, engine: Engine) -> None:
        if self.run is None:
            return
        if self.evaluator is None:  # attached to an evaluator: its metrics are the results
            self.run.log_metrics(_finite_scalars(engine.state.metrics), step=0)
        for path in self.artifacts:
            self.run.log_artifact(path)
        if self.evaluator is not None:  # a training run: evaluations find it by its checkpoint's hash
            from robustseg.workflows.fingerprint import file_sha256

            weights = [Path(p) for p in self.artifacts if str(p).endswith((".pt", ".pth")) and Path(p).is_file()]
            if weights:
                self.run.set_tags({CHECKPOINT_TAG: file_sha256(weights[0])})
        self.run.end("FINISHED")
        self._restore_signals()
        logger.info(
            "MLflow run %s (%s) FINISHED; open the UI with: %s",
            self.run.run_id,
            self.run_name,
            ui_command(self.tracking_uri),
        )
        self.run = None

    def _killed(self) -> None:
        if self.run is not None:
            self.run.set_tags({"error": "Terminated: stopped by a signal"})
            self.run.end("KILLED")
            logger.info("MLflow run %s (%s) ended KILLED", self.run.run_id, self.run_name)
            self.run = None

    def fail(self, engine: Engine, error: BaseException) -> None:
        if self.run is not None:
            status = end_status(error)
            self.run.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
            self.run.end(status)
            logger.info("MLflow run %s (%s) ended %s", self.run.run_id, self.run_name, status)
            self.run = None
        self._restore_signals()
        raise error


def _finite_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, float | int) and math.isfinite(value):
            out[key] = float(value)
    return out
