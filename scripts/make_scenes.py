"""Write robustseg's offline 2-D scenes in Pascal VOC's layout and their datalist (see :mod:`robustseg.data.scenes`).

Usage::

    python scripts/make_scenes.py --output data/scenes [--num-train 1200] [--num-val 200] [--size 128] [--seed 0]
        [--val-fraction 0.1] [--overwrite]

The datalist is written by the Pascal VOC reader (``robustseg datalist --root OUTPUT --dataset scenes``), so the
scenes take the path real VOC data takes: official ``val`` -> ``testing``, a held-out share of ``train`` ->
``validation``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from robustseg.data.cli import make_datalist
from robustseg.data.scenes import SceneConfig, write_scenes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="dataset root; the datalist is <output>/datalist.json")
    parser.add_argument("--num-train", type=int, default=1200, help="scenes of the train split (default 1200)")
    parser.add_argument("--num-val", type=int, default=200, help="scenes of the val split, the test set (default 200)")
    parser.add_argument("--size", type=int, default=128, help="height and width in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the scenes and of the split")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of train held out for validation")
    parser.add_argument("--overwrite", action="store_true", help="replace scenes and datalist already at --output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = SceneConfig(size=args.size)
        write_scenes(args.output, args.num_train, args.num_val, config=config, seed=args.seed, overwrite=args.overwrite)
        summary = make_datalist(
            args.output, dataset="scenes", val_fraction=args.val_fraction, seed=args.seed, overwrite=args.overwrite
        )
    except (ValueError, OSError) as e:
        print(f"make_scenes.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {n}" for name, n in summary["splits"].items())
    total = args.num_train + args.num_val
    print(f"wrote {total} scenes to {args.output} and the datalist {summary['output']} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
