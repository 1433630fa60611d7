"""Metric handlers and output transforms for Ignite engines: Dice per region under the stated empty policy, and
mIoU, per-class IoU and pixel accuracy from one confusion matrix (natural images)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.handlers import IgniteMetricHandler

from robustseg.evaluation.confusion import MeanIoUMetric, confusion_matrix, iou, mean_iou, pixel_accuracy
from robustseg.evaluation.metrics import RegionDiceMetric

__all__ = ["IoUTable", "MeanIoU", "RegionDice", "RegionDiceTable", "loss_from_output", "select_region"]


class RegionDice(IgniteMetricHandler):
    """Mean Dice of region masks under an empty-region policy: ``MeanDice`` with robustseg's one Dice.

    MONAI's ``MeanDice`` scores an empty ground truth as NaN (left out of the mean, so a false positive there costs
    nothing); this handler scores as the audit does (:mod:`robustseg.evaluation.dice`), and saves the per-case values
    for ``MetricsSaver`` like ``MeanDice``.

    Args:
        empty_policy: ``brats``, ``brats2023`` or ``ignore``.
        output_transform: ``(y_pred, y)`` from the engine's output, e.g. ``from_engine(["pred", "label"])`` or
            :func:`select_region`.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        empty_policy: str = "brats",
        output_transform: Callable[[Any], Any] = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=RegionDiceMetric(empty_policy), output_transform=output_transform, save_details=save_details
        )


def select_region(index: int, keys: Sequence[str] = ("pred", "label")) -> Callable[[Any], tuple[list, ...]]:
    """An ``output_transform`` for ``MeanDice`` & co. that keeps channel ``index`` of each decollated item.

    The evaluator's post-processing turns predictions and labels into region masks (channels ET, TC, WT for BraTS,
    :class:`robustseg.evaluation.regions.ClassMapToRegionsd`); ``MeanDice(output_transform=select_region(0))`` then
    reports the Dice of the first region alone.
    """

    def transform(output: Any) -> tuple[list, ...]:
        items = output if isinstance(output, list) else [output]
        return tuple([item[k][index : index + 1] for item in items] for k in keys)

    return transform


def loss_from_output(output: Any) -> float | None:
    """The finite training loss in an engine's output (MONAI trainers: a list of dicts with ``loss``), or ``None``."""
    item = output[0] if isinstance(output, list | tuple) and output else output
    loss = item.get("loss") if isinstance(item, Mapping) else item
    if isinstance(loss, torch.Tensor) and loss.numel() > 0:
        loss = loss.detach().float().mean().item()
    return float(loss) if isinstance(loss, float | int) and math.isfinite(loss) else None


class RegionDiceTable:
    """Write ``dice_per_case.csv`` (case ids and region names) from ``MetricsSaver``'s per-case file as the
    evaluation's epoch ends, so the table exists before the MLflow run logs its artifacts and ends.

    Attach it after ``MetricsSaver`` (Ignite runs a event's handlers in the order they were attached).

    Args:
        metrics_dir: ``MetricsSaver``'s ``save_dir``.
        scheme: the label scheme whose regions name the columns.
    """

    def __init__(self, metrics_dir: str, scheme: Any = None) -> None:
        self.metrics_dir = metrics_dir
        self.scheme = scheme

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def write(self, engine: Any = None) -> None:
        from pathlib import Path

        from robustseg.labels import BRATS
        from robustseg.workflows.summary import read_case_dice, write_case_table

        cases = read_case_dice(self.metrics_dir, self.scheme or BRATS)
        if cases:
            write_case_table(cases, Path(self.metrics_dir) / "dice_per_case.csv")


class MeanIoU(IgniteMetricHandler):
    """Dataset mIoU (or pixel accuracy, or one class's IoU) of class maps, from one summed confusion matrix.

    The benchmark's way for Pascal VOC, Cityscapes and Pascal-Context (:mod:`robustseg.evaluation.confusion`):
    pixels labelled ``ignore_index`` are left out. Per-case values are not kept (they are confusion matrices);
    :class:`IoUTable` writes the per-image scores.

    Args:
        num_classes: number of classes.
        ignore_index: label value that is not scored.
        score: ``"miou"``, ``"pixel_accuracy"`` or a class index (that class's IoU).
        output_transform: ``(y_pred, y)`` class maps from the engine's output, e.g. ``from_engine(["pred", "label"])``.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        score: str | int = "miou",
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        metric = MeanIoUMetric(num_classes, ignore_index, score)
        super().__init__(metric_fn=metric, output_transform=output_transform, save_details=False)


class IoUTable:
    """Write an evaluation's mIoU tables as its epoch ends: per image and per class, with pixel accuracy.

    Files in ``metrics_dir``: ``iou_per_case.csv`` (``case_id``, ``<class>_iou`` ..., ``mIoU``, ``pixel_acc``),
    ``iou_per_class.csv`` (``class``, ``iou``, ``pixels`` in the truth) and ``iou_summary.json`` (dataset mIoU,
    pixel accuracy, images). Dataset scores come from one confusion matrix summed over every image.

    Args:
        metrics_dir: where the tables go.
        class_names: the name of each class index.
        ignore_index: label value that is not scored.
        keys: the prediction and label keys of the engine's decollated output (class maps).
    """

    def __init__(
        self,
        metrics_dir: str,
        class_names: Sequence[str],
        ignore_index: int | None = 255,
        keys: Sequence[str] = ("pred", "label"),
    ) -> None:
        self.metrics_dir = metrics_dir
        self.class_names = tuple(class_names)
        self.ignore_index = ignore_index
        self.keys = tuple(keys)
        self._cases: list[tuple[str, torch.Tensor]] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Any = None) -> None:
        self._cases = []

    def collect(self, engine: Any) -> None:
        from robustseg.data.naming import case_id_of

        items = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(items)
        for item, source in zip(items, batch, strict=True):
            pred, label = (item[k] for k in self.keys)
            cm = confusion_matrix(pred[None], label[None], len(self.class_names), self.ignore_index)[0]
            case = case_id_of(source) if isinstance(source, Mapping) else None
            self._cases.append((case or case_id_of(item) or f"case_{len(self._cases):05d}", cm.cpu()))

    def write(self, engine: Any = None) -> None:
        import csv
        import json
        from pathlib import Path

        if not self._cases:
            return
        out = Path(self.metrics_dir)
        out.mkdir(parents=True, exist_ok=True)
        stack = torch.stack([cm for _, cm in self._cases])
        ious, mious, accs = iou(stack), mean_iou(stack), pixel_accuracy(stack)
        names = [f"{c}_iou" for c in self.class_names]
        with (out / "iou_per_case.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case_id", *names, "mIoU", "pixel_acc"])
            for n, (case, _) in enumerate(self._cases):
                writer.writerow(
                    [case, *(f"{float(v):.6f}" for v in ious[n]), f"{float(mious[n]):.6f}", f"{float(accs[n]):.6f}"]
                )
        total = stack.sum(0)
        per_class = iou(total)
        with (out / "iou_per_class.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "iou", "pixels"])
            for c, name in enumerate(self.class_names):
                writer.writerow([name, f"{float(per_class[c]):.6f}", int(total[c].sum())])
        summary = {
            "mIoU": float(mean_iou(total)),
            "pixel_accuracy": float(pixel_accuracy(total)),
            "images": len(self._cases),
            "per_class_iou": {n: float(per_class[c]) for c, n in enumerate(self.class_names)},
            "ignore_index": self.ignore_index,
        }
        (out / "iou_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
