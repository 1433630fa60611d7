"""robustseg: audit and harden segmentation models with MONAI, Ignite and MLflow."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
