"""Regenerate the demo figures that the docs quote, from the files a demo run writes.

Figures typed into a README by hand go stale when the demo changes. This script reads each one from the outputs of
the latest ``scripts/demo.sh`` run and writes it between marker comments in the docs::

    <!-- figures:NAME:begin -->
    (written by scripts/doc_figures.py: edit the script, not the block)
    <!-- figures:NAME:end -->

The blocks and where their figures come from (under ``bundles/brats_unet3d/eval/cpu_demo``, the demo's folder):

* ``demo_dice``: ``metrics/val_mean_dice_raw.csv``, the evaluate workflow's per-case Dice, summarised by
  :mod:`robustseg.workflows.summary` exactly as the demo prints it;
* ``demo_audit``: ``attack/report/statistics.csv`` (each region and condition against clean) and
  ``attack/fingerprint.json`` (what the conditions were);
* ``demo_headline``: one sentence from the two above;
* ``demo_runs``: the demo's MLflow runs. ``attack/mlflow_run.json`` names the audit's run; the ``train`` and
  ``evaluate`` runs are the latest of those names that ended before it started, in the same experiment. Their wall
  times, the best validation Dice and the audit's self-check verdicts;
* ``demo_certify``: ``certify/report/summary.csv``, written only by ``DEMO_CERTIFY=plain|denoised scripts/demo.sh``;
* ``demo_scenes``: from ``DEMO=2d scripts/demo.sh`` (under ``bundles/natural2d_segmentation/eval/cpu_demo``):
  ``metrics/iou_summary.json`` (test mIoU, per-class IoU, pixel accuracy), ``colour_baseline.json`` and the latest
  finished ``train`` and ``evaluate`` MLflow runs of the 2-D bundle (wall times, epochs);
* ``demo_certify_2d``: from ``DEMO=2d DEMO_CERTIFY=denoised scripts/demo.sh``: ``certify/report/summary.csv`` and
  ``statistics.csv`` (denoised against plain smoothing), the ``certify`` run that ``certify/mlflow_run.json`` names
  and the latest finished ``denoiser`` run before it (wall times, validation MSE of the denoised and noisy images).

``python scripts/doc_figures.py`` prints the figures as JSON. ``--write`` rewrites the blocks in the docs, and
``--check`` exits with status 1 when a block differs from what the outputs give. A block whose outputs are missing
stays as it is, and the JSON says why under ``"missing"``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO / "bundles/brats_unet3d/eval/cpu_demo"
EVAL_DIR_2D = REPO / "bundles/natural2d_segmentation/eval/cpu_demo"
DOCS = (
    REPO / "README.md",
    REPO / "bundles/brats_unet3d/docs/README.md",
    REPO / "bundles/natural2d_segmentation/docs/README.md",
)
BLOCK = re.compile(
    r"^(?P<begin><!-- figures:(?P<name>[a-z0-9_]+):begin -->\n)(?P<body>.*?)^(?P<end><!-- figures:(?P=name):end -->)$",
    re.DOTALL | re.MULTILINE,
)
"""One block: its begin marker, its body (replaced) and its end marker, each marker on a line of its own."""


class MissingOutput(Exception):
    """The demo outputs that a block needs are not there (the block stays as it is)."""


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise MissingOutput(f"no {path}")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _p(value: float) -> str:
    """A p-value to two significant digits, as the docs quote it (0.0037, 0.15)."""
    return f"{value:.2g}"


def _wrapped(text: str) -> list[str]:
    """Prose lines of at most 120 characters, as the docs are written."""
    return textwrap.wrap(text, width=120, break_on_hyphens=False, break_long_words=False)


def _listed(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def dice_figures(eval_dir: Path) -> dict[str, Any]:
    """Test Dice per region (mean, median, min over the cases) and the mean over regions, as the demo prints it."""
    from robustseg.workflows.summary import RAW_FILE, read_case_dice, summarize

    metrics_dir = eval_dir / "metrics"
    if not (metrics_dir / RAW_FILE).is_file():
        raise MissingOutput(f"no {metrics_dir / RAW_FILE}")
    table = summarize(read_case_dice(metrics_dir))
    overall = table.pop("mean")
    return {
        "cases": int(overall["n"]),
        "regions": {region: {k: row[k] for k in ("mean", "median", "min")} for region, row in table.items()},
        "mean": overall["mean"],
    }


def _conditions(fingerprint: Path) -> dict[str, list[str]]:
    """The audit's conditions in words by budget (``linf eps 0.25: ["ifgsm (3 steps)", ...]``), from the sweep's
    fingerprint; empty without one."""
    if not fingerprint.is_file():
        return {}
    by_budget: dict[str, list[str]] = {}
    for condition in json.loads(fingerprint.read_text())["conditions"]:
        threat = condition["threat"]
        spec = condition.get("attack", {})
        details = [f"{spec['steps']} steps"] if "steps" in spec else []
        details += [f"target {spec['target']}"] if "target" in spec else []
        if condition["kind"] == "noise":
            name = f"{condition['distribution']} noise"
        else:
            name = condition["label"].split("@")[0] + (f" ({', '.join(details)})" if details else "")
        by_budget.setdefault(f"{threat['norm']} eps {threat['eps']:g}", []).append(name)
    return by_budget


def audit_figures(eval_dir: Path) -> dict[str, Any]:
    """Per region and condition: cases, mean clean and attacked Dice, the drop and its Holm-adjusted p."""
    attack_dir = eval_dir / "attack"
    rows = _csv_rows(attack_dir / "report" / "statistics.csv")
    comparisons = []
    for row in rows:
        clean, attacked = float(row["mean_baseline"]), float(row["mean_condition"])
        comparisons.append(
            {
                "region": row["region"],
                "condition": row["condition"],
                "n": int(float(row["n"])),
                "clean": clean,
                "attacked": attacked,
                "drop": clean - attacked,
                "p_holm": float(row["p_holm"]),
                "alternative": row["alternative"],
            }
        )
    return {"conditions": _conditions(attack_dir / "fingerprint.json"), "comparisons": comparisons}


def _run_seconds(run: Any) -> float:
    return (run.info.end_time - run.info.start_time) / 1000


def runs_figures(eval_dir: Path) -> dict[str, Any]:
    """The demo's MLflow runs: wall times, best validation Dice of the training, the audit's self-check verdicts."""
    run_file = eval_dir / "attack" / "mlflow_run.json"
    if not run_file.is_file():
        raise MissingOutput(f"no {run_file}")
    recorded = json.loads(run_file.read_text())
    store = recorded["tracking_uri"].removeprefix("sqlite:///")
    if store != recorded["tracking_uri"] and not Path(store).is_file():
        raise MissingOutput(f"no MLflow store {store} (named by {run_file})")  # and do not let MLflow create one
    from mlflow.tracking import MlflowClient

    client = MlflowClient(recorded["tracking_uri"])
    attack = client.get_run(recorded["run_id"])
    before: dict[str, Any] = {}
    for name in ("train", "evaluate"):
        runs = client.search_runs(
            [attack.info.experiment_id],
            filter_string=f"attributes.run_name = '{name}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
        )
        earlier = [r for r in runs if r.info.end_time <= attack.info.start_time]
        if not earlier:
            raise MissingOutput(f"no finished MLflow run {name!r} before the audit's run in {recorded['tracking_uri']}")
        before[name] = earlier[0]
    history = client.get_metric_history(before["train"].info.run_id, "val_mean_dice")
    best = max(history, key=lambda m: m.value)
    checks = {k.removeprefix("selfcheck."): v for k, v in attack.data.tags.items() if k.startswith("selfcheck.")}
    return {
        "date": datetime.fromtimestamp(before["train"].info.start_time / 1000, UTC).date().isoformat(),
        "profile": before["train"].data.params.get("profile"),
        "max_epochs": int(before["train"].data.params["max_epochs"]),
        "train_s": _run_seconds(before["train"]),
        "best_val_mean_dice": best.value,
        "best_epoch": best.step,
        "evaluate_s": _run_seconds(before["evaluate"]),
        "attack_s": _run_seconds(attack),
        "attack_cases": int(attack.data.metrics.get("cases_computed", 0)),
        "attack_rows_reused": int(attack.data.metrics.get("rows_reused", 0)),
        "selfchecks": checks,
    }


def certify_figures(eval_dir: Path) -> dict[str, Any]:
    """Per mode, sigma and tau: the certification's means over cases (certified accuracy, abstain rate, Dice)."""
    rows = _csv_rows(eval_dir / "certify" / "report" / "summary.csv")
    return {"summary": [{k: v if k == "mode" else float(v) for k, v in row.items()} for row in rows]}


def natural2d_figures(eval_dir: Path) -> dict[str, Any]:
    """The 2-D demo: test mIoU and per-class IoU, the colour baseline, and the training's wall time and epochs."""
    summary_file, baseline_file = eval_dir / "metrics" / "iou_summary.json", eval_dir / "colour_baseline.json"
    for path in (summary_file, baseline_file):
        if not path.is_file():
            raise MissingOutput(f"no {path}")
    store = eval_dir.parent / "mlflow.db"
    if not store.is_file():
        raise MissingOutput(f"no MLflow store {store}")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("natural2d_segmentation")
    runs: dict[str, Any] = {}
    for name in ("train", "evaluate"):
        found = client.search_runs(
            [experiment.experiment_id] if experiment else [],
            filter_string=f"attributes.run_name = '{name}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            raise MissingOutput(f"no finished MLflow run {name!r} of natural2d_segmentation in {store}")
        runs[name] = found[0]
    summary = json.loads(summary_file.read_text())
    baseline = json.loads(baseline_file.read_text())
    attack: dict[str, Any] | None = None
    stats_file = eval_dir / "attack" / "report" / "statistics.csv"
    if stats_file.is_file():
        rows = {r["condition"]: r for r in _csv_rows(stats_file) if r["region"] == "mIoU"}
        strongest = max((c for c in rows if c.startswith("ifgsm@")), key=lambda c: float(c.split("@")[1]), default=None)
        if strongest is not None:
            eps = strongest.split("@")[1]
            noise = rows.get(f"noise@{eps}")
            attack = {
                "eps": float(eps),
                "n": int(float(rows[strongest]["n"])),
                "clean": float(rows[strongest]["mean_baseline"]),
                "attacked": float(rows[strongest]["mean_condition"]),
                "p_holm": float(rows[strongest]["p_holm"]),
                "noise_change": None
                if noise is None
                else float(noise["mean_condition"]) - float(noise["mean_baseline"]),
            }
    return {
        "date": datetime.fromtimestamp(runs["train"].info.start_time / 1000, UTC).date().isoformat(),
        "max_epochs": int(runs["train"].data.params["max_epochs"]),
        "train_s": _run_seconds(runs["train"]),
        "evaluate_s": _run_seconds(runs["evaluate"]),
        "images": summary["images"],
        "miou": summary["mIoU"],
        "pixel_accuracy": summary["pixel_accuracy"],
        "per_class_iou": summary["per_class_iou"],
        "baseline_miou": baseline["mIoU"],
        "attack": attack,
    }


SOURCES = {
    "demo_dice": dice_figures,
    "demo_audit": audit_figures,
    "demo_runs": runs_figures,
    "demo_certify": certify_figures,
}
"""Each source of figures by the block it fills (``demo_headline`` is made from ``demo_dice`` and ``demo_audit``)."""


def natural2d_certify_figures(eval_dir: Path) -> dict[str, Any]:
    """The 2-D demo's certification: means per mode and sigma, the paired tests of denoised against plain smoothing
    on certified pixel accuracy and mIoU, and the wall times of the denoiser's training and the certification."""
    report = eval_dir / "certify" / "report"
    run_file = eval_dir / "certify" / "mlflow_run.json"
    for path in (report / "summary.csv", report / "statistics.csv", run_file):
        if not path.is_file():
            raise MissingOutput(f"no {path}")
    recorded = json.loads(run_file.read_text())
    from mlflow.tracking import MlflowClient

    client = MlflowClient(recorded["tracking_uri"])
    certify = client.get_run(recorded["run_id"])
    found = [
        r
        for r in client.search_runs(
            [certify.info.experiment_id],
            filter_string="attributes.run_name = 'denoiser' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
        )
        if r.info.end_time <= certify.info.start_time
    ]
    if not found:
        raise MissingOutput(f"no finished MLflow run 'denoiser' before the certification in {recorded['tracking_uri']}")
    denoiser = found[0]
    tests = [
        {
            "condition": r["condition"],
            "metric": r["metric"],
            "region": r["region"],
            "n": int(float(r["n"])),
            "median_plain": float(r["median_baseline"]),
            "median_denoised": float(r["median_condition"]),
            "p_holm": float(r["p_holm"]),
        }
        for r in _csv_rows(report / "statistics.csv")
        if r["region"] in ("voxels", "mIoU")
    ]
    summary = [
        {k: v if k == "mode" else float(v) for k, v in row.items() if not k.startswith(("certified_iou_", "base_iou_"))}
        | {"certified_miou": float(row["certified_iou_mIoU"]), "base_miou": float(row["base_iou_mIoU"])}
        for row in _csv_rows(report / "summary.csv")
    ]
    return {
        "date": datetime.fromtimestamp(certify.info.start_time / 1000, UTC).date().isoformat(),
        "denoiser_s": _run_seconds(denoiser),
        "denoiser_epochs": int(denoiser.data.params["epochs"]),
        "val_denoise_mse": denoiser.data.metrics.get("val_denoise_mse"),
        "val_noisy_mse": denoiser.data.metrics.get("val_noisy_mse"),
        "val_sigma": float(denoiser.data.params["val_sigma"]),
        "certify_s": _run_seconds(certify),
        "n": int(certify.data.params["n"]),
        "alpha": float(certify.data.params["alpha"]),
        "summary": summary,
        "tests": tests,
    }


SOURCES_2D = {"demo_scenes": natural2d_figures, "demo_certify_2d": natural2d_certify_figures}
"""The sources that read the 2-D demo's folder (``--eval-dir-2d``)."""


def collect(
    eval_dir: Path, sources: Mapping[str, Any] = SOURCES, eval_dir_2d: Path | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The figures of every source whose outputs exist, and for the others why they are missing (the 2-D sources
    read ``eval_dir_2d``; without it they are missing)."""
    figures: dict[str, Any] = {}
    missing: dict[str, str] = {}
    folders = {**dict.fromkeys(sources, eval_dir), **dict.fromkeys(SOURCES_2D, eval_dir_2d)}
    for name, source in {**sources, **SOURCES_2D}.items():
        folder = folders[name]
        try:
            if folder is None:
                raise MissingOutput("no 2-D demo folder given (--eval-dir-2d)")
            figures[name] = source(folder)
        except MissingOutput as e:
            missing[name] = str(e)
    return figures, missing


def render_dice(f: Mapping[str, Any]) -> str:
    per_region = ", ".join(
        f"{region} {v['mean']:.3f} / {v['median']:.3f} / {v['min']:.3f}" for region, v in f["regions"].items()
    )
    return "\n".join(
        [
            "| what | value |",
            "|---|---|",
            f"| test Dice, {f['cases']} held-out cases (mean / median / min) | {per_region} |",
            f"| test mean Dice over {', '.join(f['regions'])} | {f['mean']:.3f} |",
        ]
    )


def render_audit(f: Mapping[str, Any]) -> str:
    lines = []
    if f["conditions"]:
        budgets = "; ".join(f"at {budget}: {', '.join(names)}" for budget, names in f["conditions"].items())
        lines += [*_wrapped(f"Conditions {budgets}; and the worst case over the attacks of each budget."), ""]
    lines += [
        "| region | condition | n | mean clean Dice | mean Dice under it | drop | Holm p |",
        "|:---|:---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c['region']} | {c['condition']} | {c['n']} | {c['clean']:.3f} | {c['attacked']:.3f} | {c['drop']:.3f} "
        f"| {_p(c['p_holm'])} |"
        for c in f["comparisons"]
    ]
    return "\n".join(lines)


def render_headline(dice: Mapping[str, Any], audit: Mapping[str, Any]) -> str:
    """One sentence: test Dice, the worst case's drop per region with its Holm p, and the largest move by noise."""
    comparisons = audit["comparisons"]
    worst = [c for c in comparisons if c["condition"].startswith("worst@")]
    if worst:
        budget = max(c["condition"] for c in worst).split("@")[1]
        worst = [c for c in worst if c["condition"] == f"worst@{budget}"]
        strongest = "the worst case over the attacks"
    else:  # a single attack per budget: no worst-case condition, take each region's largest drop
        by_region: dict[str, dict[str, Any]] = {}
        for c in comparisons:
            if not c["condition"].startswith("noise@") and c["drop"] > by_region.get(c["region"], {"drop": -1})["drop"]:
                by_region[c["region"]] = c
        worst = list(by_region.values())
        budget = worst[0]["condition"].split("@")[1] if worst else "?"
        strongest = "the strongest attack"
    noise = [c for c in comparisons if c["condition"] == f"noise@{budget}"]
    drops = [f"{c['drop']:.3f} ({c['region']})" for c in worst]
    p_values = [_p(c["p_holm"]) for c in worst]
    holm = f"Holm p {p_values[0]} each" if len(set(p_values)) == 1 else f"Holm p {', '.join(p_values)}"
    sided = "one-sided" if all(c["alternative"] == "greater" for c in worst) else "two-sided"
    regions = ", ".join(f"{region} {v['mean']:.3f}" for region, v in dice["regions"].items())
    text = (
        f"On its {dice['cases']} held-out test cases the demo's model scores Dice {regions} (mean {dice['mean']:.3f}). "
        f"Its audit at eps {budget} lowers mean Dice from clean to {strongest} by {_listed(drops)}, {holm} "
        f"({worst[0]['n'] if worst else 0} cases, {sided} Wilcoxon)"
    )
    if noise:
        text += f"; noise of the same norm moves it by at most {max(abs(c['drop']) for c in noise):.3f}"
    return "\n".join(_wrapped(text + "."))


def render_runs(f: Mapping[str, Any]) -> str:
    passed = sum(v == "pass" for v in f["selfchecks"].values())
    warned = sorted(k for k, v in f["selfchecks"].items() if v != "pass")
    checks = f"{passed} of {len(f['selfchecks'])} pass" + (f" (WARN: {', '.join(warned)})" if warned else "")
    resumed = f", {f['attack_rows_reused']} rows reused from an earlier run" if f["attack_rows_reused"] else ""
    return "\n".join(
        [
            "| what (MLflow runs in `eval/mlflow.db`, start to end) | value |",
            "|---|---|",
            f"| runs of | {f['date']}, profile `{f['profile']}` |",
            f"| training, {f['max_epochs']} epochs (run `train`) | {f['train_s']:.0f} s |",
            f"| best validation mean Dice (epoch {f['best_epoch']}) | {f['best_val_mean_dice']:.3f} |",
            f"| evaluation of the test cases (run `evaluate`) | {f['evaluate_s']:.0f} s |",
            f"| `robustseg audit` sweep, {f['attack_cases']} cases computed{resumed} (run `attack`) "
            f"| {f['attack_s']:.0f} s |",
            f"| the audit's self-checks (tags of run `attack`) | {checks} |",
        ]
    )


def render_certify(f: Mapping[str, Any]) -> str:
    summary = f["summary"]
    regions = [k.removeprefix("certified_dice_") for k in summary[0] if k.startswith("certified_dice_")]
    lines = [
        "| mode | sigma | tau | radius | cases | certified voxel accuracy | abstain rate | "
        + " | ".join(f"{r} certified / base Dice" for r in regions)
        + " |",
        "|:---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(regions),
    ]
    for s in summary:
        dice = " | ".join(f"{s[f'certified_dice_{r}']:.3f} / {s[f'base_dice_{r}']:.3f}" for r in regions)
        lines.append(
            f"| {s['mode']} | {s['sigma']:g} | {s['tau']:g} | {s['radius']:.3f} | {s['cases']:.0f} "
            f"| {s['certified_accuracy']:.3f} | {s['abstain_rate']:.3f} | {dice} |"
        )
    return "\n".join(lines)


def render_2d(f: Mapping[str, Any]) -> str:
    classes = " | ".join(f["per_class_iou"])
    values = " | ".join(f"{v:.3f}" for v in f["per_class_iou"].values())
    ratio = f["baseline_miou"] / f["miou"] if f["miou"] > 0 else float("nan")
    text = (
        f"On its {f['images']} held-out test scenes the 2-D demo's model (trained {f['max_epochs']} epochs in "
        f"{f['train_s']:.0f} s on {f['date']}) scores mIoU {f['miou']:.3f} and pixel accuracy "
        f"{f['pixel_accuracy']:.3f}; a per-pixel colour classifier (logistic regression on RGB, "
        f"scripts/colour_baseline.py) scores mIoU {f['baseline_miou']:.3f}, {ratio:.2f} of the network's."
    )
    a = f.get("attack")
    if a:
        text += (
            f" Its audit: i-FGSM (10 steps) at {round(a['eps'] * 255)}/255 lowers the mean per-image mIoU of {a['n']} "
            f"test scenes from {a['clean']:.3f} to {a['attacked']:.3f} (Holm p {_p(a['p_holm'])}, one-sided Wilcoxon)"
        )
        if a["noise_change"] is not None:
            text += f"; noise of the same norm changes it by {a['noise_change']:+.3f}"
        text += "."
    return "\n".join(
        [*_wrapped(text), "", f"| | {classes} |", "|:---|" + "---:|" * len(f["per_class_iou"]), f"| IoU | {values} |"]
    )


def render_certify_2d(f: Mapping[str, Any]) -> str:
    mse = f"{f['val_denoise_mse']:.4f} against {f['val_noisy_mse']:.4f} noisy" if f["val_denoise_mse"] else "not logged"
    text = (
        f"Certification of the model trained without noise ({f['date']}; n {f['n']}, alpha {f['alpha']:g} per image):"
        f" the 2-D DDPM denoiser trained {f['denoiser_epochs']} epochs on the scenes in {f['denoiser_s']:.0f} s "
        f"(validation MSE at sigma {f['val_sigma']:g}: {mse}); plain and denoised SegCertify took "
        f"{f['certify_s']:.0f} s."
    )
    for t in (t for t in f["tests"] if t["metric"] == "certified_accuracy"):
        text += (
            f" {t['condition'].removeprefix('denoised vs plain, ')}: median certified pixel accuracy "
            f"{t['median_plain']:.3f} plain, {t['median_denoised']:.3f} denoised over {t['n']} scenes (Holm p "
            f"{_p(t['p_holm'])}, two-sided Wilcoxon)."
        )
    lines = [
        *_wrapped(text),
        "",
        "| mode | sigma | tau | radius | scenes | certified pixel accuracy | abstain rate | certified / base mIoU |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in f["summary"]:
        lines.append(
            f"| {s['mode']} | {s['sigma']:g} | {s['tau']:g} | {s['radius']:.3f} | {s['cases']:.0f} "
            f"| {s['certified_accuracy']:.3f} | {s['abstain_rate']:.3f} | {s['certified_miou']:.3f} / "
            f"{s['base_miou']:.3f} |"
        )
    return "\n".join(lines)


def render(figures: Mapping[str, Any]) -> dict[str, str]:
    """The Markdown body of every block whose figures are there."""
    renderers = {
        "demo_dice": render_dice,
        "demo_audit": render_audit,
        "demo_runs": render_runs,
        "demo_certify": render_certify,
        "demo_scenes": render_2d,
        "demo_certify_2d": render_certify_2d,
    }
    blocks = {name: renderers[name](f) for name, f in figures.items()}
    if "demo_dice" in figures and "demo_audit" in figures:
        blocks["demo_headline"] = render_headline(figures["demo_dice"], figures["demo_audit"])
    return blocks


def rewrite(text: str, blocks: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with the body of every block named in ``blocks`` replaced, and the names of the blocks left as they
    were (in order of appearance).

    Raises:
        ValueError: a begin marker without its end marker (the rewrite would not know where the block ends).
    """
    kept: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in blocks:
            kept.append(name)
            return match[0]
        return match["begin"] + blocks[name].rstrip("\n") + "\n" + match["end"]

    begins = re.findall(r"^<!-- figures:([a-z0-9_]+):begin -->$", text, re.MULTILINE)
    found = [m["name"] for m in BLOCK.finditer(text)]
    if begins != found:
        raise ValueError(f"figure blocks without a matching end marker: {sorted(set(begins) - set(found))}")
    return BLOCK.sub(replace, text), kept


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals for the JSON (the docs show 3)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help="the demo's outputs (default: %(default)s)")
    parser.add_argument(
        "--eval-dir-2d", type=Path, default=EVAL_DIR_2D, help="the 2-D demo's outputs (default: %(default)s)"
    )
    parser.add_argument("--docs", type=Path, nargs="+", default=list(DOCS), help="the docs holding figure blocks")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the blocks in the docs")
    action.add_argument("--check", action="store_true", help="exit 1 when a block differs from the outputs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    figures, missing = collect(args.eval_dir, eval_dir_2d=args.eval_dir_2d)
    blocks = render(figures)
    stale: list[str] = []
    for doc in args.docs:
        text = doc.read_text()
        new, kept = rewrite(text, blocks)
        for name in kept:
            print(f"{doc}: block {name!r} left as it is ({missing.get(name, 'no figures for it')})", file=sys.stderr)
        if new != text:
            stale.append(str(doc))
            if args.write:
                doc.write_text(new)
    folders = {"eval_dir": str(args.eval_dir), "eval_dir_2d": str(args.eval_dir_2d)}
    print(json.dumps({**folders, "figures": _rounded(figures), "missing": missing}, indent=2))
    if args.check and stale:
        print(f"figures out of date in {', '.join(stale)}: run python scripts/doc_figures.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
