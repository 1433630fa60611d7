"""Does one defended model beat another, under the seed's attacks and under the masking-aware ones?

Reads a defence comparison's report folder (``statistics.csv``, ``summary.csv``, ``comparison.json`` written by
``configs/compare.json``) and prints, per region, the two models' mean score under each condition with the paired
two-sided test between them (Holm over the comparison's whole family), and the masking self-checks that flag either.
Writes the same as ``verdict.json`` beside the tables.

    python scripts/defence_verdict.py bundles/brats_unet3d/eval/defences_demo/compare/report \\
        --defended distilled --other adv_ifgsm
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

SEED_ATTACKS = ("fgsm", "ifgsm", "tifgsm")
"""The attacks of the seed's evaluation (Liu et al.): the verdict's first part."""


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        sys.exit(f"{path} does not exist: run the comparison first (configs/compare.json).")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _f(value: str) -> float:
    return float(value) if value not in ("", None) else math.nan


def verdict(folder: Path, defended: str, other: str) -> dict[str, Any]:
    stats = _read(folder / "statistics.csv")
    summary = {(r["model"], r["condition"], r["region"]): _f(r["mean"]) for r in _read(folder / "summary.csv")}
    record = json.loads((folder / "comparison.json").read_text())
    models = [m["name"] for m in record["settings"]["models"]]
    for name in (defended, other):
        if name not in models:
            sys.exit(f"model {name!r} is not in the comparison, which has {models}.")
    lines = []
    for r in stats:
        if r["measure"] != "score" or {r["model_a"], r["model_b"]} != {defended, other}:
            continue
        condition = r["condition"]
        family = (
            "seed" if condition.split("@")[0] in SEED_ATTACKS else "clean" if condition == "clean" else "masking-aware"
        )
        lines.append(
            {
                "family": family,
                "condition": condition,
                "region": r["region"],
                defended: summary.get((defended, condition, r["region"]), math.nan),
                other: summary.get((other, condition, r["region"]), math.nan),
                "p_holm": _f(r["p_holm"]),
                "significant": r["significant"] == "True",
                "better": r["better"],
            }
        )
    flagged = {m: sorted({c["name"] for c in checks if not c["passed"]}) for m, checks in record["checks"].items()}
    return {
        "defended": defended,
        "other": other,
        "tests": lines,
        "flagged": flagged,
        "alpha": record["settings"].get("alpha", 0.05),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the comparison's report folder")
    parser.add_argument("--defended", required=True, help="the model whose claim is tested (e.g. distilled)")
    parser.add_argument("--other", required=True, help="the model it is claimed to beat (e.g. adv_ifgsm)")
    args = parser.parse_args(argv)
    result = verdict(args.folder, args.defended, args.other)
    (args.folder / "verdict.json").write_text(json.dumps(result, indent=2) + "\n")
    a, b = args.defended, args.other
    print(f"Does {a} beat {b}? Mean Dice per condition; paired two-sided Wilcoxon, Holm over the whole comparison")
    print(f"{'':15}{'condition':<27}{'region':<7}{a[:11]:>11}{b[:11]:>11}{'Holm p':>10}  verdict")
    for family in ("clean", "seed", "masking-aware"):
        rows = [r for r in result["tests"] if r["family"] == family]
        for r in rows:
            says = f"{r['better']} better" if r["significant"] else "no significant difference"
            print(
                f"{family:15}{r['condition']:<27}{r['region']:<7}{r[a]:>11.3f}{r[b]:>11.3f}{r['p_holm']:>10.3g}  {says}"
            )
    for model, names in result["flagged"].items():
        print(f"self-checks flag {model}: {', '.join(names) if names else 'nothing'}")
    print(f"verdict: {args.folder / 'verdict.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
