"""Per-case, per-region Dice and HD95 on region masks, with one stated policy for empty regions.

Scores are taken on region masks ``(N, R, *spatial)``: :func:`region_metrics` is the core, and :func:`case_metrics`
the same for class maps. Dice comes from :func:`robustseg.evaluation.dice.region_dice` (the one home of Dice and of
the empty-region policy, :mod:`robustseg.evaluation.dice`), HD95 (:func:`hausdorff95`, MONAI's definition) in mm of
the *preprocessed* voxel grid: :func:`spacing_from_affine`
reads it from the image's affine after ``Spacingd`` / ``Orientationd``, where the header's ``pixdim`` still holds the
file's spacing.

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
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, get_mask_edges, prepare_spacing
from scipy.spatial import cKDTree

from robustseg.evaluation.dice import EMPTY_POLICIES, EmptyPolicy, get_policy, region_dice
from robustseg.labels import BRATS, LabelScheme

__all__ = [
    "BRATS_EMPTY_HD95",
    "EMPTY_POLICIES",
    "EMPTY_POLICY_TEXT",
    "MEAN_IOU",
    "RegionDiceMetric",
    "case_metrics",
    "describe_empty_policy",
    "hausdorff95",
    "long_rows",
    "mean_present",
    "region_dice_table",
    "region_metrics",
    "spacing_from_affine",
]

MEAN_IOU = "mIoU"
"""The region name of a case's mean IoU over its classes, beside the per-class rows (natural images)."""


def mean_present(values: Sequence[float]) -> float:
    """The mean of the values that are not NaN (an image's mIoU: its classes in truth or prediction); NaN if none."""
    present = [float(v) for v in values if not math.isnan(float(v))]
    return sum(present) / len(present) if present else math.nan


BRATS_EMPTY_HD95 = 373.13
"""HD95 (mm) that BraTS gives a region empty in exactly one of prediction and ground truth: sqrt(240² + 240² + 155²)."""


def describe_empty_policy(policy: str | EmptyPolicy = "brats", empty_hd95: float | None = None) -> str:
    """The sentence a report prints to state how empty regions were scored."""
    rule = get_policy(policy)
    if empty_hd95 is not None:
        rule = EmptyPolicy(rule.name, rule.both_empty_dice, rule.ignore_empty_truth, float(empty_hd95), rule.source)
    return rule.describe()


EMPTY_POLICY_TEXT: dict[str, str] = {p: describe_empty_policy(p) for p in EMPTY_POLICIES}
"""Report text of each policy."""


def spacing_from_affine(image: Any) -> list[float] | None:
    """Voxel size in mm along each spatial axis of a MetaTensor ``(C, *spatial)``, from its affine; ``None`` without.

    The affine is the one of the preprocessed grid (after ``Spacingd``, ``Orientationd``, cropping), so HD95 is
    measured where the prediction lives; the column norms of its linear part are the spacings, which also holds for
    permuted and oblique axes.
    """
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    dims = image.ndim - 1
    linear = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)[:dims, :dims]
    return [float(v) for v in np.linalg.norm(linear, axis=0)]


def _as_class_map(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim not in (4, 5) or t.shape[1] != 1:
        raise ValueError(
            f"{name} must be a class map (N, 1, H, W) or (N, 1, H, W, D) but has shape {tuple(t.shape)}; "
            "arg-max the model output over channels first (LabelScheme.class_map_from_logits)."
        )
    return t.detach().cpu().as_subclass(torch.Tensor).long()


def region_metrics(
    pred_regions: torch.Tensor,
    label_regions: torch.Tensor,
    region_names: Sequence[str],
    valid: torch.Tensor | None = None,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
    empty_policy: str | EmptyPolicy = "brats",
    empty_hd95: float | None = None,
    hd95: bool = True,
    iou: bool = False,
) -> list[dict[str, float]]:
    """Dice and HD95 (and IoU) of every case and region of predicted and ground-truth region masks ``(N, R, *spatial)``.

    Args:
        pred_regions: predicted masks, e.g. :meth:`~robustseg.labels.LabelScheme.regions_from_logits` (softmax
            heads: the arg-max class map's regions; sigmoid heads: each channel as it is).
        label_regions: ground-truth masks of the same shape.
        region_names: the name of each of the R regions.
        valid: ``(N, 1, *spatial)`` voxels to score (False on ``ignore_index``), or ``None`` for all.
        spacing: voxel size in mm (a number, one per spatial axis, or one such entry per case), so HD95 is in mm;
            ``None`` measures it in voxels.
        empty_policy: see :mod:`robustseg.evaluation.dice`.
        empty_hd95: HD95 when exactly one mask is empty; default the policy's (373.13 or 374 mm).
        hd95: compute HD95 (``False``: NaN, as for natural images, where boundary distances are not reported).
        iou: add ``"<region>_iou"``, intersection over union, NaN where the region is in neither mask (natural
            images: a class absent from an image's truth and prediction does not enter its mIoU).

    Returns:
        One dict per case with ``"<region>_dice"`` and ``"<region>_hd95"`` (and ``"<region>_iou"``) for each
        region, e.g. ``"ET_dice"``.
    """
    rule = get_policy(empty_policy)
    miss_hd95 = rule.one_empty_hd95 if empty_hd95 is None else float(empty_hd95)
    pred = pred_regions.detach().cpu().as_subclass(torch.Tensor).bool()
    label = label_regions.detach().cpu().as_subclass(torch.Tensor).bool()
    if pred.shape != label.shape:
        raise ValueError(
            f"prediction and label must have the same shape but are {tuple(pred.shape)} and {tuple(label.shape)}."
        )
    if pred.shape[1] != len(region_names):
        raise ValueError(f"masks have {pred.shape[1]} regions but {len(region_names)} names {list(region_names)}.")
    if valid is not None:
        keep = valid.detach().cpu().as_subclass(torch.Tensor).bool()
        keep = keep.unsqueeze(1) if keep.ndim == pred.ndim - 1 else keep
        pred, label = pred & keep, label & keep
    dice = region_dice(pred, label, policy=rule)
    dims = tuple(range(2, pred.ndim))
    union = (pred | label).sum(dims).double()
    overlap = torch.where(union > 0, (pred & label).sum(dims).double() / union.clamp_min(1), float("nan"))
    batch = pred.shape[0]
    spacings = prepare_spacing(spacing=spacing, batch_size=batch, img_dim=pred.ndim - 2)
    rows: list[dict[str, float]] = []
    for b in range(batch):
        row: dict[str, float] = {}
        for r, region in enumerate(region_names):
            p, g = pred[b : b + 1, r : r + 1], label[b : b + 1, r : r + 1]
            row[f"{region}_dice"] = float(dice[b, r])
            row[f"{region}_hd95"] = _hd95(p, g, spacings[b], rule, miss_hd95) if hd95 else math.nan
            if iou:
                row[f"{region}_iou"] = float(overlap[b, r])
        rows.append(row)
    return rows


def case_metrics(
    pred_class_map: torch.Tensor | np.ndarray,
    label_class_map: torch.Tensor | np.ndarray,
    scheme: LabelScheme = BRATS,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
    empty_policy: str | EmptyPolicy = "brats",
    empty_hd95: float | None = None,
) -> list[dict[str, float]]:
    """:func:`region_metrics` of class maps ``(N, 1, *spatial)`` (2-D or 3-D), regions from ``scheme``.

    Voxels labelled ``scheme.ignore_index`` in the ground truth are left out of both masks.
    """
    pred = _as_class_map(pred_class_map, "pred_class_map")
    label = _as_class_map(label_class_map, "label_class_map")
    if pred.shape != label.shape:
        raise ValueError(
            f"prediction and label must have the same shape but are {tuple(pred.shape)} and {tuple(label.shape)}."
        )
    return region_metrics(
        scheme.to_regions(pred),
        scheme.to_regions(label),
        scheme.region_names,
        valid=scheme.valid_mask(label),
        spacing=spacing,
        empty_policy=empty_policy,
        empty_hd95=empty_hd95,
    )


class RegionDiceMetric(CumulativeIterationMetric):
    """MONAI's cumulative metric interface over :func:`~robustseg.evaluation.dice.region_dice`, with a stated policy.

    ``y_pred`` and ``y`` are region masks ``(B, R, *spatial)`` (e.g. after
    :class:`~robustseg.evaluation.regions.ClassMapToRegionsd`); each call buffers the per-case, per-region Dice, and
    :meth:`aggregate` returns their mean over cases and regions, NaN (the ``ignore`` policy's empty truths) left out.
    The Ignite handler :class:`robustseg.handlers.RegionDice` wraps it for training validation and evaluation, so
    they score empty regions like the audit.
    """

    def __init__(self, empty_policy: str | EmptyPolicy = "brats") -> None:
        super().__init__()
        self.policy = get_policy(empty_policy)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("RegionDiceMetric needs the ground truth y.")
        return region_dice(y_pred.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor), policy=self.policy).float()

    def aggregate(self) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the buffer of RegionDiceMetric must be a tensor but is {type(data).__name__}.")
        value, _ = do_metric_reduction(data, "mean")
        return value


def _hd95(pred: torch.Tensor, label: torch.Tensor, spacing: Any, rule: EmptyPolicy, miss_hd95: float) -> float:
    pred_empty, label_empty = not bool(pred.any()), not bool(label.any())
    if label_empty:
        if rule.ignore_empty_truth:
            return math.nan
        return 0.0 if pred_empty else miss_hd95
    if pred_empty:
        return miss_hd95
    return hausdorff95(pred[0, 0].numpy(), label[0, 0].numpy(), spacing)


def hausdorff95(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance of two non-empty boolean masks ``(*spatial)``, in mm.

    MONAI's definition (:func:`monai.metrics.compute_hausdorff_distance` with ``percentile=95``): the edge voxels of
    each mask (:func:`monai.metrics.utils.get_mask_edges`, on the bounding box of both), the distance from each edge
    voxel to the nearest edge voxel of the other mask, the 95th percentile of each direction, the larger of the two.
    The nearest-neighbour queries run on every core (MONAI's run on one), which matters for the noisy predictions of
    attacked inputs, whose edges are many.
    """
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally; nothing the caller can act on.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        edges = get_mask_edges(np.asarray(pred, dtype=bool), np.asarray(label, dtype=bool), crop=True)
    scale = np.ones(pred.ndim) if spacing is None else np.broadcast_to(np.asarray(spacing, dtype=np.float64), pred.ndim)
    points = [np.argwhere(e).astype(np.float64) * scale for e in edges]
    directed = [float(np.percentile(cKDTree(b).query(a, k=1, workers=-1)[0], 95)) for a, b in (points, points[::-1])]
    return max(directed)


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
