"""The answer of seed 000's experiment from a corruption benchmark's report: per model the clean score, the ROOD
overall and degradation over all corruptions, the tests between models, and what the refreshes cost (JSON).

    python scripts/sensitivity_verdict.py bundles/brats_unet3d/eval/sensitivity_demo/corruptions/report \\
        --refreshes bundles/brats_unet3d/models/sensitivity_demo/adaptive/sensitivity
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _pairs(tests: list[dict[str, str]], regions: list[str]) -> dict[str, dict[str, Any]]:
    """Per pair of models and measure: how many tests, how many significant, which model was better."""
    pairs: dict[str, dict[str, Any]] = {}
    for t in tests:
        if t["region"] not in regions:
            continue
        key = f"{t['model_a']} vs {t['model_b']} ({t['measure']})"
        entry = pairs.setdefault(key, {"tests": 0, "significant": 0, "better": {}})
        entry["tests"] += 1
        if t["significant"] == "True":
            entry["significant"] += 1
            entry["better"][t["better"]] = entry["better"].get(t["better"], 0) + 1
    return pairs


PRIMARY = ("measure", "condition", "region", "model_a", "model_b", "n", "mean_a", "mean_b", "p_value", "p_holm")


def verdict(report: Path, refreshes: Path | None = None) -> dict[str, Any]:
    """The summary of ``report`` (a corruption benchmark's report folder) and of the refresh records."""
    settings = json.loads((report / "corruption.json").read_text())["settings"]
    regions = settings["regions"]
    models: dict[str, dict[str, Any]] = {}
    for r in _read(report / "summary.csv"):
        if r["corruption"] == "all corruptions" and r["region"] in regions:
            models.setdefault(r["model"], {})[r["region"]] = {
                k: float(r[k]) for k in ("clean", "overall", "degradation")
            }
    primary = [
        {**{k: t[k] for k in PRIMARY}, "significant": t["significant"] == "True", "better": t["better"]}
        for t in _read(report / "primary_tests.csv")
        if t["region"] in regions
    ]
    tests = _read(report / "model_tests.csv")
    out: dict[str, Any] = {
        "metric": settings["metric"],
        "cases": settings["cases"],
        "corruptions": len(settings["corruptions"]),
        "severities": settings["severities"],
        "models": models,
        "primary_tests": primary,
        "tests_between_models": _pairs(tests, regions),
        "family": len(tests),
    }
    if refreshes is not None and refreshes.is_dir():
        records = sorted(
            (json.loads(p.read_text()) for p in refreshes.glob("refresh_epoch*.json")), key=lambda r: r["epoch"]
        )
        if records:
            out["refreshes"] = {
                "epochs": [r["epoch"] for r in records],
                "seconds": [round(r["seconds"], 2) for r in records],
                "ratio_to_training_since_last": [round(r["refresh_ratio"], 3) for r in records],
                "median_ratio": statistics.median(r["refresh_ratio"] for r in records),
                "evaluations": [r["evaluations"] for r in records],
                "ops": len(records[-1]["analyses"]),
            }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the corruption benchmark's report folder")
    parser.add_argument("--refreshes", type=Path, default=None, help="the adaptive model's sensitivity folder")
    args = parser.parse_args(argv)
    result = verdict(args.report, args.refreshes)
    (args.report / "verdict.json").write_text(json.dumps(result, indent=1) + "\n")
    metric = result["metric"]
    print(
        f"seed 000's experiment on {result['cases']} test cases, {result['corruptions']} corruptions at severities "
        f"{result['severities']} (mean {metric}; ROOD weights (2/3)^s):"
    )
    for model, by_region in result["models"].items():
        cells = "  ".join(
            f"{region} clean {v['clean']:.3f} overall {v['overall']:.3f} degradation {v['degradation']:+.3f}"
            for region, v in by_region.items()
        )
        print(f"  {model:<10} {cells}")
    print(f"primary tests, per-case ROOD overall (two-sided Wilcoxon, Holm over {len(result['primary_tests'])}):")
    for t in result["primary_tests"]:
        mark = f"better: {t['better']}" if t["significant"] else "not significant"
        print(
            f"  {t['measure']:<5} {t['condition']:<12} {t['region']:<5} {t['model_a']} {float(t['mean_a']):.3f} vs "
            f"{t['model_b']} {float(t['mean_b']):.3f}: Holm p {float(t['p_holm']):.2g}, {mark}"
        )
    print(f"tests under every corruption and severity (Holm over all {result['family']} tests):")
    for pair, entry in result["tests_between_models"].items():
        better = ", ".join(f"{m} {n}" for m, n in sorted(entry["better"].items())) or "none"
        print(f"  {pair}: {entry['significant']} of {entry['tests']} significant (better: {better})")
    if "refreshes" in result:
        r = result["refreshes"]
        print(
            f"refreshes after epochs {r['epochs']}: {r['seconds']} s, {r['ratio_to_training_since_last']} of the "
            f"training time since the previous one, {r['evaluations']} model evaluations over {r['ops']} ops"
        )
    print(f"verdict: {args.report / 'verdict.json'}")


if __name__ == "__main__":
    main()
