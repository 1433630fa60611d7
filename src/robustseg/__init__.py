"""robustseg: audit and harden segmentation models with MONAI, Ignite and MLflow.

Importing the package makes every subpackage reachable as an attribute, so bundle configs need only
``"$import robustseg"`` to refer to ``robustseg.data.transforms.CanonicalBraTSd`` and the like.
"""

from __future__ import annotations

from robustseg import attacks, certification, data, evaluation, handlers, labels, tracking, workflows

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "attacks",
    "certification",
    "data",
    "evaluation",
    "handlers",
    "labels",
    "tracking",
    "workflows",
]
