"""Ignite handler of seed 000's schedule: after a warm-up, re-measure sensitivity every k epochs and resample.

Each refresh (:class:`robustseg.sensitivity.refresh.SensitivityRefresh`, on held-out *training* cases) writes
``refresh_epoch<e>.json`` (every op's curve, the sampler's table, the cost) and ``refresh_epoch<e>.png`` into its
folder, hands the new sampler to the training's augmentation, and logs to the training's MLflow run (found by the
run-id file the bundle's :class:`~robustseg.handlers.MLflowTracker` keeps): per op the levels at the targets, the
curve's error and evaluations, the op's sampling share, the clean share, the refresh's seconds and its ratio to the
training time since the previous refresh, all at the epoch as step, and the two files as artifacts. A resumed
training starts from the sampler of the last refresh it finds in the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustseg.sensitivity.augment import SampledAugmentation
from robustseg.sensitivity.refresh import Refreshed, SensitivityRefresh
from robustseg.sensitivity.sampler import SensitivitySampler
from robustseg.tracking import MlflowRun, recorded_run_of
from robustseg.workflows import distributed

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SensitivityRefreshHandler", "network_key"]

logger = logging.getLogger(__name__)

_RECORD = re.compile(r"refresh_epoch(\d+)\.json$")


def network_key(network: Any) -> str:
    """SHA-256 (20 hex digits) of a network's weights: the cache key of "the model as it is now"."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


class SensitivityRefreshHandler:
    """Refresh the adaptive policy's sampler at epochs ``warmup + k * every`` (see the module).

    Args:
        refresh: the analysis on held-out training cases.
        augmentation: the training's :class:`~robustseg.sensitivity.augment.SampledAugmentation`.
        warmup_epochs: epochs before the first refresh (the policy is uniform until then).
        every_epochs: epochs between refreshes.
        output_dir: where the refresh records and figures go.
        tracking_dir: the bundle's ``eval/`` folder holding the training run's id file (``None``: no MLflow).
        experiment_name, run_name: the training's MLflow run.
        seed: the seed of each refresh's sampler.
        prepare_batch: the trainer's :class:`~robustseg.workflows.augmented_training.AugmentedBatch`, attached
            here so that its draws follow the iteration (whatever the policy).
        enabled: refresh (the adaptive policy); ``False`` for a baseline, whose sampler stays as it is.
    """

    def __init__(
        self,
        refresh: SensitivityRefresh,
        augmentation: SampledAugmentation | None,
        warmup_epochs: int = 2,
        every_epochs: int = 2,
        output_dir: str | Path = "sensitivity",
        tracking_dir: str | Path | None = None,
        experiment_name: str = "robustseg",
        run_name: str = "train",
        seed: int = 0,
        prepare_batch: Any = None,
        enabled: bool = True,
    ) -> None:
        if int(warmup_epochs) < 1 or int(every_epochs) < 1:
            raise ValueError(
                f"warm-up and refresh interval must be >= 1 epoch but are {warmup_epochs} and {every_epochs}."
            )
        self.refresh = refresh
        adaptive = bool(enabled) and isinstance(augmentation, SampledAugmentation)
        self.augmentation = augmentation if adaptive else None
        self.warmup, self.every = int(warmup_epochs), int(every_epochs)
        self.output_dir = Path(output_dir)
        self.tracking_dir = None if tracking_dir is None else Path(tracking_dir)
        self.experiment_name, self.run_name = experiment_name, run_name
        self.seed = int(seed)
        self.prepare_batch = prepare_batch
        self.history: list[dict[str, Any]] = []
        self._mark = time.perf_counter()

    def due(self, epoch: int) -> bool:
        """Whether a refresh runs after ``epoch``."""
        return epoch >= self.warmup and (epoch - self.warmup) % self.every == 0

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if self.prepare_batch is not None and hasattr(self.prepare_batch, "attach"):
            self.prepare_batch.attach(engine)
        if self.augmentation is None:
            return
        engine.add_event_handler(Events.STARTED, self._resume)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _resume(self, engine: Engine) -> None:
        """A resumed training: the sampler of the last refresh at or before its epoch."""
        self._mark = time.perf_counter()
        epoch = int(engine.state.epoch)
        found = sorted(
            (int(m.group(1)), p) for p in self.output_dir.glob("refresh_epoch*.json") if (m := _RECORD.search(p.name))
        )
        earlier = [(e, p) for e, p in found if e <= epoch]
        if epoch == 0 or not earlier or self.augmentation is None:
            return
        last, path = earlier[-1]
        record = json.loads(path.read_text())
        table = {op: [tuple(pair) for pair in pairs] for op, pairs in record["sampler_input"].items()}
        self.augmentation.use(SensitivitySampler(table, seed=self.seed + last, **self.refresh.sampler_settings))
        logger.info("resumed with the sensitivity sampler of the refresh after epoch %d (%s)", last, path)

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if self.augmentation is None or not self.due(epoch):
            return
        since = time.perf_counter() - self._mark
        key = f"epoch{epoch}-{network_key(self.refresh.network)}"
        refreshed = self.refresh.run(key, sampler_seed=self.seed + epoch)
        self.augmentation.use(refreshed.sampler)
        record = self._record(epoch, refreshed, since)
        self.history.append(record)
        if distributed.is_rank0():
            self._write(epoch, record)
        logger.info(
            "sensitivity refresh after epoch %d: %d ops, %d evaluations, %.1f s (%.1f%% of the %.1f s of training "
            "since the last one)",
            epoch,
            len(refreshed.analyses),
            refreshed.evaluations,
            refreshed.seconds,
            100 * record["refresh_ratio"],
            since,
        )
        self._mark = time.perf_counter()

    def _record(self, epoch: int, refreshed: Refreshed, since: float) -> dict[str, Any]:
        from robustseg.sensitivity.refresh import sampler_table

        return {
            "epoch": epoch,
            "seconds": refreshed.seconds,
            "training_seconds_since_last": since,
            "refresh_ratio": refreshed.seconds / since if since > 0 else float("nan"),
            "evaluations": refreshed.evaluations,
            "reused": refreshed.reused,
            "settings": self.refresh.settings(),
            "analyses": {op: a.to_dict() for op, a in refreshed.analyses.items()},
            "sampler_input": {op: [list(p) for p in pairs] for op, pairs in sampler_table(refreshed.analyses).items()},
            "sampler": refreshed.sampler.table(),
        }

    def _write(self, epoch: int, record: dict[str, Any]) -> None:
        from robustseg.evaluation.report.sensitivity import plot_refresh

        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"refresh_epoch{epoch}.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(record, indent=1, default=str) + "\n")
        partial.replace(path)
        figure = plot_refresh(
            record["analyses"], record["sampler"], path.with_suffix(".png"), f"sensitivity after epoch {epoch}"
        )
        run = self._run()
        if run is None:
            return
        metrics: dict[str, float] = {
            "sensitivity.refresh_seconds": float(record["seconds"]),
            "sensitivity.refresh_ratio": float(record["refresh_ratio"]),
            "sensitivity.evaluations": float(record["evaluations"]),
        }
        shares: dict[str, float] = {}
        for row in record["sampler"]:
            name = "clean" if row["op"] is None else str(row["op"])
            shares[name] = shares.get(name, 0.0) + float(row["p"])
        for name, p in shares.items():
            metrics[f"sensitivity.{name}.p"] = p
        for op, analysis in record["analyses"].items():
            metrics[f"sensitivity.{op}.error"] = float(analysis["error"])
            metrics[f"sensitivity.{op}.evaluations"] = float(analysis["evaluations"])
            for target, level in zip(analysis["targets"], analysis["levels"], strict=True):
                metrics[f"sensitivity.{op}.level_at_{target:g}"] = float(level)
        run.log_metrics(metrics, step=epoch)
        run.log_artifact(path, "sensitivity")
        run.log_artifact(figure, "sensitivity")

    def _run(self) -> MlflowRun | None:
        if self.tracking_dir is None:
            return None
        run = recorded_run_of(self.tracking_dir, self.run_name, self.experiment_name)
        if run is None:
            logger.info("no MLflow training run is recorded in %s; the refresh is not logged", self.tracking_dir)
        return run
