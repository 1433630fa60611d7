"""Read an evaluation's per-case Dice (MONAI ``MetricsSaver`` output) and report it by region; or, for a 2-D bundle,
its mIoU tables (``iou_summary.json`` of :class:`robustseg.handlers.IoUTable`).

``python -m robustseg.workflows.summary bundles/brats_unet3d/eval`` prints the table the demo ends with and writes
``metrics/dice_per_case.csv`` with case ids and region names instead of file paths and channel numbers. Where the
metrics folder holds ``iou_summary.json`` it prints the per-class IoU, the mIoU and the pixel accuracy instead.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

from robustseg.data.naming import case_id_from_path
from robustseg.labels import BRATS, LabelScheme
from robustseg.tracking import resolve_tracking_uri, ui_command

__all__ = ["IOU_SUMMARY", "format_iou_summary", "format_summary", "read_case_dice", "summarize"]

IOU_SUMMARY = "iou_summary.json"
"""The 2-D evaluation's summary (:class:`robustseg.handlers.IoUTable`)."""

RAW_FILE = "val_mean_dice_raw.csv"


def read_case_dice(metrics_dir: str | Path, scheme: LabelScheme = BRATS) -> dict[str, dict[str, float]]:
    """Per-case Dice by region from ``<metrics_dir>/val_mean_dice_raw.csv`` (NaN where a region is empty in both)."""
    path = Path(metrics_dir) / RAW_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; run the bundle's evaluate workflow first (configs/evaluate.json)."
        )
    with path.open() as f:
        rows = list(csv.DictReader(f))
    regions = scheme.region_names
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        values = [float(row[f"class{i}"]) for i in range(len(regions))]
        out[case_id_from_path(row["filename"])] = dict(zip(regions, values, strict=True))
    return out


def summarize(cases: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, median, min and the number of scored cases per region, plus ``mean`` over regions."""
    if not cases:
        raise ValueError("no cases to summarise.")
    regions = list(next(iter(cases.values())))
    table: dict[str, dict[str, float]] = {}
    for region in regions:
        values = [c[region] for c in cases.values() if not math.isnan(c[region])]
        table[region] = {
            "mean": statistics.fmean(values) if values else math.nan,
            "median": statistics.median(values) if values else math.nan,
            "min": min(values) if values else math.nan,
            "n": float(len(values)),
        }
    means = [table[r]["mean"] for r in regions if not math.isnan(table[r]["mean"])]
    table["mean"] = {"mean": statistics.fmean(means) if means else math.nan, "median": math.nan, "min": math.nan}
    table["mean"]["n"] = float(len(cases))
    return table


def format_summary(table: dict[str, dict[str, float]]) -> str:
    lines = [f"{'region':<8}{'mean Dice':>10}{'median':>9}{'min':>8}{'cases':>7}"]
    for region, row in table.items():
        median = "" if math.isnan(row["median"]) else f"{row['median']:.3f}"
        low = "" if math.isnan(row["min"]) else f"{row['min']:.3f}"
        lines.append(f"{region:<8}{row['mean']:>10.3f}{median:>9}{low:>8}{int(row['n']):>7}")
    return "\n".join(lines)


def format_iou_summary(summary: dict) -> str:
    """The per-class IoU table of a 2-D evaluation, then its mIoU and pixel accuracy (ignore pixels excluded)."""
    per_class = summary["per_class_iou"]
    width = max(8, *(len(c) for c in per_class)) + 2
    lines = [f"{'class':<{width}}{'IoU':>8}"]
    for name, value in per_class.items():
        lines.append(f"{name:<{width}}{'absent' if math.isnan(value) else f'{value:.3f}':>8}")
    lines.append(f"{'mIoU':<{width}}{summary['mIoU']:>8.3f}")
    lines.append(f"{'pixel acc.':<{width}}{summary['pixel_accuracy']:>8.3f}")
    return "\n".join(lines)


def write_case_table(cases: dict[str, dict[str, float]], path: str | Path) -> None:
    regions = list(next(iter(cases.values())))
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", *regions])
        for case_id, row in sorted(cases.items()):
            writer.writerow([case_id, *(f"{row[r]:.6f}" for r in regions)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Summarise a bundle evaluation: Dice by region (ET, TC, WT), or IoU by class (2-D)."
    )
    parser.add_argument("output_dir", help="the bundle's eval/ folder (holds mlflow.db, and metrics/ by default)")
    parser.add_argument(
        "--metrics-dir", help="where the evaluate workflow wrote its metrics (default OUTPUT_DIR/metrics)"
    )
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    metrics_dir = Path(args.metrics_dir) if args.metrics_dir else output_dir / "metrics"
    uri = resolve_tracking_uri(output_dir)
    if (metrics_dir / IOU_SUMMARY).is_file():
        import json

        summary = json.loads((metrics_dir / IOU_SUMMARY).read_text())
        print(f"IoU on {summary['images']} held-out images, one confusion matrix, label 255 ignored "
              f"(per image: {metrics_dir / 'iou_per_case.csv'}):")  # fmt: skip
        print(format_iou_summary(summary))
        print(f"MLflow runs: {uri}\nOpen the MLflow UI: {ui_command(uri)}")
        return 0
    try:
        cases = read_case_dice(metrics_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = summarize(cases)
    write_case_table(cases, metrics_dir / "dice_per_case.csv")
    print(f"Dice on {len(cases)} held-out cases (per case: {metrics_dir / 'dice_per_case.csv'}):")
    print(format_summary(table))
    print(f"MLflow runs: {uri}\nOpen the MLflow UI: {ui_command(uri)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
