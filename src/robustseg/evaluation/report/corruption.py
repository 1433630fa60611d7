"""The corruption benchmark's report: ROOD-style summaries, score-against-severity curves, a gallery, the tests.

Rows are the sweeps' long table with a ``model`` column: one row per model x case x condition x region, where a
corruption's condition is ``<corruption>@<severity>`` with ``attack`` the corruption and ``eps`` the severity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from robustseg.corruptions import SEVERITIES, rood_summary
from robustseg.evaluation.report.comparison import _json_ready, _stats_table, _write_csv
from robustseg.evaluation.report.figures import _metric_label, _new_figure, _save
from robustseg.evaluation.report.html import (
    _e,
    _figure_html,
    _html_table,
    _html_value,
    provenance_html,
    write_html_page,
)
from robustseg.evaluation.report.tables import _num

__all__ = [
    "corruption_headline",
    "corruption_summary",
    "plot_corruption_curves",
    "plot_gallery",
    "write_corruption_report",
]

CLEAN = "clean"
ALL = "all corruptions"


def _nanmean(values: Sequence[float]) -> float:
    """The mean of the values that are not NaN; NaN (without numpy's warning) when all are."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def _means(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[tuple[str, str, str, float], float]:
    """Mean ``metric`` over cases per (model, corruption or clean, region, severity), NaN scores left out."""
    values: dict[tuple[str, str, str, float], list[float]] = {}
    for r in rows:
        if r["kind"] not in (CLEAN, "corruption"):
            continue
        name = CLEAN if r["kind"] == CLEAN else str(r["attack"])
        key = (str(r["model"]), name, str(r["region"]), float(r["eps"]))
        values.setdefault(key, []).append(float(r[metric]))
    return {k: _nanmean(v) for k, v in values.items()}


def corruption_summary(
    rows: Sequence[Mapping[str, Any]], models: Sequence[str], corruptions: Sequence[str], metric: str = "dice"
) -> list[dict[str, Any]]:
    """Per model, corruption and region: the mean score clean and at each severity, and ROOD-MRI's ``overall`` and
    ``degradation`` (:func:`robustseg.corruptions.rood_summary`); then per model and region the same averaged over
    the corruptions (``all corruptions``)."""
    means = _means(rows, metric)
    regions = list(dict.fromkeys(str(r["region"]) for r in rows))
    out: list[dict[str, Any]] = []
    for model in models:
        for region in regions:
            clean = means.get((model, CLEAN, region, 0.0), math.nan)
            mine: list[dict[str, Any]] = []
            for corruption in corruptions:
                by_severity = {
                    s: means[(model, corruption, region, float(s))]
                    for s in SEVERITIES
                    if (model, corruption, region, float(s)) in means
                }
                if not by_severity:
                    continue
                row = {
                    "model": model,
                    "corruption": corruption,
                    "region": region,
                    "clean": clean,
                    **{f"severity_{s}": by_severity.get(s, math.nan) for s in SEVERITIES},
                    **rood_summary(clean, by_severity),
                }
                mine.append(row)
            out += mine
            if mine:
                average = {
                    key: _nanmean([float(r[key]) for r in mine])
                    for key in [*(f"severity_{s}" for s in SEVERITIES), "overall", "degradation"]
                }
                out.append({"model": model, "corruption": ALL, "region": region, "clean": clean, **average})
    return out


ROOD_OVERALL = "rood_overall"
"""The per-case summary condition: a case's ROOD overall score, averaged over the corruptions."""


def case_rood_rows(rows: Sequence[Mapping[str, Any]], metric: str = "dice") -> list[dict[str, Any]]:
    """Per model, case and region, the ROOD ``overall`` of the case's own scores (clean and at each severity), averaged
    over the corruptions, as a row of condition :data:`ROOD_OVERALL` (with the case's clean rows, for the tests)."""
    clean: dict[tuple[str, str, str], float] = {}
    scored: dict[tuple[str, str, str], dict[str, dict[int, float]]] = {}
    for r in rows:
        key = (str(r["model"]), str(r["case_id"]), str(r["region"]))
        if r["kind"] == CLEAN:
            clean[key] = float(r[metric])
        elif r["kind"] == "corruption":
            scored.setdefault(key, {}).setdefault(str(r["attack"]), {})[int(float(r["eps"]))] = float(r[metric])
    out: list[dict[str, Any]] = []
    for key, value in clean.items():
        model, case_id, region = key
        out.append({"model": model, "case_id": case_id, "region": region, "condition": CLEAN, metric: value})
        per_corruption = [rood_summary(value, by)["overall"] for by in scored.get(key, {}).values()]
        if per_corruption:
            out.append(
                {
                    "model": model,
                    "case_id": case_id,
                    "region": region,
                    "condition": ROOD_OVERALL,
                    metric: _nanmean(per_corruption),
                }
            )
    return out


def plot_corruption_curves(
    summary: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    corruptions: Sequence[str],
    regions: Sequence[str],
    path: str | Path,
    metric: str = "dice",
) -> Path:
    """Mean score against severity (0: clean) for each corruption (a panel), model (a colour) and region (a line
    style)."""
    index = {(r["model"], r["corruption"], r["region"]): r for r in summary}
    colours = matplotlib.colormaps["tab10"]
    styles = ["-", "--", ":", "-."]
    columns = min(4, len(corruptions))
    lines = math.ceil(len(corruptions) / columns)
    fig = _new_figure(3.2 * columns, 2.6 * lines + 0.6)
    axes = fig.subplots(lines, columns, squeeze=False, sharey=True)
    for k, corruption in enumerate(corruptions):
        ax = axes[k // columns][k % columns]
        for m, model in enumerate(models):
            for j, region in enumerate(regions):
                r = index.get((model, corruption, region))
                if r is None:
                    continue
                y = [r["clean"], *(r[f"severity_{s}"] for s in SEVERITIES)]
                label = model if len(regions) == 1 else f"{model} {region}"
                ax.plot(
                    [0, *SEVERITIES],
                    y,
                    styles[j % len(styles)],
                    marker="o",
                    markersize=3,
                    color=colours(m % 10),
                    label=label,
                )
        ax.set_title(corruption, fontsize="small")
        ax.set_xticks([0, *SEVERITIES])
        ax.grid(alpha=0.3)
        if metric in ("dice", "iou"):
            ax.set_ylim(-0.02, 1.02)
        if k % columns == 0:
            ax.set_ylabel(f"mean {_metric_label(metric)}")
        if k // columns == lines - 1:
            ax.set_xlabel("severity (0: clean)")
    for k in range(len(corruptions), lines * columns):
        axes[k // columns][k % columns].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 6), fontsize="small")
    return _save(fig, path)


def plot_gallery(images: Sequence[tuple[str, np.ndarray]], path: str | Path, columns: int = 6) -> Path:
    """Labelled 2-D pictures (grey ``(H, W)`` or RGB ``(H, W, 3)`` in [0, 1]) in a grid."""
    lines = math.ceil(len(images) / columns)
    fig = _new_figure(1.9 * columns, 2.0 * lines)
    axes = fig.subplots(lines, columns, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k < len(images):
            title, picture = images[k]
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize="x-small")
    return _save(fig, path)


def _severity_table(
    summary: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Sequence[Mapping[str, Any]]],
    model: str,
    region: str,
) -> str:
    """Mean score per corruption and severity for one model and region; * where the drop from clean is significant
    (the model's own one-sided tests, Holm over its sweep)."""
    significant = {
        str(r["condition"]) for r in stats.get(model, ()) if r.get("region") == region and r.get("significant")
    }
    body = []
    for r in summary:
        if r["model"] != model or r["region"] != region:
            continue
        cells = [str(r["corruption"]), _num(r["clean"])]
        for s in SEVERITIES:
            mark = "*" if f"{r['corruption']}@{s}" in significant else ""
            cells.append(_num(r[f"severity_{s}"]) + mark)
        cells += [_num(r["overall"]), _num(r["degradation"])]
        body.append(cells)
    header = ["corruption", "clean", *(f"s{s}" for s in SEVERITIES), "overall", "degradation"]
    return _html_table(header, body, numeric_from=1)


def write_corruption_report(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    sweep_statistics: Mapping[str, Sequence[Mapping[str, Any]]],
    model_tests: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    gallery: Sequence[tuple[str, np.ndarray]] = (),
    primary_tests: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the benchmark's tables (``scores.csv``, ``summary.csv``, ``statistics.csv``, ``model_tests.csv``,
    ``corruption.json``), figures and ``report.html`` into ``out_dir``; returns the page's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = str(settings.get("metric", "dice"))
    models = [str(m) for m in settings["models"]]
    corruptions = [str(c) for c in settings["corruptions"]]
    shown_regions = [str(r) for r in settings["regions"]]
    _write_csv(out / "scores.csv", rows)
    _write_csv(out / "summary.csv", summary)
    _write_csv(out / "statistics.csv", [{"model": m, **r} for m, rs in sweep_statistics.items() for r in rs])
    if model_tests:
        _write_csv(out / "model_tests.csv", model_tests)
    if primary_tests:
        _write_csv(out / "primary_tests.csv", primary_tests)
    (out / "corruption.json").write_text(
        json.dumps(
            _json_ready(
                {
                    "settings": settings,
                    "summary": list(summary),
                    "primary_tests": list(primary_tests),
                    "model_tests": list(model_tests),
                }
            ),
            indent=2,
        )
        + "\n"
    )
    curves = plot_corruption_curves(summary, models, corruptions, shown_regions, out / f"curves_{metric}.png", metric)
    label = _metric_label(metric)
    alpha = settings.get("alpha", 0.05)
    title = str(settings.get("title", "Corruption benchmark"))
    parts = [f"<h1>{_e(title)}</h1>"]
    parts.append(
        f"<p>{len(models)} model(s) ({_e(', '.join(models))}) scored on the same {_e(settings.get('cases', '?'))} "
        f"cases, clean and under {len(corruptions)} corruptions at severities 1-5 ({_e(settings.get('benchmark'))}), "
        "each applied to the case as loaded, before the bundle's intensity normalisation "
        f"({_e(settings.get('normalisation'))}). The summary is ROOD-MRI's: severity s weighs (2/3)<sup>s</sup>; "
        "overall = (&sum; w m + m<sub>clean</sub>) / (&sum; w + 1), degradation = &sum; w (m<sub>clean</sub> - m) / "
        "&sum; w, from the mean score over cases.</p>"
    )
    parts.append("<h2>Summary (mean over corruptions)</h2>")
    head = ["model", "region", "clean", "overall", "degradation"]
    body = [
        [str(r["model"]), str(r["region"]), _num(r["clean"]), _num(r["overall"]), _num(r["degradation"])]
        for r in summary
        if r["corruption"] == ALL and r["region"] in shown_regions
    ]
    parts.append(_html_table(head, body, numeric_from=2))
    if primary_tests:
        parts.append("<h2>Primary tests between models: each case's ROOD overall score</h2>")
        parts.append(
            "<p>Per case and region, the ROOD overall of its own clean and corrupted scores, averaged over the "
            "corruptions (<code>rood_overall</code>); paired two-sided Wilcoxon signed-rank tests between the models "
            "on it (<code>score</code>) and on its drop from the case's clean score (<code>drop</code>), with the "
            f"clean scores, Holm over these {len(primary_tests)} tests. This small family is the answer; the "
            "tests under every corruption and severity below are a larger family of their own.</p>"
        )
        parts.append(_stats_table(primary_tests))
    parts.append(_figure_html(curves, f"mean {label} against severity, per corruption"))
    if gallery:
        figure = plot_gallery(gallery, out / "gallery.png")
        parts.append(_figure_html(figure, "the first case, clean and under each corruption at severities 1, 3 and 5"))
    for model in models:
        for region in shown_regions:
            parts.append(f"<h2>{_e(model)}: mean {_e(label)}, {_e(region)}</h2>")
            parts.append(_severity_table(summary, sweep_statistics, model, region))
    parts.append(
        "<p>* the drop from clean is significant: paired one-sided Wilcoxon signed-rank test over the cases, Holm over "
        f"the model's every condition and region, Holm p &le; {_e(alpha)} (statistics.csv holds every test).</p>"
    )
    if model_tests:
        significant = sum(1 for r in model_tests if r.get("significant"))
        parts.append("<h2>Tests between models under every corruption</h2>")
        parts.append(
            f"<p>Paired two-sided Wilcoxon signed-rank tests over the cases, Holm's correction over all "
            f"{len(model_tests)} tests (the family: every corruption, severity, region and pair, clean included); "
            f"{significant} significant at Holm p &le; {_e(alpha)} (highlighted). <code>drop</code> is clean - "
            "corrupted per case (lower is more robust).</p>"
        )
        parts.append(_stats_table(model_tests))
    shown = {k: v for k, v in settings.items() if k not in ("title", "provenance")}
    parts += ["<h2>Settings</h2>", _html_value(shown)]
    parts += provenance_html(settings.get("provenance"))
    return write_html_page(out / "report.html", title, parts)


def corruption_headline(summary: Sequence[Mapping[str, Any]], regions: Sequence[str], metric: str = "dice") -> str:
    """The terminal summary: per model and region, clean, overall and degradation over all corruptions."""
    lines = [f"corruption benchmark, mean {_metric_label(metric)} (ROOD weights (2/3)^s):"]
    for r in summary:
        if r["corruption"] == ALL and r["region"] in regions:
            lines.append(
                f"  {r['model']:<16} {r['region']:<6} clean {_num(r['clean'])}  overall {_num(r['overall'])}  "
                f"degradation {_num(r['degradation'])}"
            )
    return "\n".join(lines)
