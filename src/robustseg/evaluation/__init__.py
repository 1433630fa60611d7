"""Per-case metrics by region, paired statistics, self-checks, the results store and reports.

Imports only torch, numpy, scipy and MONAI: engines and tracking stay in ``handlers``, ``workflows`` and ``tracking``.
"""

from __future__ import annotations

from robustseg.evaluation import metrics, regions, results, selfchecks, statistics
from robustseg.evaluation.metrics import (
    BRATS_EMPTY_HD95,
    EMPTY_POLICY_TEXT,
    case_metrics,
    describe_empty_policy,
    long_rows,
    region_dice_table,
)
from robustseg.evaluation.results import ResultsStore
from robustseg.evaluation.selfchecks import (
    SelfCheck,
    check_attack_order,
    check_determinism,
    check_gradients,
    check_logits,
)
from robustseg.evaluation.statistics import (
    BootstrapResult,
    WilcoxonResult,
    bootstrap_median_difference,
    compare_conditions,
    holm,
    paired_wilcoxon,
    rank_biserial,
    relative_reduction,
)

__all__ = [
    "BRATS_EMPTY_HD95",
    "EMPTY_POLICY_TEXT",
    "BootstrapResult",
    "ResultsStore",
    "SelfCheck",
    "WilcoxonResult",
    "bootstrap_median_difference",
    "case_metrics",
    "check_attack_order",
    "check_determinism",
    "check_gradients",
    "check_logits",
    "compare_conditions",
    "describe_empty_policy",
    "holm",
    "long_rows",
    "metrics",
    "paired_wilcoxon",
    "rank_biserial",
    "region_dice_table",
    "regions",
    "relative_reduction",
    "results",
    "selfchecks",
    "statistics",
]
