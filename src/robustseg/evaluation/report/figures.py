"""Figures of a report, drawn on :class:`matplotlib.figure.Figure` with the Agg canvas, never through ``pyplot``:
no window opens and no global figure state is touched."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from robustseg.evaluation.report.rows import (
    CLEAN,
    _attack_eps,
    _pairs,
    _regions,
    _scores,
    audit_rows,
    condition_name,
    mean_interval,
    select_conditions,
)

__all__ = ["plot_dice_vs_eps", "plot_example", "plot_paired", "tumour_slice"]

_DPI = 110


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
    return {"dice": "Dice", "iou": "IoU"}.get(metric, metric.upper())


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

    Every attack's line starts at eps 0 from the clean mean, which is also drawn as a dashed line with its band. An
    attack measured at a single budget is drawn as a point with its interval: no trend was measured. When every
    attack has the same single budget, the x axis lists the conditions at that budget instead of eps values.
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
    budgets = {float(e) for eps in by_attack.values() for e in eps}
    categorical = bool(by_attack) and len(budgets) == 1 and all(len(e) == 1 for e in by_attack.values())
    for ax, region in zip(axes, regions, strict=True):
        clean = mean_interval(list(_scores(table, region, CLEAN, metric).values()), confidence, interval, seed=seed)
        if not math.isnan(clean[0]):
            ax.axhline(clean[0], color="black", linestyle="--", linewidth=1.2, label=f"clean {clean[0]:.3f}")
            if not math.isnan(clean[1]):
                ax.axhspan(clean[1], clean[2], color="0.85", alpha=0.6, linewidth=0)
        for k, (attack, eps_values) in enumerate(by_attack.items()):
            measured = [(0.0, *clean)] if len(eps_values) > 1 else []  # one budget: a point, not a trend from 0
            points = measured + [
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
            if len(x) > 1:
                ax.plot(x, mean, marker="o", color=colour, label=attack)
                ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
            else:
                error = np.nan_to_num(np.abs(np.array([[mean[0] - low[0]], [high[0] - mean[0]]])))
                where = np.array([float(k)]) if categorical else x  # one budget for all: one column per attack
                ax.errorbar(where, mean, yerr=error, fmt="o", color=colour, capsize=3, label=attack)
        if categorical:
            ax.set_xticks(range(len(by_attack)), list(by_attack), rotation=20)
            ax.set_xlim(-0.6, len(by_attack) - 0.4)
        ax.set_title(region)
        if categorical:
            budget = f"eps {next(iter(budgets)):g}" + (f" ({eps_unit})" if eps_unit else "")
            ax.set_xlabel(f"condition at {budget}")
        else:
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


Palette = Mapping[int, Sequence[int]] | Sequence[Sequence[int]]
"""Colours (0..255 RGB) of class values: a mapping value -> colour, or a list indexed by value."""


def _label_colour(value: int, palette: Palette | None = None) -> tuple[float, float, float]:
    """The colour of a class: the dataset's palette (0..255 RGB) when given, else matplotlib's tab10."""
    colour = None
    if isinstance(palette, Mapping):
        colour = palette.get(value, palette.get(str(value)))  # type: ignore[call-overload]
    elif palette is not None and 0 <= value < len(palette):
        colour = palette[value]
    if colour is not None:
        r, g, b = (float(v) / 255.0 for v in colour)
        return r, g, b
    r, g, b, _ = matplotlib.colormaps["tab10"]((value - 1) % 10)
    return float(r), float(g), float(b)


def _overlay_rgba(label: np.ndarray, alpha: float = 0.5, palette: Palette | None = None) -> np.ndarray:
    rgba = np.zeros((*label.shape, 4))
    for value in np.unique(label[label > 0]).astype(int):
        rgba[label == value] = (*_label_colour(int(value), palette), alpha)
    return rgba


def _is_rgb(names: Sequence[str], channels: int) -> bool:
    return channels == 3 and [n.upper() for n in names] == ["R", "G", "B"]


def _rgb(image: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` as an ``(H, W, 3)`` picture: as it is for [0, 1] images, else stretched to [0, 1]."""
    picture = np.moveaxis(image, 0, -1)
    low, high = float(picture.min()), float(picture.max())
    if low < 0.0 or high > 1.0:
        picture = (picture - low) / (high - low if high > low else 1.0)
    return np.clip(picture, 0.0, 1.0)


def plot_example(
    example: Mapping[str, Any],
    path: str | Path,
    channel: int | str | None = None,
    axis: int = -1,
    unit: str | None = None,
    palette: Palette | None = None,
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
        unit: the unit of the input (the threat model's eps unit), shown on the perturbation's colour bar.
        palette: RGB colour (0..255) of each class value, a list or a mapping (a dataset's colours, 255: its void
            colour); default ``example["palette"]``, else matplotlib's tab10. A 2-D image whose channels are named
            R, G, B is shown in colour, and its perturbation as the mean over the three channels.

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

    palette = palette if palette is not None else example.get("palette")
    colour = not volume and _is_rgb(names, image.shape[0])
    if colour:
        channel_label = "RGB"
        clean, adv = image.mean(0), adversarial.mean(0)
    else:
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
    pictures = {id(clean): _rgb(image), id(adv): _rgb(adversarial)} if colour else {}
    for ax, base, labels, title in panels:
        if colour:
            ax.imshow(pictures[id(base)], origin=origin, interpolation="nearest")
        else:
            ax.imshow(base, cmap="gray", vmin=vmin, vmax=vmax, origin=origin, interpolation="nearest")
        if labels is not None:
            ax.imshow(_overlay_rgba(labels, palette=palette), origin=origin, interpolation="nearest")
        ax.set_title(title, fontsize="medium")
    im = axes[0, 1].imshow(delta, cmap="RdBu_r", vmin=-limit, vmax=limit, origin=origin, interpolation="nearest")
    axes[0, 1].set_title(f"perturbation, max |δ| {float(np.abs(delta).max()):.3g}", fontsize="medium")
    bar = fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    bar.set_label(f"δ ({unit})" if unit else "δ (input units)")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    label_names = example.get("label_names") or {}
    values = sorted({int(v) for m in maps.values() for v in np.unique(m) if v > 0})
    if values:
        handles = [Patch(color=_label_colour(v, palette), label=str(label_names.get(v, f"label {v}"))) for v in values]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"{case_id}: {example.get('condition', '')}{where}")
    return _save(fig, path)
