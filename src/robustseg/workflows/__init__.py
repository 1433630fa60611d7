"""Runners that bundle configs call."""

from __future__ import annotations

from robustseg.workflows.checkpoints import check_checkpoint

__all__ = ["check_checkpoint"]
