"""Smoke test of scripts/bench_attacks.py: the quick configuration writes the expected JSON (not a timing test)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_attacks.py"


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _medians(node: Any) -> list[Any]:
    """Every ``median`` of a measured number in the report."""
    if isinstance(node, dict):
        found = [node["median"]] if "median" in node and "repeats" in node else []
        return found + [m for v in node.values() for m in _medians(v)]
    if isinstance(node, list):
        return [m for v in node for m in _medians(v)]
    return []


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    output = tmp_path / "bench_attacks.json"
    assert main(["--quick", "--threads", "1", "--output", str(output)]) == 0
    report = json.loads(output.read_text())

    for key in ("torch", "threads", "cpu_count", "config", "step_overhead", "overhead_breakdown", "sweep", "batching"):
        assert key in report, key
    assert report["config"]["quick"] is True
    assert report["threads"] == 1

    cases = report["step_overhead"]["cases"]
    assert {c["name"] for c in cases} == {"direct_ce", "direct_segpgd", "sliding_window_ce", "sliding_window_segpgd"}
    for case in cases:
        for key in ("ratio", "ratio_of_medians", "amortized_ratio"):
            assert _positive(case[key]), (case["name"], key)
        for key in ("bare_forward_backward_s", "attack_step_s", "attack_call_s"):
            assert _positive(case[key]["median"]), (case["name"], key)
            assert case[key]["n"] == len(case[key]["repeats"]) >= 1
        repeats = report["config"]["repeats"]
        assert case["attack_step_s"]["n"] == case["ratio_paired"]["n"] == case["steps"] * repeats
        assert case["bare_forward_backward_s"]["n"] == (case["steps"] + 1) * repeats
        breakdown = report["overhead_breakdown"][case["name"]]
        assert set(breakdown["per_step"]) >= {"check_gradient", "ascent", "project", "loss_map_fwd_bwd_beyond_ce"}
        assert _positive(breakdown["per_call"]["final_evaluate_forward"]["s"])
    assert _positive(report["step_overhead"]["max_ratio"])

    assert _positive(report["sweep"]["cases_x_conditions_per_minute"]["median"])
    assert _positive(report["batching"]["throughput_ratio"])
    assert all(_positive(m) for m in _medians(report))
