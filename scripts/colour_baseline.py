"""How hard is a 2-D dataset? A per-pixel colour classifier (logistic regression on RGB) scored like the network.

Usage::

    python scripts/colour_baseline.py --datalist data/scenes/datalist.json
        [--model-summary eval/metrics/iou_summary.json] [--output eval/colour_baseline.json]
        [--max-train-images 300] [--max-pixels 200000] [--seed 0]

Fits on the ``training`` split, scores the ``testing`` split (mIoU from one summed confusion matrix, 255 ignored) and
prints JSON. With ``--model-summary`` (the evaluation's ``iou_summary.json``) it adds the network's mIoU and the ratio
baseline / network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robustseg.data.datalist import load_datalist
from robustseg.data.natural import get_dataset
from robustseg.data.png import read_image, read_label
from robustseg.evaluation.baselines import colour_baseline
from robustseg.progress import progress


def _pairs(entries: Sequence[dict], dataset_name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    dataset = get_dataset(dataset_name)
    return [
        (read_image(e["image"]), dataset.to_classes(read_label(e["label"]), e.get("label_encoding", "index")))
        for e in progress(entries, desc="reading images", unit="image")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, type=Path, help="a 2-D datalist (robustseg datalist)")
    parser.add_argument(
        "--base-dir", type=Path, default=None, help="root of the datalist's paths (default: its folder)"
    )
    parser.add_argument("--model-summary", type=Path, default=None, help="the network's iou_summary.json to compare")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--max-train-images", type=int, default=300, help="training images to sample pixels from")
    parser.add_argument("--max-pixels", type=int, default=200_000, help="training pixels fitted (seeded sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pixel sample")
    args = parser.parse_args(argv)
    try:
        header = json.loads(args.datalist.read_text())
        name = header.get("dataset")
        if name is None:
            raise ValueError(f"{args.datalist} names no 2-D dataset; write it with `robustseg datalist --root ROOT`.")
        train = load_datalist(args.datalist, "training", args.base_dir)[: args.max_train_images]
        test = load_datalist(args.datalist, "testing", args.base_dir)
        dataset = get_dataset(name)
        result = colour_baseline(
            _pairs(train, name), _pairs(test, name), dataset.num_classes, dataset.ignore_index,
            max_pixels=args.max_pixels, seed=args.seed,
        )  # fmt: skip
        result = {"baseline": "logistic regression on RGB", "dataset": name, **result}
        result["per_class_iou"] = dict(zip(dataset.class_names, result["per_class_iou"], strict=True))
        if args.model_summary is not None:
            model = json.loads(args.model_summary.read_text())
            result["model_mIoU"] = model["mIoU"]
            result["ratio_to_model"] = result["mIoU"] / model["mIoU"] if model["mIoU"] > 0 else None
    except (ValueError, OSError, KeyError) as e:
        print(f"colour_baseline.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
