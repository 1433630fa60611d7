"""The report of a certification run: certified accuracy and Dice against radius, examples, one HTML page.

The input is the table of :class:`robustseg.workflows.certify.CertificationRun`, one row per case x mode x sigma x tau
x region with ``certified_dice``, ``base_dice``, ``certified_accuracy``, ``abstain_rate`` and ``radius`` (and
``certified_iou``, ``base_iou`` for a run scored by IoU, whose ``mIoU`` rows the summary and the plot show).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from robustseg.evaluation.metrics import MEAN_IOU, describe_empty_policy, mean_present
from robustseg.evaluation.report.figures import _metric_label, _new_figure, _overlay_rgba, _rgb, _save, tumour_slice
from robustseg.evaluation.report.html import (
    _e,
    _figure_html,
    _html_table,
    _html_value,
    provenance_html,
    write_html_page,
)
from robustseg.evaluation.report.rows import _regions, mean_interval
from robustseg.evaluation.statistics import small_sample_warning

__all__ = [
    "plot_certified_example",
    "plot_certified_vs_radius",
    "summary_rows",
    "summary_table",
    "write_certification_report",
    "write_statistics",
]

SUMMARY_COLUMNS = ("mode", "sigma", "tau", "radius", "cases", "certified accuracy", "abstain rate")
STATS_COLUMNS = (
    "comparison",
    "metric",
    "region",
    "n",
    "median plain",
    "median denoised",
    "median plain - denoised [95 % CI]",
    "Wilcoxon p",
    "Holm p",
    "rank-biserial",
)


def _stats_cells(row: Mapping[str, Any]) -> list[str]:
    def num(key: str, spec: str = ".3f") -> str:
        value = row.get(key)
        return "" if value is None or value == "" else format(float(value), spec)

    return [
        str(row["condition"]),
        str(row["metric"]),
        str(row["region"]),
        str(row["n"]),
        num("median_baseline"),
        num("median_condition"),
        f"{num('median_drop')} [{num('median_drop_low')}, {num('median_drop_high')}]",
        num("p_value", ".3g"),
        num("p_holm", ".3g"),
        num("rank_biserial"),
    ]


def write_statistics(stats_rows: Sequence[Mapping[str, Any]], out: Path) -> None:
    """``statistics.csv`` (every key) and ``statistics.md`` (the columns of the report)."""
    columns = list(dict.fromkeys(k for row in stats_rows for k in row))
    with (out / "statistics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(stats_rows)
    lines = ["| " + " | ".join(STATS_COLUMNS) + " |", "|" + "|".join(["---"] * len(STATS_COLUMNS)) + "|"]
    lines += ["| " + " | ".join(_stats_cells(r)) + " |" for r in stats_rows]
    (out / "statistics.md").write_text("\n".join(lines) + "\n")


def _groups(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, float]]:
    return sorted({(str(r["mode"]), float(r["sigma"]), float(r["tau"])) for r in rows})


def _shown(rows: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """The regions of the terminal summary and the plot: every region for Dice, the image's mIoU for IoU."""
    return [MEAN_IOU] if metric == "iou" else [r for r in _regions(rows) if r != MEAN_IOU]


def summary_rows(rows: Sequence[Mapping[str, Any]], metric: str = "dice") -> list[dict[str, Any]]:
    """Means over cases per (mode, sigma, tau): certified accuracy, abstain rate, certified and base score per region.

    The score is ``metric`` (``dice`` or ``iou``); a class absent from a case's truth and certified map has no IoU
    there, so its mean is over the other cases."""
    out = []
    regions = [r for r in _regions(rows) if metric == "iou" or r != MEAN_IOU]
    for mode, sigma, tau in _groups(rows):
        sub = [r for r in rows if r["mode"] == mode and r["sigma"] == sigma and r["tau"] == tau]
        first = [r for r in sub if r["region"] == regions[0]]
        row: dict[str, Any] = {
            "mode": mode,
            "sigma": sigma,
            "tau": tau,
            "radius": float(sub[0]["radius"]),
            "cases": len(first),
            "certified_accuracy": float(np.mean([r["certified_accuracy"] for r in first])),
            "abstain_rate": float(np.mean([r["abstain_rate"] for r in first])),
        }
        for region in regions:
            reg = [r for r in sub if r["region"] == region]
            row[f"certified_{metric}_{region}"] = mean_present([r[f"certified_{metric}"] for r in reg])
            row[f"base_{metric}_{region}"] = mean_present([r[f"base_{metric}"] for r in reg])
        out.append(row)
    return out


def summary_table(rows: Sequence[Mapping[str, Any]], metric: str = "dice") -> str:
    """A plain-text table for the terminal: per condition, certified accuracy, abstain rate, certified / base score
    (Dice per region, or the images' mIoU)."""
    regions = _shown(rows, metric)
    label = _metric_label(metric)
    header = [*SUMMARY_COLUMNS, *(f"{r} cert/base {label}" if r != MEAN_IOU else "cert/base mIoU" for r in regions)]
    body = []
    for s in summary_rows(rows, metric):
        body.append(
            [
                s["mode"],
                f"{s['sigma']:g}",
                f"{s['tau']:g}",
                f"{s['radius']:.3f}",
                str(s["cases"]),
                f"{s['certified_accuracy']:.3f}",
                f"{s['abstain_rate']:.3f}",
                *(f"{s[f'certified_{metric}_{r}']:.3f} / {s[f'base_{metric}_{r}']:.3f}" for r in regions),
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def plot_certified_vs_radius(rows: Sequence[Mapping[str, Any]], path: str | Path, metric: str = "dice") -> Path:
    """Certified accuracy, abstain rate and certified Dice per region (or the images' mIoU) against the radius.

    One line per mode and sigma, one point per tau, with a 95 % bootstrap interval across cases.
    """
    regions = _shown(rows, metric)
    panels = ["certified_accuracy", "abstain_rate", *(f"certified_{metric}:{r}" for r in regions)]
    fig = _new_figure(3.2 * len(panels), 3.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    lines = sorted({(str(r["mode"]), float(r["sigma"])) for r in rows})
    for ax, panel in zip(axes, panels, strict=True):
        score, _, region = panel.partition(":")
        for mode, sigma in lines:
            taus = sorted({float(r["tau"]) for r in rows if r["mode"] == mode and r["sigma"] == sigma})
            xs, means, lows, highs = [], [], [], []
            for tau in taus:
                sub = [
                    r
                    for r in rows
                    if r["mode"] == mode
                    and r["sigma"] == sigma
                    and r["tau"] == tau
                    and r["region"] == (region or regions[0])
                ]
                mean, low, high = mean_interval([r[score] for r in sub])
                xs.append(float(sub[0]["radius"]))
                means.append(mean)
                lows.append(low)
                highs.append(high)
            style = "-" if mode == "plain" else "--"
            (line,) = ax.plot(xs, means, style, marker="o", label=f"{mode}, sigma {sigma:g}")
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("certified L2 radius")
        ax.set_title(f"certified {_metric_label(metric)} {region}" if region else score.replace("_", " "))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_certified_example(example: Mapping[str, Any], path: str | Path, channel: int | None = None) -> Path:
    """The input, the ground truth, and the certified map with abstained voxels in grey.

    As in the attack report, a 3-D volume shows the axial slice with most tumour, transposed with the origin at the
    bottom; a 2-D image is shown as it is, in colour when it has 3 channels (as it is in [0, 1], else stretched). The
    channel shown is ``channel``, else FLAIR when ``example["channel_names"]`` names it, else the last; its name is in
    the title. Classes take the colours of ``example["palette"]`` (a dataset's palette) when it is given.
    """
    names = [str(n) for n in example.get("channel_names") or []]
    if channel is None:
        lowered = [n.lower() for n in names]
        channel = lowered.index("flair") if "flair" in lowered else -1
    n_channels = np.asarray(example["image"]).shape[0]
    shown = names[channel] if -len(names) <= channel < len(names) and len(names) == n_channels else None
    label = np.asarray(example["label"])
    certified = np.asarray(example["certified"])
    image = np.asarray(example["image"], dtype=np.float64)
    volume = label.ndim == 3
    if volume:
        index = tumour_slice(label)
        image, label, certified = (a[..., index].T for a in (image[channel], label, certified))
    elif image.shape[0] == 3:
        image = _rgb(image)
    else:
        image = image[0]
    origin: Literal["upper", "lower"] = "lower" if volume else "upper"
    fig = _new_figure(9.0, 3.2)
    axes = fig.subplots(1, 3)
    first = f"input ({shown})" if volume and shown else "input"
    for ax, title in zip(axes, (first, "ground truth", "certified (grey: abstained)"), strict=True):
        ax.imshow(image, cmap="gray", origin=origin)
        ax.set_title(title, fontsize="small")
        ax.axis("off")
    palette = example.get("palette")
    axes[1].imshow(_overlay_rgba(label, palette=palette), origin=origin, interpolation="nearest")
    overlay = _overlay_rgba(np.where(certified < 0, 0, certified), palette=palette)
    overlay[certified < 0] = (0.6, 0.6, 0.6, 0.8)
    axes[2].imshow(overlay, origin=origin, interpolation="nearest")
    return _save(fig, path)


def write_certification_report(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    stats_rows: Sequence[Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> Path:
    """Write ``report.html`` (self-contained), ``summary.csv`` / ``.md``, ``statistics.csv`` / ``.md`` and PNGs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = str(settings.get("metric", "dice"))
    label = _metric_label(metric)
    summary = summary_rows(rows, metric)
    columns = list(summary[0]) if summary else []
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(summary)
    text = summary_table(rows, metric)
    (out / "summary.md").write_text("```\n" + text + "\n```\n")
    write_statistics(stats_rows, out)
    curve = plot_certified_vs_radius(rows, out / "certified_vs_radius.png", metric)
    figures = [
        (plot_certified_example(ex, out / f"example_{i}.png"), f"{ex['case_id']}: {ex['condition']}")
        for i, ex in enumerate(examples)
    ]
    summary_body = [
        [
            str(s[c.replace(" ", "_")]) if c in ("mode", "cases") else f"{s[c.replace(' ', '_')]:.3f}"
            for c in SUMMARY_COLUMNS
        ]
        for s in summary
    ]
    stats_html = (
        _html_table(list(STATS_COLUMNS), [_stats_cells(r) for r in stats_rows], numeric_from=3)
        + "<p>Paired Wilcoxon signed-rank tests over cases (two-sided; zero differences split), Holm over every test "
        "of this table; the difference is the median of per-case plain - denoised with a bootstrap interval.</p>"
        if stats_rows
        else "<p>Only one smoothing mode was run, so there is no comparison.</p>"
    )
    title = str(settings.get("title", "Certification by randomized smoothing"))
    alpha = settings.get("alpha")
    stated = f" Certificates hold at alpha = {float(alpha):g} per case." if alpha is not None else ""
    warning = small_sample_warning([{**r, "alternative": "two-sided"} for r in stats_rows]) if stats_rows else None
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>Tests between modes: significant means Holm-adjusted p &le; 0.05.{_e(stated)}</p>",
        f'<p class="check failed"><strong>Small sample.</strong> {_e(warning)}</p>' if warning else "",
        *provenance_html(settings.get("provenance")),
        "<h2>Settings</h2>",
        _html_value({k: v for k, v in settings.items() if k != "provenance"}),
        "<p>Every certified voxel keeps its class under any L2 perturbation of the input smaller than the radius "
        "sigma * PhiInv(tau), with probability at least 1 - alpha over the noise for all voxels of a case at once "
        f"(SegCertify). Abstained voxels count as wrong in the certified accuracy and belong to no region in the "
        f"certified {label}; accuracy and abstain rate are taken "
        f"{'over every scored pixel' if settings.get('mask') == 'none' else 'over the brain (non-zero voxels)'}"
        f" (ignored labels left out). Base {label} is the base model on the clean input."
        + (" A case's mIoU averages the classes in its truth or its certified map." if metric == "iou" else "")
        + "</p>",
        f"<p>{_e(_scoring(settings))}</p>",
        f'<p class="policy">{_e(describe_empty_policy(str(settings.get("empty_policy", "brats"))))}</p>',
        "<h2>Summary</h2>",
        _html_table(list(SUMMARY_COLUMNS), summary_body, numeric_from=1),
        f"<pre>{_e(text)}</pre>",
        "<h2>Certified metrics against radius</h2>",
        _figure_html(curve, "Means over cases with 95 % bootstrap intervals; one point per tau."),
        "<p>Certified maps: <code>maps/</code> (NIfTI, 255 = abstained; 2-D maps also as palette PNG).</p>",
        "<h2>Denoised against plain smoothing</h2>",
        stats_html,
        "<h2>Examples</h2>",
        *(_figure_html(p, caption) for p, caption in figures),
    ]
    return write_html_page(out / "report.html", title, parts)


def _scoring(settings: Mapping[str, Any]) -> str:
    """How the base and certified Dice were scored, for the head of the run."""
    if settings.get("head") == "sigmoid":
        return (
            "Base Dice is scored per region channel of the sigmoid head (probability >= 0.5); the certified maps are "
            "votes over class maps rebuilt from the nested channels, so certified Dice is scored from class maps."
        )
    label = _metric_label(str(settings.get("metric", "dice")))
    return f"Base and certified {label} are scored from class maps (the arg-max of the softmax head)."
