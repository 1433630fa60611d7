"""Thin Ignite handlers over robustseg's pieces (MLflow tracking, resume, region metrics)."""

from __future__ import annotations

from robustseg.handlers.checkpoint import TrainingCheckpoint, latest_checkpoint
from robustseg.handlers.metrics import IoUTable, MeanIoU, RegionDice, RegionDiceTable, select_region
from robustseg.handlers.mlflow import MLflowTracker
from robustseg.handlers.progress import ProgressBar
from robustseg.handlers.sensitivity import SensitivityRefreshHandler

__all__ = [
    "IoUTable",
    "MLflowTracker",
    "MeanIoU",
    "ProgressBar",
    "RegionDice",
    "RegionDiceTable",
    "SensitivityRefreshHandler",
    "TrainingCheckpoint",
    "latest_checkpoint",
    "select_region",
]
