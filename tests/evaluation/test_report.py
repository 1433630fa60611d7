"""Tests for :mod:`robustseg.evaluation.report`: files written, numbers that match the inputs, a self-contained page."""

from __future__ import annotations

import csv
import html
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from robustseg.evaluation import report
from robustseg.evaluation.metrics import EMPTY_POLICY_TEXT
from robustseg.evaluation.report import (
    HEADLINE_COLUMNS,
    audit_rows,
    condition_name,
    headline_table,
    mean_interval,
    plot_dice_vs_eps,
    plot_example,
    plot_paired,
    select_conditions,
    tumour_slice,
    write_html_report,
    write_tables,
)
from robustseg.evaluation.report.tables import answer_rows
from robustseg.evaluation.selfchecks import SelfCheck
from robustseg.evaluation.statistics import compare_conditions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REGIONS = ("ET", "TC", "WT")
ATTACKS = {"fgsm": 1.0, "ifgsm": 2.0}  # Dice drop per unit eps
EPS = (0.1, 0.2)
CONDITIONS = ("fgsm@0.1", "fgsm@0.2", "ifgsm@0.1", "ifgsm@0.2")


def sweep_rows(n_cases: int = 5, seed: int = 0) -> list[dict[str, str]]:
    """Rows as read back from the results CSV (all text, empty perturbation stats for clean)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    for i in range(n_cases):
        case = f"case_{i:03d}"
        for region in REGIONS:
            clean = float(rng.uniform(0.7, 0.95))
            rows.append(
                {
                    "case_id": case,
                    "attack": "clean",
                    "eps": "0",
                    "region": region,
                    "dice": repr(clean),
                    "hd95": repr(2.0 + i),
                }
                | {"linf": "", "l2": "", "psnr_db": ""}
            )
            for attack, slope in ATTACKS.items():
                for eps in EPS:
                    dice = float(np.clip(clean - slope * eps - rng.uniform(0, 0.05), 0, 1))
                    rows.append(
                        {"case_id": case, "attack": attack, "eps": repr(eps), "region": region, "dice": repr(dice)}
                        | {
                            "hd95": repr(5.5 + i + 10 * eps),
                            "linf": repr(eps),
                            "l2": repr(eps * 30),
                            "psnr_db": repr(40 - 100 * eps),
                        }
                    )
    return rows


def statistics_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return compare_conditions(audit_rows(rows), n_resamples=200)


def assert_png(path: Path, min_bytes: int = 1024) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes


def volume_example(spatial: tuple[int, ...], tumour_slice_index: int = 7, seed: int = 0) -> dict[str, Any]:
    """An example whose tumour (labels 1, 2) lies only in one slice of the last axis (3-D) or in a square (2-D)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(4, *spatial)).astype(np.float32)
    delta = rng.uniform(-0.05, 0.05, size=image.shape).astype(np.float32)
    label = np.zeros(spatial, dtype=np.int64)
    region = (slice(6, 14), slice(5, 12), *([tumour_slice_index] if len(spatial) == 3 else []))
    label[region] = 1
    label[(slice(8, 11), slice(7, 10), *region[2:])] = 2
    pred_adv = np.zeros_like(label)
    pred_adv[region] = 1
    pred_adv[(slice(6, 9), *region[1:])] = 0
    return {
        "image": image,
        "adversarial": image + delta,
        "label": label,
        "pred_clean": label.copy()[None],  # a leading axis of size 1 is accepted
        "pred_adversarial": pred_adv,
        "case_id": "case_<007>",
        "condition": "ifgsm@0.2",
        "channel_names": ["T1", "T1ce", "T2", "FLAIR"],
        "label_names": {1: "necrosis", 2: "edema"},
    }


def test_condition_name() -> None:
    assert condition_name("clean", 0) == "clean"
    assert condition_name("clean", "") == "clean"
    assert condition_name("fgsm", 0.1) == "fgsm@0.1"
    assert condition_name("ifgsm", "0.2") == "ifgsm@0.2"
    assert condition_name("pgd", 8 / 255) == f"pgd@{8 / 255:g}"


def test_audit_rows_types_text_and_adds_condition() -> None:
    rows = audit_rows(
        [
            {"case_id": 3, "attack": "clean", "eps": "", "region": "ET", "dice": "0.5", "linf": ""},
            {"case_id": "3", "attack": "fgsm", "eps": "0.1", "region": "ET", "dice": "nan", "linf": "0.1"},
        ]
    )
    assert rows[0]["case_id"] == "3" and rows[0]["eps"] == 0.0 and rows[0]["condition"] == "clean"
    assert rows[0]["dice"] == 0.5 and math.isnan(rows[0]["linf"]) and math.isnan(rows[0]["hd95"])
    assert rows[1]["condition"] == "fgsm@0.1" and math.isnan(rows[1]["dice"]) and rows[1]["linf"] == 0.1
    with pytest.raises(ValueError, match="lacks"):
        audit_rows([{"case_id": "a", "attack": "fgsm", "eps": 0.1, "region": "ET"}])
    with pytest.raises(ValueError, match="dice must be a number"):
        audit_rows([{"case_id": "a", "attack": "fgsm", "eps": 0.1, "region": "ET", "dice": "high"}])


def test_select_conditions_prefers_the_strongest_eps() -> None:
    rows = sweep_rows(2)
    assert select_conditions(rows) == list(CONDITIONS)
    assert select_conditions(rows, max_conditions=2) == ["fgsm@0.2", "ifgsm@0.2"]
    assert select_conditions(rows, max_conditions=3) == ["fgsm@0.1", "fgsm@0.2", "ifgsm@0.2"]


def test_mean_interval_t_equals_scipy_and_bootstrap_is_seeded() -> None:
    values = np.array([0.8, 0.7, 0.9, 0.65, math.nan, 0.85])
    finite = values[~np.isnan(values)]
    mean, low, high = mean_interval(values, method="t")
    ref = stats.t.interval(0.95, finite.size - 1, loc=finite.mean(), scale=stats.sem(finite))
    assert mean == pytest.approx(finite.mean())
    assert (low, high) == pytest.approx(ref)
    boot = mean_interval(values, seed=1)
    assert boot == mean_interval(values, seed=1)
    assert finite.min() <= boot[1] <= boot[0] <= boot[2] <= finite.max()
    assert math.isnan(mean_interval([0.5])[1]) and mean_interval([0.5])[0] == 0.5
    assert all(math.isnan(v) for v in mean_interval([math.nan]))


def test_plot_dice_vs_eps_writes_a_png(tmp_path: Path) -> None:
    path = plot_dice_vs_eps(sweep_rows(), tmp_path / "curve.png", eps_unit="std of z-scored input")
    assert_png(path, min_bytes=10_000)


@pytest.mark.parametrize("conditions", [None, "fgsm@0.2", ["fgsm@0.1", "ifgsm@0.2"]])
def test_plot_paired_writes_a_png(tmp_path: Path, conditions: Any) -> None:
    assert_png(plot_paired(sweep_rows(), "WT", conditions, tmp_path / "paired.png"), min_bytes=5_000)


def test_tumour_slice_finds_the_only_tumour_slice() -> None:
    label = np.zeros((10, 12, 9), dtype=int)
    label[2:5, 3:6, 6] = 4
    label[0, 0, 1] = 1  # one voxel elsewhere: fewer than in slice 6
    assert tumour_slice(label) == 6
    assert tumour_slice(label, axis=0) == 2
    assert tumour_slice(np.zeros((4, 4, 9))) == 4  # no tumour: the middle slice


@pytest.mark.parametrize("spatial", [(20, 18, 12), (20, 18)], ids=["3d", "2d"])
def test_plot_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spatial: tuple[int, ...]) -> None:
    chosen: list[int] = []

    def spy(label: np.ndarray, axis: int = -1) -> int:
        chosen.append(tumour_slice(label, axis))
        return chosen[-1]

    monkeypatch.setattr(report.figures, "tumour_slice", spy)
    assert_png(plot_example(volume_example(spatial), tmp_path / "example.png"), min_bytes=10_000)
    assert chosen == ([7] if len(spatial) == 3 else [])


def test_plot_example_rejects_bad_input(tmp_path: Path) -> None:
    example = volume_example((8, 8, 4), tumour_slice_index=1)
    with pytest.raises(ValueError, match="not among the channel names"):
        plot_example(example, tmp_path / "x.png", channel="DWI")
    with pytest.raises(ValueError, match="must have shape"):
        plot_example(example | {"label": np.zeros((8, 8))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="lacks"):
        plot_example({k: v for k, v in example.items() if k != "adversarial"}, tmp_path / "x.png")


def test_write_tables_csv_and_markdown_match_the_statistics(tmp_path: Path) -> None:
    stats_rows = statistics_of(sweep_rows())
    csv_path, md_path = write_tables(stats_rows, tmp_path)
    with csv_path.open() as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(stats_rows) == len(REGIONS) * len(CONDITIONS)
    assert [float(r["p_holm"]) for r in back] == pytest.approx([r["p_holm"] for r in stats_rows])
    lines = md_path.read_text().splitlines()
    assert lines[0] == "| " + " | ".join(HEADLINE_COLUMNS) + " |"
    assert set(lines[1]) <= set("|:-")
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(body) == len(stats_rows)
    for cells, row in zip(body, stats_rows, strict=True):
        assert cells[:3] == [row["region"], row["condition"], str(row["n"])]
        assert cells[3] == f"{row['median_baseline']:.3f}" and cells[4] == f"{row['median_condition']:.3f}"
        assert cells[5].startswith(f"{row['median_drop']:.3f} [")
        assert cells[6] == f"{100 * row['relative_reduction']:.1f}"
        assert cells[7] == f"{row['p_value']:.3g}" and cells[8] == f"{row['p_holm']:.3g}"
        assert cells[10] == ("yes" if row["significant"] else "no")


def test_headline_table_means_equal_hand_computed_means() -> None:
    rows = sweep_rows()
    stats_rows = statistics_of(rows)
    text = headline_table(rows, stats_rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["region", "condition", "n"]
    parsed = {(p[0], p[1]): p[2:] for p in (line.split() for line in lines[1:])}
    assert len(parsed) == len(REGIONS) * len(CONDITIONS)
    holm_p = {(r["region"], r["condition"]): r["p_holm"] for r in stats_rows}
    for region in REGIONS:
        clean = [float(r["dice"]) for r in rows if r["region"] == region and r["attack"] == "clean"]
        for attack in ATTACKS:
            for eps in EPS:
                attacked = [
                    float(r["dice"])
                    for r in rows
                    if r["region"] == region and r["attack"] == attack and float(r["eps"]) == eps
                ]
                n, mean_clean, mean_attacked, drop, p, hd_clean, hd_attacked = parsed[(region, f"{attack}@{eps:g}")]
                assert int(n) == 5
                assert float(mean_clean) == pytest.approx(sum(clean) / 5, abs=5e-4)
                assert float(mean_attacked) == pytest.approx(sum(attacked) / 5, abs=5e-4)
                assert float(drop) == pytest.approx((sum(clean) - sum(attacked)) / 5, abs=1e-3)
                assert p == f"{holm_p[(region, f'{attack}@{eps:g}')]:.3g}"
                assert float(hd_clean) == pytest.approx(sum(2.0 + i for i in range(5)) / 5, abs=5e-3)
                assert float(hd_attacked) == pytest.approx(sum(5.5 + i + 10 * eps for i in range(5)) / 5, abs=5e-3)


def checks() -> list[SelfCheck]:
    return [
        SelfCheck("probabilities", True, "outputs in [-3.2, 4.1]", "The model returns logits."),
        SelfCheck("gradients", False, "zero gradient on case(s) [1]", "Gradient masking: |grad| < tol & <masked>."),
    ]


SETTINGS = {
    "title": "Audit <demo>",
    "threat model": {"norm": "linf", "eps": [0.1, 0.2], "unit": "std of z-scored input", "mask": "nonzero"}
    | {"clip": "per-channel [min, max] of the case"},
    "attacks": {"fgsm": {}, "ifgsm": {"steps": 10, "step_size": 0.025}},
    "model": "UNet 3-D",
    "checkpoint": "models/cpu_demo/model.pt",
    "seed": 0,
    "eps_unit": "std of z-scored input",
}


def test_html_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    rows = sweep_rows()
    stats_rows = statistics_of(rows)
    examples = [volume_example((20, 18, 12)), volume_example((20, 18)) | {"case_id": "c2d", "condition": "fgsm@0.1"}]
    path = write_html_report(tmp_path / "out", rows, stats_rows, checks(), examples, SETTINGS)
    assert path == tmp_path / "out" / "report.html"
    page = path.read_text(encoding="utf-8")
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 1 + len(REGIONS) + len(examples)
    for name in (*REGIONS, "clean", *CONDITIONS):
        assert name in page
    explanation = checks()[1].explanation
    assert html.escape(explanation) in page and explanation not in page
    assert "WARN" in page and "PASS" in page
    assert "Audit &lt;demo&gt;" in page and "case_&lt;007&gt;" in page
    assert html.escape(EMPTY_POLICY_TEXT["brats"]) in page
    assert "step_size" in page and "models/cpu_demo/model.pt" in page
    out = tmp_path / "out"
    for png in ["dice_vs_eps.png", *(f"paired_{r}.png" for r in REGIONS)]:
        assert_png(out / png)
    assert len(list(out.glob("example_*.png"))) == 2
    assert (out / "statistics.csv").stat().st_size > 0 and (out / "statistics.md").stat().st_size > 0


@pytest.mark.parametrize("degenerate", ["one case", "one condition", "nan dice", "clean only"])
def test_html_report_survives_degenerate_inputs(tmp_path: Path, degenerate: str) -> None:
    rows = sweep_rows()
    if degenerate == "one case":
        rows = [r for r in rows if r["case_id"] == "case_000"]
    elif degenerate == "one condition":
        rows = [r for r in rows if r["attack"] == "clean" or (r["attack"] == "fgsm" and r["eps"] == repr(0.1))]
    elif degenerate == "nan dice":
        rows = [r | {"dice": "nan"} if r["region"] == "ET" and r["attack"] == "ifgsm" else r for r in rows]
    else:
        rows = [r for r in rows if r["attack"] == "clean"]
    stats_rows = statistics_of(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        path = write_html_report(tmp_path, rows, stats_rows, [], [], {})
    page = path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1 + len(REGIONS)
    assert "No self-checks were run" in page
    if degenerate == "clean only":
        assert "No comparisons" in page


def test_the_report_opens_with_the_worst_drop_per_region_and_the_self_check_verdicts(tmp_path: Path) -> None:
    rows = sweep_rows()
    stats_rows = statistics_of(rows)
    settings = {**SETTINGS, "scoring": "per region channel of the sigmoid head", "empty_policy": "brats2023"}
    page = write_html_report(tmp_path, rows, stats_rows, checks(), [], settings).read_text(encoding="utf-8")
    answer = page[page.index("<h2>The answer</h2>") : page.index("<h2>Settings</h2>")]
    assert page.index("<h2>The answer</h2>") < page.index("<h2>Self-checks</h2>") < page.index("<h2>Statistics</h2>")
    for region in REGIONS:  # ifgsm at the largest eps lowers Dice most in the synthetic sweep
        worst = max((r for r in stats_rows if r["region"] == region), key=lambda r: r["median_drop"])
        assert worst["condition"] == "ifgsm@0.2"
        assert f"<td>{region}</td><td>ifgsm@0.2</td>" in answer
        assert f"{worst['rank_biserial']:+.2f}" in answer
    assert "1 of 2 passed" in answer and "gradients" in answer
    assert "per region channel of the sigmoid head" in answer and "BraTS 2023+" in answer and "374 mm" in answer
    assert "Holm-adjusted p &le; 0.05" in page


def test_small_sample_warning_states_the_bound_and_the_cases_needed() -> None:
    from robustseg.evaluation.statistics import small_sample_warning, smallest_wilcoxon_p

    assert smallest_wilcoxon_p(2) == 0.25 and smallest_wilcoxon_p(2, "two-sided") == 0.5
    two = statistics_of(sweep_rows(n_cases=2))
    p_values = [float(r["p_value"]) for r in two]
    assert min(p_values) == pytest.approx(0.25)  # the bound is what scipy's exact test gives at best
    warning = small_sample_warning(two)
    tests = len(two)
    needed = next(k for k in range(1, 64) if tests * 0.5**k <= 0.05)  # by hand: tests / 2**k <= alpha
    assert warning is not None and "n = 2" in warning and f"At least {needed} cases" in warning
    assert small_sample_warning(statistics_of(sweep_rows(n_cases=12))) is None


def test_the_report_states_provenance_alpha_and_warns_on_small_samples(tmp_path: Path) -> None:
    rows = sweep_rows(n_cases=2)
    provenance = {"date": "2026-12-02T01:02:03+00:00", "commit": "abc123", "mlflow_run_id": "run-42"}
    page = write_html_report(
        tmp_path, rows, statistics_of(rows), checks(), [], {**SETTINGS, "provenance": provenance}
    ).read_text()
    assert "<h2>Provenance</h2>" in page and "abc123" in page and "run-42" in page
    assert "alpha = 0.05" in page
    assert "Small sample." in page and "n = 2" in page
    big = sweep_rows(n_cases=12)
    assert (
        "Small sample." not in write_html_report(tmp_path / "b", big, statistics_of(big), [], [], SETTINGS).read_text()
    )


def test_the_answer_shows_hd95_beside_dice() -> None:
    rows = sweep_rows()
    cells = {r[0]: r for r in answer_rows(statistics_of(rows), rows)}
    for region, row in cells.items():
        eps = float(row[1].split("@")[1])
        clean = np.mean([2.0 + i for i in range(5)])
        attacked = np.mean([5.5 + i + 10 * eps for i in range(5)])
        assert row[-1] == f"{clean:.2f} / {attacked:.2f}", region


def test_a_single_budget_is_drawn_as_points_not_a_line_from_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.axes import Axes

    lines: list[list[float]] = []
    points: list[list[float]] = []
    plot, errorbar = Axes.plot, Axes.errorbar
    monkeypatch.setattr(Axes, "plot", lambda self, x, *a, **k: (lines.append(list(x)), plot(self, x, *a, **k))[1])
    monkeypatch.setattr(
        Axes, "errorbar", lambda self, x, *a, **k: (points.append(list(x)), errorbar(self, x, *a, **k))[1]
    )
    single = [r for r in sweep_rows() if r["attack"] == "clean" or float(r["eps"]) == 0.2]
    plot_dice_vs_eps(single, tmp_path / "one.png")
    assert lines == [] and len(points) == len(REGIONS) * len(ATTACKS)
    assert sorted({x[0] for x in points}) == list(range(len(ATTACKS)))  # one column per attack, not eps 0 to 0.2
    plot_dice_vs_eps(sweep_rows(), tmp_path / "two.png")
    assert lines and all(x[0] == 0.0 and len(x) == 1 + len(EPS) for x in lines)  # a trend starts at clean


def test_the_perturbation_colour_bar_has_a_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.colorbar import Colorbar

    labels: list[str] = []
    set_label = Colorbar.set_label
    monkeypatch.setattr(Colorbar, "set_label", lambda self, text, **k: (labels.append(text), set_label(self, text))[1])
    plot_example(volume_example((20, 18, 12)), tmp_path / "e.png", unit="std of z-scored input")
    assert labels[-1] == "δ (std of z-scored input)"  # (matplotlib sets an empty label first)


def test_rgb_examples_are_shown_in_colour_with_the_dataset_palette(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.axes import Axes

    from robustseg.data.natural import get_dataset

    colours = get_dataset("voc").colours()
    rgba = report.figures._overlay_rgba(np.array([[0, 1], [15, 255]]), palette=colours)
    assert rgba[0, 1, :3] == pytest.approx(np.array([128, 0, 0]) / 255)  # aeroplane
    assert rgba[1, 0, :3] == pytest.approx(np.array([192, 128, 128]) / 255)  # person
    assert rgba[1, 1, :3] == pytest.approx(np.array([224, 224, 192]) / 255)  # the void band's cream
    assert rgba[0, 0, 3] == 0  # background is not painted
    shown: list[tuple[int, ...]] = []
    original = Axes.imshow
    monkeypatch.setattr(
        Axes, "imshow", lambda self, x, *a, **k: shown.append(np.shape(x)) or original(self, x, *a, **k)
    )
    rng = np.random.default_rng(0)
    image = rng.random((3, 12, 10))
    label = np.zeros((12, 10), dtype=int)
    label[3:8, 2:6] = 1
    example = {"image": image, "adversarial": np.clip(image + 0.03, 0, 1), "label": label, "pred_clean": label}
    example |= {"pred_adversarial": label * 0, "case_id": "x", "condition": "fgsm@0.03", "palette": colours}
    example["channel_names"] = ["R", "G", "B"]
    assert_png(plot_example(example, tmp_path / "rgb.png"), min_bytes=5_000)
    assert shown.count((12, 10, 3)) == 5  # the five image panels in colour, not one grey channel
