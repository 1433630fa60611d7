"""Thin Ignite handlers over robustseg's pieces (MLflow tracking, resume, region metrics)."""

from __future__ import annotations

from robustseg.handlers.checkpoint import TrainingCheckpoint, latest_checkpoint
from robustseg.handlers.metrics import select_region
from robustseg.handlers.mlflow import MLflowTracker

__all__ = ["MLflowTracker", "TrainingCheckpoint", "latest_checkpoint", "select_region"]
