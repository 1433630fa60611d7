"""Per-case metrics by region, paired statistics, self-checks, the results store and reports.

Imports only torch, numpy, scipy and MONAI's metrics and transforms: engines and tracking stay in ``handlers``,
``workflows`` and ``tracking``. Submodules are imported on first use, so ``robustseg.evaluation.dice`` and
``robustseg.evaluation.selfchecks`` (torch alone) load neither MONAI nor matplotlib:

* :mod:`~robustseg.evaluation.dice`: Dice per case and region and the empty-region policy, the one home of both;
* :mod:`~robustseg.evaluation.metrics`: Dice and HD95 of region masks or class maps, spacing from the affine;
* :mod:`~robustseg.evaluation.regions`: class maps to region masks as MONAI transforms;
* :mod:`~robustseg.evaluation.selfchecks`: the audit's checks on itself;
* :mod:`~robustseg.evaluation.statistics`: paired Wilcoxon tests, Holm, effect sizes;
* :mod:`~robustseg.evaluation.results`: the append-only results table;
* :mod:`~robustseg.evaluation.report`: figures, tables and the HTML report.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["certify_report", "dice", "metrics", "regions", "report", "results", "selfchecks", "statistics"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"robustseg.evaluation.{name}")
    raise AttributeError(f"module 'robustseg.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)
