"""The report of an attack audit: figures, tables and one self-contained HTML page.

The input is the long table of the sweep, one row per case x condition x region (as :class:`.results.ResultsStore`
writes it, so values may be strings): ``case_id``, ``attack`` (``"clean"`` for the clean condition), ``eps`` (0 for
clean), ``region``, ``dice``, ``hd95`` and the per-case perturbation size ``linf``, ``l2``, ``psnr_db`` (empty for
clean). A condition is named ``"<attack>@<eps>"`` (:func:`condition_name`); :func:`audit_rows` types the rows and adds
that name as ``condition``, which makes them the table of :func:`.statistics.compare_conditions`.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through ``pyplot``: no
window opens and no global figure state is touched.

Example::

    rows = audit_rows(store.rows())
    stats_rows = compare_conditions(rows)
    print(headline_table(rows, stats_rows))
    write_html_report("eval/audit", rows, stats_rows, checks, examples, {"norm": "linf", "eps_unit": "std"})
"""

from __future__ import annotations

import base64
import csv
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import stats

from robustseg.evaluation.metrics import BRATS_EMPTY_HD95, describe_empty_policy
from robustseg.evaluation.selfchecks import SelfCheck

__all__ = [
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

CLEAN = "clean"
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

_NUMERIC = ("eps", "dice", "hd95", "linf", "l2", "psnr_db")
_REQUIRED = ("case_id", "attack", "eps", "region", "dice")
_DPI = 110


# --------------------------------------------------------------------------------------------------------- rows


def condition_name(attack: str, eps: float | str) -> str:
    """The name of a condition: ``"clean"`` for the clean one, else ``f"{attack}@{eps:g}"`` (``"fgsm@0.1"``)."""
    attack = str(attack)
    return CLEAN if attack == CLEAN else f"{attack}@{float(eps):g}"


def _float(value: Any) -> float:
    """A float from a number or its CSV text; empty text and ``None`` are NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    return float(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def audit_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Typed copies of the audit rows with their ``condition`` added.

    Args:
        rows: one row per case x condition x region with ``case_id``, ``attack``, ``eps``, ``region``, ``dice`` and
            optionally ``hd95``, ``linf``, ``l2``, ``psnr_db``; numbers may be CSV text, empty text is NaN.

    Returns:
        New dicts: ids and names as ``str``, the numeric columns as ``float`` (missing ones NaN, ``eps`` 0 for clean),
        plus ``condition`` from :func:`condition_name`. Other keys are kept as they are.

    Raises:
        ValueError: a row lacks a required key or has a value that is not a number.
    """
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise ValueError(f"audit row {i} needs {list(_REQUIRED)} but lacks {missing}: {dict(row)}.")
        typed = dict(row)
        typed["case_id"], typed["attack"], typed["region"] = str(row["case_id"]), str(row["attack"]), str(row["region"])
        for key in _NUMERIC:
            try:
                typed[key] = _float(row.get(key))
            except (TypeError, ValueError):
                raise ValueError(
                    f"audit row {i} (case {typed['case_id']!r}): {key} must be a number but is {row.get(key)!r}."
                ) from None
        if typed["attack"] == CLEAN and math.isnan(typed["eps"]):
            typed["eps"] = 0.0
        typed["condition"] = condition_name(typed["attack"], typed["eps"])
        out.append(typed)
    return out


def _attack_eps(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Attacks in order of first appearance, each with its eps values ascending (clean left out)."""
    found: dict[str, set[float]] = {}
    for r in rows:
        if r["attack"] != CLEAN:
            found.setdefault(r["attack"], set()).add(r["eps"])
    return {a: sorted(e) for a, e in found.items()}


def _conditions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """All conditions: clean first (if present), then by attack and ascending eps."""
    attacked = [condition_name(a, e) for a, eps in _attack_eps(rows).items() for e in eps]
    return ([CLEAN] if any(r["attack"] == CLEAN for r in rows) else []) + attacked


def _regions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["region"] for r in rows))


def _scores(rows: Sequence[Mapping[str, Any]], region: str, condition: str, metric: str = "dice") -> dict[str, float]:
    """Case id -> score of one region and condition."""
    return {r["case_id"]: r[metric] for r in rows if r["region"] == region and r["condition"] == condition}


def _pairs(base: Mapping[str, float], other: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Cases scored (not NaN) under both, with their two scores."""
    cases = [c for c in base if c in other and not (math.isnan(base[c]) or math.isnan(other[c]))]
    return cases, np.array([base[c] for c in cases], dtype=float), np.array([other[c] for c in cases], dtype=float)


def select_conditions(rows: Iterable[Mapping[str, Any]], max_conditions: int = 6) -> list[str]:
    """The attacked conditions to plot: all of them, or at most ``max_conditions`` with the strongest eps first.

    When there are too many, each attack's largest eps is taken, then each attack's second largest, and so on, until
    ``max_conditions`` are chosen; the result is ordered by attack and ascending eps.
    """
    if max_conditions < 1:
        raise ValueError(f"max_conditions must be >= 1 but is {max_conditions}.")
    by_attack = _attack_eps(audit_rows(rows))
    strongest_first = {a: eps[::-1] for a, eps in by_attack.items()}
    chosen: set[tuple[str, float]] = set()
    level = 0
    while len(chosen) < max_conditions and any(level < len(e) for e in strongest_first.values()):
        for attack, eps in strongest_first.items():
            if level < len(eps) and len(chosen) < max_conditions:
                chosen.add((attack, eps[level]))
        level += 1
    return [condition_name(a, e) for a, eps in by_attack.items() for e in eps if (a, e) in chosen]


def mean_interval(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: str = "bootstrap",
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of the finite values with a two-sided interval across cases.

    Args:
        values: per-case scores; NaN is dropped.
        confidence: level of the interval.
        method: ``"bootstrap"`` (percentile interval of the mean over ``n_resamples`` seeded resamples of the cases;
            it stays inside the range of the data, which suits bounded scores like Dice) or ``"t"`` (Student t).
        n_resamples: bootstrap resamples.
        seed: bootstrap seed; the same seed gives the same interval.

    Returns:
        ``(mean, low, high)``; the interval is NaN with fewer than 2 values, all three with none.
    """
    if method not in ("bootstrap", "t"):
        raise ValueError(f"method must be 'bootstrap' or 't' but is {method!r}.")
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    if method == "t":
        half = float(stats.sem(v)) * float(stats.t.ppf((1 + confidence) / 2, v.size - 1))
        return mean, mean - half, mean + half
    index = np.random.default_rng(seed).integers(0, v.size, size=(n_resamples, v.size))
    low, high = np.quantile(v[index].mean(axis=1), [(1 - confidence) / 2, (1 + confidence) / 2])
    return mean, float(low), float(high)


# ------------------------------------------------------------------------------------------------------ figures


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _metric_label(metric: str) -> str:
    return "Dice" if metric == "dice" else metric.upper()


def plot_dice_vs_eps(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    eps_unit: str = "",
    metric: str = "dice",
    confidence: float = 0.95,
    interval: str = "bootstrap",
    seed: int = 0,
) -> Path:
    """Mean score against eps, one panel per region and one line per attack, with interval bands across cases.

    Every attack's line starts at eps 0 from the clean mean, which is also drawn as a dashed line with its band.
    Means are over the cases scored under each condition (NaN dropped), intervals from :func:`mean_interval`.

    Args:
        rows: audit rows (see :func:`audit_rows`).
        path: the PNG to write.
        eps_unit: what one unit of eps is (``"std of z-scored input"``), shown in the x-axis label.
        metric: the score column.
        confidence: level of the bands.
        interval: ``"bootstrap"`` or ``"t"``.
        seed: bootstrap seed.

    Returns:
        ``path``.
    """
    table = audit_rows(rows)
    regions = _regions(table) or ["(no rows)"]
    by_attack = _attack_eps(table)
    colours = matplotlib.colormaps["tab10"]
    fig = _new_figure(3.6 * len(regions) + 0.6, 3.6)
    axes = fig.subplots(1, len(regions), squeeze=False, sharey=True)[0]
    for ax, region in zip(axes, regions, strict=True):
        clean = mean_interval(list(_scores(table, region, CLEAN, metric).values()), confidence, interval, seed=seed)
        if not math.isnan(clean[0]):
            ax.axhline(clean[0], color="black", linestyle="--", linewidth=1.2, label=f"clean {clean[0]:.3f}")
            if not math.isnan(clean[1]):
                ax.axhspan(clean[1], clean[2], color="0.85", alpha=0.6, linewidth=0)
        for k, (attack, eps_values) in enumerate(by_attack.items()):
            points = [(0.0, *clean)] + [
                (
                    eps,
                    *mean_interval(
                        list(_scores(table, region, condition_name(attack, eps), metric).values()),
                        confidence,
                        interval,
                        seed=seed,
                    ),
                )
                for eps in eps_values
            ]
            x, mean, low, high = (np.array(col, dtype=float) for col in zip(*points, strict=True))
            colour = colours(k % 10)
            ax.plot(x, mean, marker="o", color=colour, label=attack)
            ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(region)
        ax.set_xlabel(f"eps ({eps_unit})" if eps_unit else "eps")
        ax.grid(alpha=0.3)
        if metric == "dice":
            ax.set_ylim(-0.02, 1.02)
        if ax.has_data():
            ax.legend(fontsize="small", loc="lower left")
    axes[0].set_ylabel(f"mean {_metric_label(metric)} ({confidence:.0%} {interval} interval)")
    return _save(fig, path)


def plot_paired(
    rows: Iterable[Mapping[str, Any]],
    region: str,
    conditions: str | Sequence[str] | None,
    path: str | Path,
    metric: str = "dice",
    max_conditions: int = 6,
) -> Path:
    """Per-case paired plot of one region: clean vs each condition, one line per case, the medians in bold.

    Args:
        rows: audit rows (see :func:`audit_rows`).
        region: the region to plot.
        conditions: one condition, several (one column each), or ``None`` for :func:`select_conditions` with
            ``max_conditions``.
        path: the PNG to write.
        metric: the score column.
        max_conditions: most columns when ``conditions`` is ``None``.

    Returns:
        ``path``. Cases with NaN under either condition are left out of that column; a column without pairs says so.
    """
    table = audit_rows(rows)
    if conditions is None:
        chosen = select_conditions(table, max_conditions)
    else:
        chosen = [conditions] if isinstance(conditions, str) else list(conditions)
    columns = chosen or ["(no attacked condition)"]
    fig = _new_figure(2.3 * len(columns) + 0.8, 3.8)
    axes = fig.subplots(1, len(columns), squeeze=False, sharey=True)[0]
    base = _scores(table, region, CLEAN, metric)
    for ax, condition in zip(axes, columns, strict=True):
        cases, x, y = _pairs(base, _scores(table, region, condition, metric))
        for a, b in zip(x, y, strict=True):
            ax.plot([0, 1], [a, b], color="0.55", alpha=0.6, linewidth=0.8, marker="o", markersize=3)
        if cases:
            medians = [float(np.median(x)), float(np.median(y))]
            ax.plot([0, 1], medians, color="tab:red", linewidth=2.5, marker="D", label="median")
            ax.legend(fontsize="small", loc="lower left")
        else:
            ax.text(0.5, 0.5, "no paired cases", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([0, 1], [CLEAN, condition], rotation=15)
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(f"{condition}\nn = {len(cases)}", fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
        if metric == "dice":
            ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel(f"{_metric_label(metric)} per case")
    fig.suptitle(f"{region}: clean vs attacked, paired by case")
    return _save(fig, path)


def tumour_slice(label: np.ndarray, axis: int = -1) -> int:
    """Index along ``axis`` of the slice with the most tumour (label > 0) voxels; the middle slice if none.

    Ties go to the first such slice.
    """
    mask = np.moveaxis(np.asarray(label) > 0, axis, 0)
    counts = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(counts)) if counts.size and counts.max() > 0 else mask.shape[0] // 2


def _channel_index(channel: int | str | None, names: Sequence[str], n_channels: int) -> int:
    lowered = [str(n).lower() for n in names]
    if channel is None:
        return lowered.index("flair") if "flair" in lowered else 0
    if isinstance(channel, str):
        if channel.lower() not in lowered:
            raise ValueError(f"channel {channel!r} is not among the channel names {list(names)}.")
        return lowered.index(channel.lower())
    if not 0 <= channel < n_channels:
        raise ValueError(f"channel must be in [0, {n_channels}) but is {channel}.")
    return channel


def _label_colour(value: int) -> tuple[float, float, float]:
    r, g, b, _ = matplotlib.colormaps["tab10"]((value - 1) % 10)
    return float(r), float(g), float(b)


def _overlay_rgba(label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    rgba = np.zeros((*label.shape, 4))
    for value in np.unique(label[label > 0]).astype(int):
        rgba[label == value] = (*_label_colour(int(value)), alpha)
    return rgba


def plot_example(
    example: Mapping[str, Any], path: str | Path, channel: int | str | None = None, axis: int = -1
) -> Path:
    """One case under attack: clean, perturbation, adversarial, and the two predictions and ground truth overlaid.

    For 3-D volumes the slice is :func:`tumour_slice` of the ground truth along ``axis`` (the last, axial, axis of
    ``(H, W, D)`` NIfTI-ordered arrays), shown transposed with the origin at the bottom; 2-D images are shown as
    they are. The perturbation is ``adversarial - image`` on a diverging colormap symmetric about 0.

    Args:
        example: ``image`` and ``adversarial`` ``(C, *spatial)``, ``label``, ``pred_clean`` and ``pred_adversarial``
            ``(*spatial)`` class maps (a leading axis of size 1 is allowed), ``case_id``, ``condition``, and
            optionally ``channel_names`` and ``label_names`` (class value -> name).
        path: the PNG to write.
        channel: the channel to show, by index or name; default ``example["channel"]``, else FLAIR when named,
            else 0.
        axis: the spatial axis to slice a 3-D volume along.

    Returns:
        ``path``.

    Raises:
        ValueError: a missing key or arrays whose shapes do not match.
    """
    case_id = str(example.get("case_id", "?"))
    missing = [k for k in ("image", "adversarial", "label", "pred_clean", "pred_adversarial") if k not in example]
    if missing:
        raise ValueError(f"example of case {case_id!r} lacks {missing}.")
    image = np.asarray(example["image"], dtype=float)
    adversarial = np.asarray(example["adversarial"], dtype=float)
    if image.ndim not in (3, 4):
        raise ValueError(f"image of case {case_id!r} must be (C, H, W) or (C, H, W, D) but has shape {image.shape}.")
    if adversarial.shape != image.shape:
        raise ValueError(
            f"adversarial of case {case_id!r} must have the image's shape {image.shape} but has {adversarial.shape}."
        )
    spatial = image.shape[1:]
    maps: dict[str, np.ndarray] = {}
    for key in ("label", "pred_clean", "pred_adversarial"):
        arr = np.asarray(example[key])
        if arr.shape == (1, *spatial):
            arr = arr[0]
        if arr.shape != spatial:
            raise ValueError(f"{key} of case {case_id!r} must have shape {spatial} but has {arr.shape}.")
        maps[key] = arr.astype(int)
    names = list(example.get("channel_names") or [])
    c = _channel_index(channel if channel is not None else example.get("channel"), names, image.shape[0])
    channel_label = names[c] if c < len(names) else f"channel {c}"

    volume = len(spatial) == 3
    k = tumour_slice(maps["label"], axis) if volume else 0
    where = f", slice {k} of axis {axis % 3}" if volume else ""
    origin: Literal["upper", "lower"] = "lower" if volume else "upper"

    def cut(a: np.ndarray) -> np.ndarray:
        """The shown 2-D plane: the chosen slice of a volume, transposed to put x across; a 2-D image as it is."""
        return np.take(a, k, axis=axis % 3).T if volume else a

    clean, adv = cut(image[c]), cut(adversarial[c])
    delta = adv - clean
    vmin, vmax = (float(v) for v in np.percentile(clean, [1, 99]))
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmin + 0.5
    limit = float(np.abs(delta).max()) or 1.0

    fig = _new_figure(10.5, 7.5)
    axes = fig.subplots(2, 3)
    panels: list[tuple[Axes, np.ndarray, np.ndarray | None, str]] = [
        (axes[0, 0], clean, None, f"clean ({channel_label})"),
        (axes[0, 2], adv, None, f"adversarial ({channel_label})"),
        (axes[1, 0], clean, cut(maps["pred_clean"]), "clean prediction"),
        (axes[1, 1], adv, cut(maps["pred_adversarial"]), "adversarial prediction"),
        (axes[1, 2], clean, cut(maps["label"]), "ground truth"),
    ]
    for ax, base, labels, title in panels:
        ax.imshow(base, cmap="gray", vmin=vmin, vmax=vmax, origin=origin, interpolation="nearest")
        if labels is not None:
            ax.imshow(_overlay_rgba(labels), origin=origin, interpolation="nearest")
        ax.set_title(title, fontsize="medium")
    im = axes[0, 1].imshow(delta, cmap="RdBu_r", vmin=-limit, vmax=limit, origin=origin, interpolation="nearest")
    axes[0, 1].set_title(f"perturbation, max |δ| {float(np.abs(delta).max()):.3g}", fontsize="medium")
    fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    label_names = example.get("label_names") or {}
    values = sorted({int(v) for m in maps.values() for v in np.unique(m) if v > 0})
    if values:
        handles = [Patch(color=_label_colour(v), label=str(label_names.get(v, f"label {v}"))) for v in values]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"{case_id}: {example.get('condition', '')}{where}")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------- tables


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
    cases; Holm p comes from ``stats_rows`` (``n/a`` where absent).
    """
    table = audit_rows(rows)
    holm_p = {(str(r["region"]), str(r["condition"])): r.get("p_holm") for r in stats_rows or []}
    header = ["region", "condition", "n", f"clean {_metric_label(metric)}", "attacked", "drop", "Holm p"]
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


# --------------------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.significant td { background: #fff4e5; }
.badge { display: inline-block; padding: .1em .6em; border-radius: .8em; font-weight: bold; color: #fff;
         font-size: .85em; }
.pass { background: #2e7d32; }
.warn { background: #e65100; }
.check { margin: .6em 0; padding: .5em .8em; border-left: 4px solid #2e7d32; background: #f6fbf6; }
.check.failed { border-left-color: #e65100; background: #fff6ef; }
.policy { background: #f4f6fa; padding: .6em .8em; border-left: 4px solid #5573a8; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_value(value: Any) -> str:
    """Settings values: mappings as nested tables, lists joined, floats with ``g``; everything escaped."""
    if isinstance(value, Mapping):
        if not value:
            return "&mdash;"
        cells = "".join(f"<tr><th>{_e(k)}</th><td>{_html_value(v)}</td></tr>" for k, v in value.items())
        return f"<table>{cells}</table>"
    if isinstance(value, list | tuple):
        if any(isinstance(v, Mapping) for v in value):
            return "<ul>" + "".join(f"<li>{_html_value(v)}</li>" for v in value) + "</ul>"
        return ", ".join(_html_value(v) for v in value)
    if isinstance(value, float):
        return _e(f"{value:g}")
    return _e(value)


def _html_table(header: Sequence[str], body: Sequence[Sequence[str]], numeric_from: int = 2) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for cells in body:
        tds = "".join(
            f'<td class="num">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>" for i, c in enumerate(cells)
        )
        lines.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _check_fields(check: SelfCheck | Mapping[str, Any]) -> tuple[str, bool, str, str]:
    if isinstance(check, SelfCheck):
        return check.name, check.passed, check.detail, check.explanation
    return str(check["name"]), _truthy(check["passed"]), str(check.get("detail", "")), str(check["explanation"])


def _checks_html(checks: Sequence[SelfCheck | Mapping[str, Any]]) -> str:
    if not checks:
        return "<p>No self-checks were run.</p>"
    fields = [_check_fields(c) for c in checks]
    failed = sum(not f[1] for f in fields)
    summary = f"<p><strong>{len(fields) - failed} of {len(fields)} checks passed.</strong>" + (
        " Results flagged below may overstate robustness.</p>" if failed else "</p>"
    )
    items = []
    for name, passed, detail, explanation in fields:
        badge = '<span class="badge pass">PASS</span>' if passed else '<span class="badge warn">WARN</span>'
        items.append(
            f'<div class="check{"" if passed else " failed"}">{badge} <strong>{_e(name)}</strong>'
            f"<br><small>{_e(detail)}</small><br>{_e(explanation)}</div>"
        )
    return summary + "".join(items)


def _stats_html(stats_rows: Sequence[Mapping[str, Any]]) -> str:
    if not stats_rows:
        return "<p>No comparisons (no attacked condition).</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in HEADLINE_COLUMNS)
    lines = []
    for row in stats_rows:
        cells = _headline_cells(row)
        tds = "".join(f'<td class="num">{_e(c)}</td>' if i >= 2 else f"<td>{_e(c)}</td>" for i, c in enumerate(cells))
        css = ' class="significant"' if _truthy(row.get("significant")) else ""
        lines.append(f"<tr{css}>{tds}</tr>")
    alternatives = sorted({str(r.get("alternative", "")) for r in stats_rows} - {""})
    zero_methods = sorted({str(r.get("zero_method", "")) for r in stats_rows} - {""})
    method = (
        f"<p>Wilcoxon signed-rank test of clean vs attacked per case (alternative: {_e(', '.join(alternatives))}; "
        f"zero differences: {_e(', '.join(zero_methods))}); Holm correction over the {len(stats_rows)} tests of this "
        "table; the drop is the median of the per-case differences with a seeded bootstrap interval; rank-biserial "
        "is the matched-pairs effect size.</p>"
    )
    notes = [f"{r['region']} / {r['condition']}: {r['note']}" for r in stats_rows if str(r.get("note") or "").strip()]
    note_html = "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>{method}{note_html}"


def _figure_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _file_stem(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_") or "figure"


def write_html_report(
    out_dir: str | Path,
    rows: Iterable[Mapping[str, Any]],
    stats_rows: Sequence[Mapping[str, Any]],
    checks: Sequence[SelfCheck | Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> Path:
    """Write ``report.html``, one self-contained page, with its figures and tables next to it.

    The page holds the settings, the self-checks (a PASS or WARN badge and the explanation of each), the statistics
    table with the empty-region policy sentence, mean scores and perturbation sizes per condition, the Dice-vs-eps
    plot, one paired plot per region and one figure per example. Figures are embedded as base64 PNG data URIs and
    the CSS is inline, so the page needs no other file; all text is HTML-escaped.

    Args:
        out_dir: the folder to write into (created).
        rows: the audit rows (see :func:`audit_rows`).
        stats_rows: :func:`.statistics.compare_conditions` of those rows.
        checks: :class:`.selfchecks.SelfCheck` objects, or dicts with their fields.
        examples: dicts for :func:`plot_example`.
        settings: shown as given (nested mappings as nested tables): the threat model (norm, eps and unit, mask,
            clip bounds), attacks and parameters, model and checkpoint, seed, ... Keys read by the report:
            ``title``, ``eps_unit`` (x-axis label), ``empty_policy`` (``"brats"`` by default) and ``empty_hd95``
            (for the policy sentence of :func:`.metrics.describe_empty_policy`), ``example_channel``.

    Returns:
        The path of ``report.html``. Next to it: ``dice_vs_eps.png``, ``paired_<region>.png``,
        ``example_<i>_<case>_<condition>.png``, ``statistics.csv`` and ``statistics.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = audit_rows(rows)
    regions = _regions(table)
    conditions = _conditions(table)
    title = str(settings.get("title", "Adversarial robustness audit"))
    policy = describe_empty_policy(
        str(settings.get("empty_policy", "brats")), float(settings.get("empty_hd95", BRATS_EMPTY_HD95))
    )
    write_tables(stats_rows, out)

    curve = plot_dice_vs_eps(table, out / "dice_vs_eps.png", eps_unit=str(settings.get("eps_unit", "")))
    paired = [(r, plot_paired(table, r, None, out / f"{_file_stem('paired', r)}.png")) for r in regions]
    example_figures = []
    for i, example in enumerate(examples):
        stem = _file_stem("example", str(i), str(example.get("case_id", "")), str(example.get("condition", "")))
        path = plot_example(example, out / f"{stem}.png", channel=settings.get("example_channel"))
        example_figures.append((example, path))

    derived = {
        "cases": len({r["case_id"] for r in table}),
        "regions": regions,
        "conditions": conditions,
    }
    parts = [
        f"<h1>{_e(title)}</h1>",
        "<h2>Settings</h2>",
        _html_value(dict(settings)),
        "<h3>From the results</h3>",
        _html_value(derived),
        "<h2>Self-checks</h2>",
        _checks_html(checks),
        "<h2>Statistics</h2>",
        _stats_html(stats_rows),
        f'<p class="policy">{_e(policy)}</p>',
        "<h3>Mean scores over paired cases</h3>",
        f"<pre>{_e(headline_table(table, stats_rows))}</pre>",
        "<h3>Perturbation size</h3>",
        _html_table(
            ["condition", "cases", "max L-inf", "mean L2", "mean PSNR (dB)"], _perturbation_rows(table), numeric_from=1
        ),
        "<h2>Dice against eps</h2>",
        _figure_html(curve, "Mean Dice against eps per region and attack, with interval bands across cases."),
        "<h2>Paired per-case plots</h2>",
        *(
            _figure_html(
                p,
                f"{r}: Dice per case, clean vs attacked (at most 6 conditions: the strongest eps per attack first).",
            )
            for r, p in paired
        ),
        "<h2>Examples</h2>",
        *(_figure_html(p, f"{ex.get('case_id', '')} under {ex.get('condition', '')}") for ex, p in example_figures),
    ]
    if not example_figures:
        parts.append("<p>No examples.</p>")
    return write_html_page(out / "report.html", title, parts)


def write_html_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    """One self-contained HTML page (inline CSS) of the given body ``parts``, written to ``path``."""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
