"""Per-case metrics by region, paired statistics and reports."""

from __future__ import annotations

from robustseg.evaluation import regions

__all__ = ["regions"]
