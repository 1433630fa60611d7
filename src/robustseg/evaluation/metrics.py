"""Per-case, per-region Dice and HD95 with MONAI's metrics, and a stated policy for empty regions.

A BraTS case often has no enhancing tumour, and an attack that erases the tumour empties the prediction: how such
cases are scored changes the means a report prints, so the policy is a named choice here, and
:func:`describe_empty_policy` gives the sentence a report should print beside its table.

Policies, for each case and region (ET, TC, WT for BraTS):

* ``"brats"`` (the BraTS challenge convention): ground truth and prediction both empty -> Dice 1, HD95 0; exactly
  one of them empty -> Dice 0, HD95 = ``empty_hd95`` (BraTS uses 373.13 mm, the diagonal of its
  240 x 240 x 155 1-mm grid).
* ``"ignore"``: an empty ground truth gives NaN for Dice and HD95, so the case drops out of that region's mean
  (:func:`region_dice_table` skips NaN); a prediction that misses a non-empty region still scores Dice 0 and
  HD95 = ``empty_hd95``.

Example::

    rows = case_metrics(pred_class_map, label_class_map, spacing=(1.0, 1.0, 1.0))
    rows[0]["ET_dice"], rows[0]["ET_hd95"]
    region_dice_table(rows)["ET"]["dice"]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.metrics.utils import prepare_spacing

from robustseg.labels import BRATS, LabelScheme

__all__ = [
    "BRATS_EMPTY_HD95",
    "EMPTY_POLICIES",
    "EMPTY_POLICY_TEXT",
    "case_metrics",
    "describe_empty_policy",
    "long_rows",
    "region_dice_table",
]

BRATS_EMPTY_HD95 = 373.13
"""HD95 (mm) that BraTS gives a region empty in exactly one of prediction and ground truth: sqrt(240² + 240² + 155²)."""

EMPTY_POLICIES = ("brats", "ignore")

_POLICY_TEMPLATES = {
    "brats": (
        "Empty regions follow the BraTS convention: ground truth and prediction both empty score Dice 1 and "
        "HD95 0; exactly one empty scores Dice 0 and HD95 {hd95:g} mm."
    ),
    "ignore": (
        "Cases whose ground truth is empty in a region are left out of that region's scores (NaN, excluded from "
        "means); a prediction that misses a non-empty region scores Dice 0 and HD95 {hd95:g} mm."
    ),
}


def describe_empty_policy(policy: str = "brats", empty_hd95: float = BRATS_EMPTY_HD95) -> str:
    """The sentence a report prints to state how empty regions were scored."""
    if policy not in _POLICY_TEMPLATES:
        raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES} but is {policy!r}.")
    return _POLICY_TEMPLATES[policy].format(hd95=empty_hd95)


EMPTY_POLICY_TEXT: dict[str, str] = {p: describe_empty_policy(p) for p in EMPTY_POLICIES}
"""Report text of each policy with the BraTS value of ``empty_hd95``."""


def _as_class_map(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim not in (4, 5) or t.shape[1] != 1:
        raise ValueError(
            f"{name} must be a class map (N, 1, H, W) or (N, 1, H, W, D) but has shape {tuple(t.shape)}; "
            "arg-max the model output over channels first (LabelScheme.class_map_from_logits)."
        )
    return t.detach().cpu().long()


def case_metrics(
    pred_class_map: torch.Tensor | np.ndarray,
    label_class_map: torch.Tensor | np.ndarray,
    scheme: LabelScheme = BRATS,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
    empty_policy: str = "brats",
    empty_hd95: float = BRATS_EMPTY_HD95,
) -> list[dict[str, float]]:
    """Dice and HD95 of every case and region of a batch of class maps.

    Dice comes from :func:`monai.metrics.compute_dice`, HD95 from :func:`monai.metrics.compute_hausdorff_distance`
    with ``percentile=95`` (symmetric, Euclidean, on the masks' edge voxels). Regions are those of ``scheme``.
    Voxels labelled ``scheme.ignore_index`` in the ground truth are removed from both masks before scoring.

    Args:
        pred_class_map: predicted class indices ``(N, 1, *spatial)``, 2-D or 3-D.
        label_class_map: ground-truth class indices, same shape.
        scheme: label scheme that turns class maps into region masks.
        spacing: voxel size in mm, so HD95 is in mm: a number (isotropic), one value per spatial axis, or one such
            entry per case. ``None`` measures HD95 in voxels.
        empty_policy: ``"brats"`` or ``"ignore"``, see the module docstring and :func:`describe_empty_policy`.
        empty_hd95: HD95 given when exactly one of prediction and ground truth is empty (BraTS: 373.13 mm).

    Returns:
        One dict per case with ``"<region>_dice"`` and ``"<region>_hd95"`` for each region, e.g. ``"ET_dice"``.
    """
    if empty_policy not in EMPTY_POLICIES:
        raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES} but is {empty_policy!r}.")
    pred = _as_class_map(pred_class_map, "pred_class_map")
    label = _as_class_map(label_class_map, "label_class_map")
    if pred.shape != label.shape:
        raise ValueError(
            f"prediction and label must have the same shape but are {tuple(pred.shape)} and {tuple(label.shape)}."
        )
    pred_regions = scheme.to_regions(pred)
    label_regions = scheme.to_regions(label)
    if scheme.ignore_index is not None:
        keep = (label != scheme.ignore_index).float()  # (N, 1, *spatial) broadcasts over regions
        pred_regions = pred_regions * keep
        label_regions = label_regions * keep

    # ignore_empty=False is MONAI's BraTS branch (1 when both are empty, 0 for a false positive on an empty truth).
    dice = compute_dice(pred_regions, label_regions, include_background=True, ignore_empty=empty_policy == "ignore")
    batch = pred_regions.shape[0]
    spacings = prepare_spacing(spacing=spacing, batch_size=batch, img_dim=pred_regions.ndim - 2)

    rows: list[dict[str, float]] = []
    for b in range(batch):
        row: dict[str, float] = {}
        for r, region in enumerate(scheme.region_names):
            p, g = pred_regions[b : b + 1, r : r + 1], label_regions[b : b + 1, r : r + 1]
            row[f"{region}_dice"] = float(dice[b, r])
            row[f"{region}_hd95"] = _hd95(p, g, spacings[b], empty_policy, empty_hd95)
        rows.append(row)
    return rows


def _hd95(pred: torch.Tensor, label: torch.Tensor, spacing: Any, policy: str, empty_hd95: float) -> float:
    pred_empty, label_empty = not bool(pred.any()), not bool(label.any())
    if label_empty:
        if policy == "ignore":
            return math.nan
        return 0.0 if pred_empty else float(empty_hd95)
    if pred_empty:
        return float(empty_hd95)
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally; nothing the caller can act on.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        hd = compute_hausdorff_distance(pred, label, include_background=True, percentile=95, spacing=spacing)
    return float(hd[0, 0])


def region_dice_table(rows: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean Dice and HD95 per region over cases, skipping NaN (the ``"ignore"`` policy's empty ground truths).

    Args:
        rows: per-case dicts as returned by :func:`case_metrics` (keys ``"<region>_dice"``, ``"<region>_hd95"``).

    Returns:
        ``{region: {"dice": mean, "hd95": mean, "n": scored cases}}``; a region with no scored case has NaN means.
    """
    values: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            region, _, metric = key.rpartition("_")
            if metric in ("dice", "hd95") and region:
                values.setdefault(region, {"dice": [], "hd95": []})[metric].append(float(value))
    table: dict[str, dict[str, float]] = {}
    for region, metrics in values.items():
        dice = [v for v in metrics["dice"] if not math.isnan(v)]
        hd95 = [v for v in metrics["hd95"] if not math.isnan(v)]
        table[region] = {
            "dice": float(np.mean(dice)) if dice else math.nan,
            "hd95": float(np.mean(hd95)) if hd95 else math.nan,
            "n": float(len(dice)),
        }
    return table


def long_rows(rows: Sequence[Mapping[str, float]], case_ids: Sequence[str], condition: str) -> list[dict[str, Any]]:
    """Per-case rows of :func:`case_metrics` in long form, the table of :func:`.statistics.compare_conditions`.

    Args:
        rows: per-case dicts from :func:`case_metrics`.
        case_ids: the case id of each row, in the same order.
        condition: what was scored (``"clean"``, an attack name, or a model name).

    Returns:
        One dict per case and region: ``case_id``, ``condition``, ``region``, ``dice``, ``hd95``.
    """
    if len(rows) != len(case_ids):
        raise ValueError(f"need one case id per row but got {len(case_ids)} ids for {len(rows)} rows.")
    out: list[dict[str, Any]] = []
    for case_id, row in zip(case_ids, rows, strict=True):
        regions = [k[: -len("_dice")] for k in row if k.endswith("_dice")]
        for region in regions:
            out.append(
                {
                    "case_id": case_id,
                    "condition": condition,
                    "region": region,
                    "dice": float(row[f"{region}_dice"]),
                    "hd95": float(row.get(f"{region}_hd95", math.nan)),
                }
            )
    return out
