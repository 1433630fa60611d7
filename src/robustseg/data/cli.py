"""Command line: discover a BraTS root, validate its cases and write a split datalist.

``python scripts/make_datalist.py --root /data/BraTS2021 [--output datalist.json] [--seed 0]
[--fractions 0.7 0.15 0.15] [--skip-invalid] [--rejected rejected.json] [--no-validate] [--overwrite]``

Paths in the datalist are relative to ``--root``; the datalist also records the absolute root (``"root"``), which is
the ``base_dir`` to pass to :func:`robustseg.data.datalist.load_datalist` when the datalist is written elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustseg.data.datalist import SPLITS, write_datalist
from robustseg.data.discovery import discover_cases
from robustseg.data.validation import validate_cases

__all__ = ["build_parser", "main", "make_datalist"]


def make_datalist(
    root: str | Path,
    output: str | Path | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    skip_invalid: bool = False,
    rejected: str | Path | None = None,
    validate: bool = True,
    atol: float = 1e-3,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Discover the cases under ``root``, validate them and write the datalist.

    Args:
        root: dataset root.
        output: datalist path; default ``<root>/datalist.json``.
        seed: seed of the train / validation / test split.
        fractions: training, validation and testing fractions (summing to 1).
        skip_invalid: leave invalid cases out (listed in the ``rejected`` report) instead of stopping at the first.
        rejected: where the report of rejected cases goes; default ``<output stem>_rejected.json`` next to the output.
        validate: ``False`` skips validation (the files are not opened).
        atol: affine tolerance of the validation.
        overwrite: replace an existing datalist at ``output`` (otherwise that is an error).

    Returns:
        A summary: ``layout``, ``root``, ``output``, ``found``, ``valid``, ``rejected``, ``rejected_report``
        (``None`` when none was written), ``validated`` and ``splits`` (the size of each split).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        FileExistsError: the datalist exists and ``overwrite`` is false.
        ValueError: no single layout under ``root``, a case fails validation (without ``skip_invalid``), bad
            ``fractions``, or no valid case is left.
    """
    root = Path(root).expanduser().resolve()
    out_path = Path(output).expanduser().resolve() if output is not None else root / "datalist.json"
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path} exists; pass --overwrite to replace it, or --output to write the datalist elsewhere."
        )
    layout, records = discover_cases(root)
    report: Path | None = None
    if validate:
        if skip_invalid:
            report = Path(rejected) if rejected is not None else out_path.with_name(f"{out_path.stem}_rejected.json")
        valid = validate_cases(records, root, skip_invalid=skip_invalid, report_path=report, atol=atol)
    else:
        valid = records
    datalist = write_datalist(
        valid, out_path, fractions=fractions, seed=seed, extra={"root": str(root), "layout": layout}
    )
    return {
        "layout": layout,
        "root": str(root),
        "output": str(out_path),
        "found": len(records),
        "valid": len(valid),
        "rejected": len(records) - len(valid),
        "rejected_report": str(report) if report is not None else None,
        "validated": validate,
        "seed": seed,
        "splits": {name: len(datalist[name]) for name in SPLITS},
    }


def _summary_text(s: dict[str, Any]) -> str:
    splits = ", ".join(f"{n} {name}" for name, n in s["splits"].items())
    checked = f"{s['valid']} valid, {s['rejected']} rejected" if s["validated"] else "not validated (--no-validate)"
    text = f"Found {s['found']} {s['layout']} cases under {s['root']}: {checked}. "
    text += f"Split (seed {s['seed']}) into {splits}. "
    text += f"Wrote {s['output']}."
    if s["rejected_report"]:
        text += f" Rejected cases and reasons: {s['rejected_report']}."
    if Path(s["output"]).parent != Path(s["root"]):
        text += f" Image paths are relative to {s['root']}: pass it as base_dir to load_datalist."
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scripts/make_datalist.py``."""
    p = argparse.ArgumentParser(
        prog="make_datalist.py",
        description="Discover BraTS cases under --root, validate them and write a MONAI datalist with seeded splits.",
    )
    p.add_argument("--root", required=True, type=Path, help="dataset root (brats2021, brats2023 or decathlon layout)")
    p.add_argument("--output", type=Path, default=None, help="datalist path (default: <root>/datalist.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    p.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=[0.7, 0.15, 0.15],
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions summing to 1 (default: 0.7 0.15 0.15)",
    )
    p.add_argument("--skip-invalid", action="store_true", help="leave invalid cases out instead of stopping")
    p.add_argument("--rejected", type=Path, default=None, help="report of rejected cases (default: next to the output)")
    p.add_argument("--no-validate", action="store_true", help="do not open the files to validate them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing datalist at --output")
    p.add_argument("--atol", type=float, default=1e-3, help="affine tolerance between a case's files (default: 1e-3)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 with a one-line error on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = make_datalist(
            args.root,
            output=args.output,
            seed=args.seed,
            fractions=args.fractions,
            skip_invalid=args.skip_invalid,
            rejected=args.rejected,
            validate=not args.no_validate,
            atol=args.atol,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(_summary_text(summary))
    return 0
