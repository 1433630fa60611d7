"""The report of a sweep: figures, tables and one self-contained HTML page that opens with the answer.

* :mod:`~robustseg.evaluation.report.rows`: the long table of a sweep typed, conditions and paired scores;
* :mod:`~robustseg.evaluation.report.figures`: Dice against eps, paired per-case plots, example slices;
* :mod:`~robustseg.evaluation.report.tables`: the statistics as CSV and Markdown, the headline, the answer;
* :mod:`~robustseg.evaluation.report.html`: the self-contained page.

Example::

    rows = audit_rows(store.rows())
    stats_rows = compare_conditions(rows)
    print(headline_table(rows, stats_rows))
    write_html_report("eval/audit", rows, stats_rows, checks, examples, {"norm": "linf", "eps_unit": "std"})
"""

from __future__ import annotations

from robustseg.evaluation.report.figures import plot_dice_vs_eps, plot_example, plot_paired, tumour_slice
from robustseg.evaluation.report.html import write_html_page, write_html_report
from robustseg.evaluation.report.rows import CLEAN, audit_rows, condition_name, mean_interval, select_conditions
from robustseg.evaluation.report.tables import HEADLINE_COLUMNS, headline_table, write_tables

__all__ = [
    "CLEAN",
    "HEADLINE_COLUMNS",
    "audit_rows",
    "condition_name",
    "headline_table",
    "mean_interval",
    "plot_dice_vs_eps",
    "plot_example",
    "plot_paired",
    "select_conditions",
    "tumour_slice",
    "write_html_page",
    "write_html_report",
    "write_tables",
]
