"""Generate BraTS-like phantom gliomas on MNI152 anatomy and a datalist (see :mod:`robustseg.data.phantom`).

Usage::

    python scripts/make_phantoms.py --output data/phantoms --num-cases 60 [--seed 0] [--spacing 2.0]
        [--fractions 0.7 0.15 0.15] [--num-workers 0] [--no-progress]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from robustseg.data.datalist import SPLITS
from robustseg.data.phantom import PhantomConfig, make_phantom_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="dataset root; the datalist is <output>/datalist.json")
    parser.add_argument("--num-cases", type=int, required=True, help="number of cases (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the cases and of the split (>= 0)")
    parser.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size in mm, 1 to 8 (default 2)")
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--num-workers", type=int, default=0, help="worker processes (0: this process)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_cases < 1:
        parser.error(f"--num-cases must be at least 1 but is {args.num_cases}.")
    if args.seed < 0:
        parser.error(f"--seed must be non-negative but is {args.seed}.")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be non-negative but is {args.num_workers}.")
    if any(f < 0 for f in args.fractions) or not np.isclose(sum(args.fractions), 1.0):
        parser.error(f"--fractions must be 3 non-negative numbers summing to 1 but are {tuple(args.fractions)}.")
    try:
        config = PhantomConfig(spacing=args.spacing)
    except ValueError as e:
        parser.error(str(e))
    path = make_phantom_dataset(
        args.output,
        args.num_cases,
        seed=args.seed,
        config=config,
        fractions=tuple(args.fractions),
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    datalist = json.loads(path.read_text())
    sizes = ", ".join(f"{name} {len(datalist[name])}" for name in SPLITS)
    print(f"wrote {args.num_cases} phantom cases to {path.parent} and the datalist {path} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
