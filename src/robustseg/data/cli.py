"""Command line: discover a BraTS or 2-D dataset root, validate its cases and write a split datalist.

``robustseg datalist --root /data/BraTS2021 [--output datalist.json] [--seed 0] [--fractions 0.7 0.15 0.15]
[--skip-invalid] [--rejected rejected.json] [--no-validate] [--overwrite]`` (or ``python scripts/make_datalist.py``).

A Pascal VOC, Cityscapes or Pascal-Context root is recognised by its layout
(:mod:`robustseg.data.natural_discovery`). Its official splits are kept: the official ``val`` split becomes
``testing``, and ``validation`` (for checkpoint selection) is a seeded ``--val-fraction`` held out of the official
``train`` split. ``--dataset`` names the classes the labels hold (``scenes`` for robustseg's offline scenes),
``--context-classes`` picks Pascal-Context's 59 or 60 classes, ``--no-aug`` leaves SBD's trainaug labels unused.

Paths in the datalist are relative to ``--root``; the datalist also records the absolute root (``"root"``), which is
the ``base_dir`` to pass to :func:`robustseg.data.datalist.load_datalist` when the datalist is written elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robustseg.data.datalist import SPLITS, hold_out, write_datalist, write_splits
from robustseg.data.discovery import discover_cases
from robustseg.data.natural import DATASETS
from robustseg.data.natural_discovery import detect_natural, discover_natural
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
    dataset: str | None = None,
    aug: bool | None = None,
    context_classes: int = 59,
    val_fraction: float = 0.1,
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
        dataset: 2-D roots only: the dataset whose classes the labels hold (default: the layout's).
        aug: Pascal VOC only: train on SBD's ``SegmentationClassAug`` (default: when present).
        context_classes: Pascal-Context only: 59 or 60 classes.
        val_fraction: 2-D roots only: the share of the official training split held out for validation.

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
    report: Path | None = None
    if validate and skip_invalid:
        report = Path(rejected) if rejected is not None else out_path.with_name(f"{out_path.stem}_rejected.json")

    def checked(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not validate:
            return records
        return validate_cases(records, root, skip_invalid=skip_invalid, report_path=report, atol=atol)

    if dataset not in (None, "brats") or (dataset is None and detect_natural(root) is not None):
        return _natural(root, out_path, dataset, aug, context_classes, val_fraction, seed, checked, report, validate)
    layout, records = discover_cases(root)
    valid = checked(records)
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


def _natural(
    root: Path,
    out_path: Path,
    dataset: str | None,
    aug: bool | None,
    context_classes: int,
    val_fraction: float,
    seed: int,
    checked: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    report: Path | None,
    validate: bool,
) -> dict[str, Any]:
    """:func:`make_datalist` for a 2-D root: official splits kept, validation held out of the training split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1) but is {val_fraction}.")
    found = discover_natural(root, dataset=dataset, aug=aug, context_classes=context_classes)
    records = [r for split in ("train", "val") for r in found.splits[split]]
    valid_ids = {r["case_id"] for r in checked(records)}
    official = {split: [r for r in found.splits[split] if r["case_id"] in valid_ids] for split in ("train", "val")}
    training, validation = hold_out(official["train"], val_fraction, seed)
    splits = {"training": training, "validation": validation, "testing": official["val"]}
    for name, entries in splits.items():
        if not entries and (name != "validation" or val_fraction > 0):
            raise ValueError(f"the {name} split of {root} would be empty: no valid image is left in it.")
    spec = found.dataset
    header = {
        "name": f"robustseg {spec.name} datalist",
        "root": str(root),
        "layout": found.layout,
        "dataset": spec.name,
        "seed": seed,
        "val_fraction": val_fraction,
        "splits_from": {"training": "train (held-out part removed)", "validation": "train", "testing": "val"},
        "labels": {str(i): name for i, name in enumerate(spec.class_names)},
        "ignore_index": spec.ignore_index,
        "notes": found.notes,
    }
    write_splits(splits, out_path, header)
    return {
        "layout": found.layout,
        "dataset": spec.name,
        "root": str(root),
        "output": str(out_path),
        "found": len(records),
        "valid": len(valid_ids),
        "rejected": len(records) - len(valid_ids),
        "rejected_report": str(report) if report is not None else None,
        "validated": validate,
        "seed": seed,
        "splits": {name: len(splits[name]) for name in SPLITS},
        "official": {split: len(found.splits[split]) for split in ("train", "val")},
        "notes": found.notes,
    }


def _summary_text(s: dict[str, Any]) -> str:
    splits = ", ".join(f"{n} {name}" for name, n in s["splits"].items())
    checked = f"{s['valid']} valid, {s['rejected']} rejected" if s["validated"] else "not validated (--no-validate)"
    if "official" in s:
        official = ", ".join(f"{n} {name}" for name, n in s["official"].items())
        text = f"Found {s['found']} {s['layout']} images ({s['dataset']}; official {official}) under {s['root']}: "
        text += f"{checked}. Split (seed {s['seed']}) into {splits}: validation held out of train, testing = val. "
        text += "".join(f"Note: {note}. " for note in s["notes"])
    else:
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
        description="Discover the BraTS cases or 2-D images under --root, validate them and write a MONAI datalist.",
    )
    p.add_argument(
        "--root",
        required=True,
        type=Path,
        help="dataset root (BraTS: brats2021, brats2023, decathlon; 2-D: Pascal VOC, Cityscapes, Pascal-Context)",
    )
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
    two_d = p.add_argument_group("2-D datasets (Pascal VOC, Cityscapes, Pascal-Context; recognised by their layout)")
    two_d.add_argument(
        "--dataset",
        choices=("brats", *sorted(DATASETS)),
        default=None,
        help="the classes the labels hold (default: the layout's; scenes for robustseg's offline scenes)",
    )
    two_d.add_argument(
        "--context-classes", type=int, choices=(59, 60), default=59, help="Pascal-Context: 59 or 60 classes"
    )
    two_d.add_argument(
        "--no-aug", action="store_true", help="Pascal VOC: do not train on SBD's SegmentationClassAug when present"
    )
    two_d.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the official train split held out for validation (default: 0.1); testing is the official val",
    )
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
            dataset=args.dataset,
            aug=False if args.no_aug else None,
            context_classes=args.context_classes,
            val_fraction=args.val_fraction,
        )
    except (ValueError, OSError) as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(_summary_text(summary))
    return 0
