"""Per-case metrics by region, paired statistics, self-checks, the results store and reports.

Imports only torch, numpy, scipy, matplotlib and MONAI: engines and tracking stay in ``handlers``, ``workflows``
and ``tracking``.
"""

from __future__ import annotations

from robustseg.evaluation import metrics, regions, report, results, selfchecks, statistics
from robustseg.evaluation.metrics import (
    BRATS_EMPTY_HD95,
    EMPTY_POLICY_TEXT,
    case_metrics,
    describe_empty_policy,
    long_rows,
    region_dice_table,
)
from robustseg.evaluation.report import (
    HEADLINE_COLUMNS,
    audit_rows,
    condition_name,
    headline_table,
    mean_interval,
    plot_dice_vs_eps,
    plot_example,
    plot_paired,
    select_conditions,
    tumour_slice,
    write_html_report,
    write_tables,
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
    "HEADLINE_COLUMNS",
    "BootstrapResult",
    "ResultsStore",
    "SelfCheck",
    "WilcoxonResult",
    "audit_rows",
    "bootstrap_median_difference",
    "case_metrics",
    "check_attack_order",
    "check_determinism",
    "check_gradients",
    "check_logits",
    "compare_conditions",
    "condition_name",
    "describe_empty_policy",
    "headline_table",
    "holm",
    "long_rows",
    "mean_interval",
    "metrics",
    "paired_wilcoxon",
    "plot_dice_vs_eps",
    "plot_example",
    "plot_paired",
    "rank_biserial",
    "region_dice_table",
    "regions",
    "relative_reduction",
    "report",
    "results",
    "select_conditions",
    "selfchecks",
    "statistics",
    "tumour_slice",
    "write_html_report",
    "write_tables",
]
