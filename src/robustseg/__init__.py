"""robustseg: audit and harden segmentation models with MONAI, Ignite and MLflow.

Every subpackage is reachable as an attribute of the package, imported on first use, so bundle configs need only
``"$import robustseg"`` to refer to ``robustseg.data.transforms.CanonicalBraTSd`` and the like, while
``import robustseg.attacks`` loads neither the engines (Ignite), nor MLflow, nor matplotlib.

In a bundle run (``python -m monai.bundle run``, which imports this package through the configs' ``"$import
robustseg"``) a robustseg error ends the run with its one message and exit status 2 (:mod:`robustseg.errors`).
"""

from __future__ import annotations

import importlib
from typing import Any

from robustseg import errors as _errors

__version__ = "0.2.0"

SUBPACKAGES: tuple[str, ...] = (
    "attacks",
    "certification",
    "checkpoints",
    "cli",
    "conditions",
    "contract",
    "corruptions",
    "data",
    "defenses",
    "errors",
    "evaluation",
    "handlers",
    "labels",
    "losses",
    "networks",
    "progress",
    "sensitivity",
    "tracking",
    "workflows",
)

__all__ = ["SUBPACKAGES", "__version__", *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return importlib.import_module(f"robustseg.{name}")
    raise AttributeError(f"module 'robustseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if _errors.is_bundle_run():
    _errors.install()
