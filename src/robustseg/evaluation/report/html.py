"""The self-contained HTML page of a report: inline CSS, figures as base64 PNG, every text escaped."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustseg.evaluation.metrics import describe_empty_policy
from robustseg.evaluation.report.figures import _metric_label, plot_dice_vs_eps, plot_example, plot_paired
from robustseg.evaluation.report.rows import _attack_eps, _conditions, _regions, _truthy, audit_rows
from robustseg.evaluation.report.tables import (
    HEADLINE_COLUMNS,
    _headline_cells,
    _perturbation_rows,
    answer_columns,
    answer_rows,
    headline_table,
    write_tables,
)
from robustseg.evaluation.selfchecks import SelfCheck
from robustseg.evaluation.statistics import small_sample_warning

__all__ = ["provenance_html", "write_html_page", "write_html_report"]


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.significant td { background: #fff4e5; }
.badge { display: inline-block; padding: .1em .6em; border-radius: .8em; font-weight: bold; color: #fff;
         font-size: .85em; }
.pass { background: #2e7d32; }
.warn { background: #e65100; }
.check { margin: .6em 0; padding: .5em .8em; border-left: 4px solid #2e7d32; background: #f6fbf6; }
.check.failed { border-left-color: #e65100; background: #fff6ef; }
.policy { background: #f4f6fa; padding: .6em .8em; border-left: 4px solid #5573a8; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_value(value: Any) -> str:
    """Settings values: mappings as nested tables, lists joined, floats with ``g``; everything escaped."""
    if isinstance(value, Mapping):
        if not value:
            return "&mdash;"
        cells = "".join(f"<tr><th>{_e(k)}</th><td>{_html_value(v)}</td></tr>" for k, v in value.items())
        return f"<table>{cells}</table>"
    if isinstance(value, list | tuple):
        if any(isinstance(v, Mapping) for v in value):
            return "<ul>" + "".join(f"<li>{_html_value(v)}</li>" for v in value) + "</ul>"
        return ", ".join(_html_value(v) for v in value)
    if isinstance(value, float):
        return _e(f"{value:g}")
    return _e(value)


def _html_table(header: Sequence[str], body: Sequence[Sequence[str]], numeric_from: int = 2) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for cells in body:
        tds = "".join(
            f'<td class="num">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>" for i, c in enumerate(cells)
        )
        lines.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _check_fields(check: SelfCheck | Mapping[str, Any]) -> tuple[str, bool, str, str]:
    if isinstance(check, SelfCheck):
        return check.name, check.passed, check.detail, check.explanation
    return str(check["name"]), _truthy(check["passed"]), str(check.get("detail", "")), str(check["explanation"])


def _checks_html(checks: Sequence[SelfCheck | Mapping[str, Any]]) -> str:
    if not checks:
        return "<p>No self-checks were run.</p>"
    fields = [_check_fields(c) for c in checks]
    failed = sum(not f[1] for f in fields)
    summary = f"<p><strong>{len(fields) - failed} of {len(fields)} checks passed.</strong>" + (
        " Results flagged below may overstate robustness.</p>" if failed else "</p>"
    )
    items = []
    for name, passed, detail, explanation in fields:
        badge = '<span class="badge pass">PASS</span>' if passed else '<span class="badge warn">WARN</span>'
        items.append(
            f'<div class="check{"" if passed else " failed"}">{badge} <strong>{_e(name)}</strong>'
            f"<br><small>{_e(detail)}</small><br>{_e(explanation)}</div>"
        )
    return summary + "".join(items)


def _stats_html(stats_rows: Sequence[Mapping[str, Any]]) -> str:
    if not stats_rows:
        return "<p>No comparisons (no attacked condition).</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in HEADLINE_COLUMNS)
    lines = []
    for row in stats_rows:
        cells = _headline_cells(row)
        tds = "".join(f'<td class="num">{_e(c)}</td>' if i >= 2 else f"<td>{_e(c)}</td>" for i, c in enumerate(cells))
        css = ' class="significant"' if _truthy(row.get("significant")) else ""
        lines.append(f"<tr{css}>{tds}</tr>")
    alternatives = sorted({str(r.get("alternative", "")) for r in stats_rows} - {""})
    zero_methods = sorted({str(r.get("zero_method", "")) for r in stats_rows} - {""})
    alphas = sorted({str(r.get("alpha", "")) for r in stats_rows} - {""}) or ["0.05"]
    method = (
        f"<p>Wilcoxon signed-rank test of clean vs attacked per case (alternative: {_e(', '.join(alternatives))}; "
        f"zero differences: {_e(', '.join(zero_methods))}); Holm correction over the {len(stats_rows)} tests of this "
        f"table; significant: Holm-adjusted p &le; {_e(', '.join(alphas))}; the drop is the median of the per-case "
        "differences with a seeded bootstrap interval; rank-biserial is the matched-pairs effect size.</p>"
    )
    notes = [f"{r['region']} / {r['condition']}: {r['note']}" for r in stats_rows if str(r.get("note") or "").strip()]
    note_html = "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>{method}{note_html}"


def _figure_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _file_stem(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_") or "figure"


def write_html_report(
    out_dir: str | Path,
    rows: Iterable[Mapping[str, Any]],
    stats_rows: Sequence[Mapping[str, Any]],
    checks: Sequence[SelfCheck | Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> Path:
    """Write ``report.html``, one self-contained page, with its figures and tables next to it.

    The page opens with the answer: per region the worst drop over all conditions with its test and effect size,
    how regions were scored and empty ones treated, and the self-check verdicts. Then the details: the settings, the
    self-checks (a PASS or WARN badge and the explanation of each), the statistics table, mean scores and
    perturbation sizes per condition, the Dice-vs-eps plot, one paired plot per region and one figure per example.
    Figures are embedded as base64 PNG data URIs and the CSS is inline, so the page needs no other file; all text is
    HTML-escaped.

    Args:
        out_dir: the folder to write into (created).
        rows: the audit rows (see :func:`audit_rows`).
        stats_rows: :func:`.statistics.compare_conditions` of those rows.
        checks: :class:`.selfchecks.SelfCheck` objects, or dicts with their fields.
        examples: dicts for :func:`plot_example`.
        settings: shown as given (nested mappings as nested tables): the threat model (norm, eps and unit, mask,
            clip bounds), attacks and parameters, model and checkpoint, seed, ... Keys read by the report:
            ``title``, ``eps_unit`` (x-axis label), ``empty_policy`` (``"brats"`` by default) and ``empty_hd95``
            (for the policy sentence of :func:`.metrics.describe_empty_policy`), ``scoring`` (how regions were
            scored), ``example_channel``.

    Returns:
        The path of ``report.html``. Next to it: ``dice_vs_eps.png``, ``paired_<region>.png``,
        ``example_<i>_<case>_<condition>.png``, ``statistics.csv`` and ``statistics.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = audit_rows(rows)
    regions = _regions(table)
    conditions = _conditions(table)
    title = str(settings.get("title", "Adversarial robustness audit"))
    hd95 = settings.get("empty_hd95")
    policy = describe_empty_policy(str(settings.get("empty_policy", "brats")), None if hd95 is None else float(hd95))
    metric = str(settings.get("metric", "dice"))
    score = _metric_label(metric)
    write_tables(stats_rows, out)

    curve = plot_dice_vs_eps(table, out / "dice_vs_eps.png", eps_unit=str(settings.get("eps_unit", "")), metric=metric)
    paired = [(r, plot_paired(table, r, None, out / f"{_file_stem('paired', r)}.png", metric)) for r in regions]
    example_figures = []
    for i, example in enumerate(examples):
        stem = _file_stem("example", str(i), str(example.get("case_id", "")), str(example.get("condition", "")))
        unit = settings.get("eps_unit")
        path = plot_example(example, out / f"{stem}.png", channel=settings.get("example_channel"), unit=unit)
        example_figures.append((example, path))

    derived = {
        "cases": len({r["case_id"] for r in table}),
        "regions": regions,
        "conditions": conditions,
    }
    parts = [
        f"<h1>{_e(title)}</h1>",
        "<h2>The answer</h2>",
        _answer_html(stats_rows, checks, settings, policy, table, metric),
        *provenance_html(settings.get("provenance")),
        "<h2>Settings</h2>",
        _html_value({k: v for k, v in settings.items() if k != "provenance"}),
        "<h3>From the results</h3>",
        _html_value(derived),
        "<h2>Self-checks</h2>",
        _checks_html(checks),
        "<h2>Statistics</h2>",
        _stats_html(stats_rows),
        "<h3>Mean scores over paired cases</h3>",
        f"<pre>{_e(headline_table(table, stats_rows, metric))}</pre>",
        "<h3>Perturbation size</h3>",
        _html_table(
            ["condition", "cases", "max L-inf", "mean L2", "mean PSNR (dB)"], _perturbation_rows(table), numeric_from=1
        ),
        f"<h2>{score} against eps</h2>",
        _figure_html(
            curve,
            f"Mean {score} against eps per region and attack, with interval bands across cases"
            + (" (one budget: points, no trend measured)." if len(_budgets(table)) == 1 else "."),
        ),
        "<h2>Paired per-case plots</h2>",
        *(
            _figure_html(
                p,
                f"{r}: {score} per case, clean vs attacked (at most 6 conditions: the strongest eps per attack first).",
            )
            for r, p in paired
        ),
        "<h2>Examples</h2>",
        *(_figure_html(p, f"{ex.get('case_id', '')} under {ex.get('condition', '')}") for ex, p in example_figures),
    ]
    if not example_figures:
        parts.append("<p>No examples.</p>")
    return write_html_page(out / "report.html", title, parts)


def _budgets(table: Sequence[Mapping[str, Any]]) -> set[float]:
    return {float(e) for eps in _attack_eps(table).values() for e in eps}


def _answer_html(
    stats_rows: Sequence[Mapping[str, Any]],
    checks: Sequence[SelfCheck | Mapping[str, Any]],
    settings: Mapping[str, Any],
    policy: str,
    table: Sequence[Mapping[str, Any]] = (),
    metric: str = "dice",
) -> str:
    """The worst drop per region with its test and HD95, the alpha, a small-sample warning, how it was scored, and
    the self-check verdicts in one line each."""
    rows = answer_rows(stats_rows, table)
    body = _html_table(answer_columns(metric), rows) if rows else "<p>No condition was compared with clean.</p>"
    fields = [_check_fields(c) for c in checks]
    failed = [f"{name} ({detail.split(';')[0]})" for name, passed, detail, _ in fields if not passed]
    verdict = f"<p><strong>Self-checks: {len(fields) - len(failed)} of {len(fields)} passed.</strong>" + (
        f" Suspect (robustness may be overstated): {_e('; '.join(failed))}.</p>" if failed else "</p>"
    )
    scoring = settings.get("scoring")
    how = f"<p>Regions are scored {_e(scoring)}.</p>" if scoring else ""
    alphas = sorted({f"{float(r['alpha']):g}" for r in stats_rows if r.get("alpha") not in (None, "")}) or ["0.05"]
    warning = small_sample_warning(stats_rows)
    small = f'<p class="check failed"><strong>Small sample.</strong> {_e(warning)}</p>' if warning else ""
    return (
        f"<p>Per region, the condition that lowered {_metric_label(metric)} most (largest median drop against clean), "
        "with its paired "
        "Wilcoxon test, Holm-adjusted over every test of this report, its effect size, and the mean HD95 (mm) "
        f"clean and under it. Significant means Holm-adjusted p &le; alpha = {_e(', '.join(alphas))}.</p>"
        + small
        + body
        + how
        + f'<p class="policy">{_e(policy)}</p>'
        + verdict
    )


def provenance_html(provenance: Any) -> list[str]:
    """The report's provenance section (when, which robustseg and commit, data, checkpoint, MLflow run)."""
    if not isinstance(provenance, Mapping) or not provenance:
        return []
    return ["<h2>Provenance</h2>", _html_value(dict(provenance))]


def write_html_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    """One self-contained HTML page (inline CSS) of the given body ``parts``, written to ``path``."""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
