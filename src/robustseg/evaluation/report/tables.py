"""Tables of a report: the statistics as CSV and Markdown, the terminal headline, perturbation sizes, the answer."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustseg.evaluation.report.figures import _metric_label
from robustseg.evaluation.report.rows import CLEAN, _conditions, _float, _pairs, _regions, _scores, _truthy, audit_rows

__all__ = ["ANSWER_COLUMNS", "HEADLINE_COLUMNS", "answer_columns", "answer_rows", "headline_table", "write_tables"]

HEADLINE_COLUMNS: tuple[str, ...] = (
    "region",
    "condition",
    "n",
    "median clean Dice",
    "median attacked Dice",
    "median drop [95 % CI]",
    "relative reduction %",
    "Wilcoxon p",
    "Holm p",
    "rank-biserial",
    "significant",
)
"""Columns of the statistics table in Markdown and HTML (the CSV keeps every key of the statistics rows)."""


def _num(value: Any, spec: str = ".3f") -> str:
    v = _float(value)
    return "n/a" if math.isnan(v) else format(v, spec)


def _p(value: Any) -> str:
    """p-values with three significant digits (``0.0312``, ``1e-05``), ``n/a`` when NaN."""
    return _num(value, ".3g")


def _headline_cells(row: Mapping[str, Any]) -> list[str]:
    drop = f"{_num(row.get('median_drop'))} [{_num(row.get('median_drop_low'))}, {_num(row.get('median_drop_high'))}]"
    rr = _float(row.get("relative_reduction"))
    return [
        str(row["region"]),
        str(row["condition"]),
        str(int(_float(row["n"]))),
        _num(row.get("median_baseline")),
        _num(row.get("median_condition")),
        drop,
        "n/a" if math.isnan(rr) else f"{100 * rr:.1f}",
        _p(row.get("p_value")),
        _p(row.get("p_holm")),
        _num(row.get("rank_biserial"), "+.2f"),
        "yes" if _truthy(row.get("significant")) else "no",
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_tables(
    stats_rows: Sequence[Mapping[str, Any]], out_dir: str | Path, stem: str = "statistics"
) -> tuple[Path, Path]:
    """The statistics of :func:`.statistics.compare_conditions` as CSV (every key) and Markdown (the headline).

    Args:
        stats_rows: rows of ``compare_conditions`` (or read back from its CSV).
        out_dir: the folder to write into (created).
        stem: file name without extension.

    Returns:
        ``(csv_path, md_path)``. The Markdown table has the :data:`HEADLINE_COLUMNS`, one row per statistics row:
        scores to 3 decimals, p-values to 3 significant digits, relative reduction in percent.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in stats_rows for k in row))
    csv_path = out / f"{stem}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(stats_rows)
    lines = [
        "| " + " | ".join(HEADLINE_COLUMNS) + " |",
        "|" + "|".join([":---", ":---"] + ["---:"] * (len(HEADLINE_COLUMNS) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in _headline_cells(r)) + " |" for r in stats_rows]
    md_path = out / f"{stem}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def headline_table(
    rows: Iterable[Mapping[str, Any]], stats_rows: Sequence[Mapping[str, Any]] | None = None, metric: str = "dice"
) -> str:
    """A plain-text table for a terminal: per region and attacked condition, mean clean and attacked score.

    Means are over the cases scored (not NaN) under both, so that ``drop = clean - attacked`` compares the same
    cases; Holm p comes from ``stats_rows`` (``n/a`` where absent); the HD95 columns are mean HD95 in mm clean and
    attacked over the cases with a finite HD95 under both.
    """
    table = audit_rows(rows)
    holm_p = {(str(r["region"]), str(r["condition"])): r.get("p_holm") for r in stats_rows or []}
    header = ["region", "condition", "n", f"clean {_metric_label(metric)}", "attacked", "drop", "Holm p"]
    header += ["HD95 clean", "attacked (mm)"]
    body: list[list[str]] = []
    for region in _regions(table):
        base = _scores(table, region, CLEAN, metric)
        for condition in (c for c in _conditions(table) if c != CLEAN):
            cases, x, y = _pairs(base, _scores(table, region, condition, metric))
            clean, attacked = (float(np.mean(v)) if cases else math.nan for v in (x, y))
            body.append(
                [
                    region,
                    condition,
                    str(len(cases)),
                    _num(clean),
                    _num(attacked),
                    _num(clean - attacked),
                    _p(holm_p.get((region, condition))),
                    *_hd95_pair(table, region, condition).replace("n/a", "n/a / n/a").split(" / "),
                ]
            )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    )


def _perturbation_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Per attacked condition: cases, largest L-inf, mean L2 and mean PSNR of the perturbations (one value a case)."""
    out = []
    for condition in (c for c in _conditions(rows) if c != CLEAN):
        per_case = {r["case_id"]: r for r in rows if r["condition"] == condition}
        linf, l2, psnr = (np.array([r[k] for r in per_case.values()], dtype=float) for k in ("linf", "l2", "psnr_db"))

        def agg(v: np.ndarray, how: str) -> str:
            finite = v[np.isfinite(v)]
            return "n/a" if finite.size == 0 else f"{getattr(np, how)(finite):.4g}"

        out.append([condition, str(len(per_case)), agg(linf, "max"), agg(l2, "mean"), agg(psnr, "mean")])
    return out


ANSWER_COLUMNS: tuple[str, ...] = (
    "region",
    "worst condition",
    "n",
    "mean clean Dice",
    "mean Dice under it",
    "median drop [95 % CI]",
    "Holm p",
    "rank-biserial",
    "significant",
    "mean HD95 clean / under it (mm)",
)
"""Columns of the answer that opens a report."""


def answer_columns(metric: str = "dice") -> tuple[str, ...]:
    """:data:`ANSWER_COLUMNS` for a report that tests ``metric`` (``dice`` or ``iou``)."""
    name = _metric_label(metric)
    return tuple(c.replace("Dice", name) for c in ANSWER_COLUMNS)


def answer_rows(stats_rows: Sequence[Mapping[str, Any]], rows: Iterable[Mapping[str, Any]] = ()) -> list[list[str]]:
    """Per region, the condition with the largest median drop against clean (ties: the larger mean drop), as cells.

    The answer to "how much can this model be hurt": its test (Holm-adjusted p over the whole family) and effect
    size come with it, so the first table of a report is the worst case with its evidence. With the audit ``rows``
    the mean HD95 clean and under that condition (over the cases with a finite HD95 under both) is added.
    """
    table = audit_rows(rows)
    best: dict[str, Mapping[str, Any]] = {}
    for row in stats_rows:
        drop, mean_drop = (
            _float(row.get("median_drop")),
            _float(row.get("mean_baseline")) - _float(row.get("mean_condition")),
        )
        key = (-math.inf if math.isnan(drop) else drop, -math.inf if math.isnan(mean_drop) else mean_drop)
        region = str(row["region"])
        current = best.get(region)
        if current is None or key > current["_key"]:
            best[region] = {**row, "_key": key}
    out = []
    for region, row in best.items():
        interval = (
            f"{_num(row.get('median_drop'))} [{_num(row.get('median_drop_low'))}, {_num(row.get('median_drop_high'))}]"
        )
        out.append(
            [
                region,
                str(row["condition"]),
                str(int(_float(row["n"]))),
                _num(row.get("mean_baseline")),
                _num(row.get("mean_condition")),
                interval,
                _p(row.get("p_holm")),
                _num(row.get("rank_biserial"), "+.2f"),
                "yes" if _truthy(row.get("significant")) else "no",
                _hd95_pair(table, region, str(row["condition"])),
            ]
        )
    return out


def _hd95_pair(table: Sequence[Mapping[str, Any]], region: str, condition: str) -> str:
    """``clean / condition`` mean HD95 over the cases finite under both, ``n/a`` without such cases."""
    cases, x, y = _pairs(_scores(table, region, CLEAN, "hd95"), _scores(table, region, condition, "hd95"))
    keep = [i for i in range(len(cases)) if math.isfinite(x[i]) and math.isfinite(y[i])]
    if not keep:
        return "n/a"
    return f"{np.mean([x[i] for i in keep]):.2f} / {np.mean([y[i] for i in keep]):.2f}"
