"""The report of a defence comparison: scores per model and condition, the tests between models, the self-checks.

:func:`write_comparison_report` writes, into one folder: ``scores.csv`` (every model x case x condition x region
row), ``summary.csv`` (mean and bootstrap interval per model, condition and region), ``statistics.csv`` (the tests of
:func:`robustseg.evaluation.model_comparison.compare_models`), ``comparison.json`` (settings, tests, self-check
verdicts), ``models_<metric>.png`` (mean score per condition, one point per model) and ``report.html``, which opens
with the score table and the clean cost of each defence.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from robustseg.evaluation.report.figures import _metric_label, _new_figure, _save
from robustseg.evaluation.report.html import (
    _checks_html,
    _e,
    _figure_html,
    _html_table,
    _html_value,
    provenance_html,
    write_html_page,
)
from robustseg.evaluation.report.rows import mean_interval
from robustseg.evaluation.report.tables import _num, _p
from robustseg.evaluation.selfchecks import SelfCheck

__all__ = ["STATS_COLUMNS", "comparison_headline", "plot_models", "summary_rows", "write_comparison_report"]

CLEAN = "clean"

STATS_COLUMNS = (
    "measure",
    "condition",
    "region",
    "model A",
    "model B",
    "n",
    "mean A",
    "mean B",
    "median A-B [95% CI]",
    "rank-biserial",
    "p",
    "Holm p",
    "better",
)


def _ordered(rows: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    return list(dict.fromkeys(str(r[key]) for r in rows))


def summary_rows(rows: Sequence[Mapping[str, Any]], metric: str = "dice", seed: int = 0) -> list[dict[str, Any]]:
    """Mean score with its 95 % bootstrap interval over cases, per model, condition and region (NaN dropped)."""
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        cells.setdefault((str(r["model"]), str(r["condition"]), str(r["region"])), []).append(float(r[metric]))
    out = []
    for (model, condition, region), values in cells.items():
        mean, low, high = mean_interval(values, seed=seed)
        finite = int(np.isfinite(np.asarray(values, dtype=float)).sum())
        out.append(
            {
                "model": model,
                "condition": condition,
                "region": region,
                "n": finite,
                "mean": mean,
                "low": low,
                "high": high,
            }
        )
    return out


def _summary_index(summary: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {(s["model"], s["condition"], s["region"]): s for s in summary}


def plot_models(
    summary: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    conditions: Sequence[str],
    regions: Sequence[str],
    path: str | Path,
    metric: str = "dice",
) -> Path:
    """Mean score per condition (x, clean first) and model (one colour each), with 95 % intervals; one panel per
    region, one legend above them."""
    index = _summary_index(summary)
    conditions = [CLEAN, *(c for c in conditions if c != CLEAN)]
    colours = matplotlib.colormaps["tab10"]
    fig = _new_figure(max(6.0, 0.55 * len(conditions) + 2.0), 2.8 * len(regions) + 0.6)
    axes = fig.subplots(len(regions), 1, squeeze=False, sharex=True)[:, 0]
    width = 0.8 / max(len(models), 1)
    for ax, region in zip(axes, regions, strict=True):
        for k, model in enumerate(models):
            x, mean, err = [], [], []
            for i, condition in enumerate(conditions):
                s = index.get((model, condition, region))
                if s is None or math.isnan(float(s["mean"])):
                    continue
                low, high = float(s["low"]), float(s["high"])
                x.append(i - 0.4 + width * (k + 0.5))
                mean.append(float(s["mean"]))
                err.append([0.0 if math.isnan(low) else mean[-1] - low, 0.0 if math.isnan(high) else high - mean[-1]])
            if x:
                ax.errorbar(
                    x, mean, yerr=np.array(err).T, fmt="o", color=colours(k % 10), capsize=2, markersize=4, label=model
                )
        ax.set_title(region)
        ax.set_ylabel(f"mean {_metric_label(metric)}")
        ax.grid(alpha=0.3)
        if metric in ("dice", "iou"):
            ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncol=min(len(models), 5), fontsize="small")
    axes[-1].set_xticks(range(len(conditions)), list(conditions), rotation=40, ha="right")
    return _save(fig, path)


def _stats_cells(r: Mapping[str, Any]) -> list[str]:
    interval = (
        f"{_num(r['median_difference'])} [{_num(r['median_difference_low'])}, {_num(r['median_difference_high'])}]"
    )
    return [
        str(r["measure"]),
        str(r["condition"]),
        str(r["region"]),
        str(r["model_a"]),
        str(r["model_b"]),
        str(r["n"]),
        _num(r["mean_a"]),
        _num(r["mean_b"]),
        interval,
        _num(r["rank_biserial"], "+.2f"),
        _p(r["p_value"]),
        _p(r["p_holm"]),
        str(r.get("better") or "-"),
    ]


def _stats_table(stats: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in STATS_COLUMNS)
    lines = []
    for r in stats:
        cells = _stats_cells(r)
        tds = "".join(
            f'<td class="num">{_e(c)}</td>' if 5 <= i <= 11 else f"<td>{_e(c)}</td>" for i, c in enumerate(cells)
        )
        css = ' class="significant"' if r.get("significant") else ""
        lines.append(f"<tr{css}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _score_matrix(
    index: Mapping[tuple[str, str, str], Mapping[str, Any]],
    models: Sequence[str],
    conditions: Sequence[str],
    region: str,
) -> tuple[list[str], list[list[str]]]:
    body = []
    for condition in [CLEAN, *conditions]:
        cells = [condition]
        for model in models:
            s = index.get((model, condition, region))
            cells.append("-" if s is None else f"{_num(s['mean'])} [{_num(s['low'])}, {_num(s['high'])}]")
        body.append(cells)
    return ["condition", *models], body


def comparison_headline(
    rows: Sequence[Mapping[str, Any]], stats: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]
) -> str:
    """The terminal summary: mean score per condition and model for each region, and the significant tests."""
    metric = str(settings.get("metric", "dice"))
    models = [m["name"] for m in settings["models"]]
    conditions = list(settings["conditions"])
    index = _summary_index(summary_rows(rows, metric))
    lines = []
    width = max(len(c) for c in [CLEAN, *conditions]) + 2
    for region in _ordered(rows, "region"):
        lines.append(f"mean {_metric_label(metric)}, {region}:")
        lines.append(" " * width + "".join(f"{m[:12]:>13}" for m in models))
        for condition in [CLEAN, *conditions]:
            values = [index.get((m, condition, region)) for m in models]
            lines.append(
                f"{condition:<{width}}" + "".join(f"{'-' if v is None else _num(v['mean']):>13}" for v in values)
            )
    significant = [r for r in stats if r.get("significant")]
    lines.append(
        f"{len(significant)} of {len(stats)} paired two-sided tests significant (Holm p <= "
        f"{settings.get('alpha', 0.05)}):"
    )
    for r in significant[:40]:
        lines.append(
            f"  {r['measure']:<5} {r['condition']:<{width}} {r['region']:<5} {r['model_a']} {_num(r['mean_a'])} vs "
            f"{r['model_b']} {_num(r['mean_b'])}: Holm p {_p(r['p_holm'])}, better {r['better']}"
        )
    if len(significant) > 40:
        lines.append(f"  ... and {len(significant) - 40} more in statistics.csv")
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _json_ready(value: Any) -> Any:
    """``value`` for ``json.dumps``: NaN and infinity as null, other objects as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def write_comparison_report(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    stats: Sequence[Mapping[str, Any]],
    checks: Mapping[str, Sequence[SelfCheck]],
    settings: Mapping[str, Any],
    model_reports: Mapping[str, Path] | None = None,
) -> Path:
    """Write the comparison's tables, figure and ``report.html`` into ``out_dir``; returns the page's path.

    Args:
        rows: every model x case x condition x region row (with ``model``; ``alias_of`` names the condition whose
            rows a model reuses).
        stats: the tests of :func:`~robustseg.evaluation.model_comparison.compare_models`.
        checks: the self-checks of each model.
        settings: the comparison's settings (``models``, ``conditions``, ``metric``...), shown and saved.
        model_reports: each model's own audit report, linked from the page.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = str(settings.get("metric", "dice"))
    models = [str(m["name"]) for m in settings["models"]]
    conditions = [str(c) for c in settings["conditions"]]
    regions = _ordered(rows, "region")
    summary = summary_rows(rows, metric)
    _write_csv(out / "scores.csv", rows)
    _write_csv(out / "summary.csv", summary)
    _write_csv(out / "statistics.csv", stats)
    verdicts = {
        name: [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in cs] for name, cs in checks.items()
    }
    (out / "comparison.json").write_text(
        json.dumps(_json_ready({"settings": settings, "statistics": list(stats), "checks": verdicts}), indent=2) + "\n"
    )
    figure = plot_models(summary, models, conditions, regions, out / f"models_{metric}.png", metric)
    index = _summary_index(summary)
    label = _metric_label(metric)
    clean_tests = [r for r in stats if r["condition"] == CLEAN]
    other_tests = [r for r in stats if r["condition"] != CLEAN]
    flagged = {name: [c for c in cs if not c.passed] for name, cs in checks.items()}
    parts = [f"<h1>{_e(settings.get('title', 'Defence comparison'))}</h1>"]
    parts.append(
        f"<p>{len(models)} models ({_e(', '.join(models))}; baseline <strong>{_e(models[0])}</strong>) scored on the "
        f"same {_e(settings.get('cases', '?'))} cases under the same {len(conditions)} conditions. Masking-aware: "
        "plain-loss attacks, the same on logits / T (<code>-T</code>), a margin loss, attacks transferred from the "
        "baseline, noise of the same norm, and the per-case worst of all (<code>worst@eps</code>).</p>"
    )
    warned = [f"{n}: {', '.join(sorted({c.name for c in cs}))}" for n, cs in flagged.items() if cs]
    if warned:
        parts.append(
            '<p class="check failed"><strong>Masking self-checks flag</strong> ' + _e("; ".join(warned)) + ". Their "
            "white-box numbers overstate robustness: read the worst case.</p>"
        )
    parts.append("<h2>Clean cost of each defence</h2>")
    parts.append(_stats_table(clean_tests) if clean_tests else "<p>No clean tests.</p>")
    for region in regions:
        header, body = _score_matrix(index, models, conditions, region)
        parts.append(f"<h2>Mean {_e(label)}, {_e(region)} (95% bootstrap interval over cases)</h2>")
        parts.append(_html_table(header, body, numeric_from=1))
    parts.append(_figure_html(figure, f"mean {label} per condition and model, 95% bootstrap intervals"))
    parts.append("<h2>Tests between models under each condition</h2>")
    parts.append(
        "<p>Paired two-sided Wilcoxon signed-rank tests over the cases (zero differences split), on the score under "
        "the condition (<code>score</code>) and on each case's drop from its own clean score (<code>drop</code>, "
        f"lower is more robust); Holm's correction over all {len(stats)} tests of this page, clean ones included; "
        "median A-B with a seeded bootstrap interval; rank-biserial is positive when A scores higher. Highlighted: "
        f"Holm p &le; {_e(settings.get('alpha', 0.05))}.</p>"
    )
    parts.append(_stats_table(other_tests) if other_tests else "<p>No tests.</p>")
    parts.append("<h2>Self-checks per model</h2>")
    for name, cs in checks.items():
        link = ""
        if model_reports and name in model_reports:
            link = f' (<a href="{_e(Path("..") / name / "report" / Path(model_reports[name]).name)}">its audit</a>)'
        parts.append(f"<h3>{_e(name)}{link}</h3>")
        parts.append(_checks_html(list(cs)))
    aliased = sorted({(str(r["model"]), str(r["condition"]), str(r["alias_of"])) for r in rows if r.get("alias_of")})
    if aliased:
        items = "".join(f"<li>{_e(m)}: {_e(c)} = {_e(a)}</li>" for m, c, a in aliased[:60])
        parts.append(
            "<h2>Reused rows</h2><p>Conditions that are, for a model, one it ran: logits / 1 are the logits; an attack "
            f"crafted on the baseline is the baseline's white-box attack.</p><ul>{items}</ul>"
        )
    shown = {k: v for k, v in settings.items() if k not in ("title", "provenance")}
    parts += ["<h2>Settings</h2>", _html_value(shown)]
    parts += provenance_html(settings.get("provenance"))
    return write_html_page(out / "report.html", str(settings.get("title", "Defence comparison")), parts)
