"""Smoke test of scripts/bench_audit.py: the quick configuration writes the expected JSON (not a timing test)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_audit.py"


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    output = tmp_path / "bench_audit.json"
    assert main(["--quick", "--threads", "1", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["config"]["quick"] is True and report["threads"] == 1
    assert report["model"].startswith("the demo network with random weights")
    assert report["passes_a_plain_audit_needs_per_case"] == {"forward": 5, "forward_backward": 1 + 2 * 2}
    ran = report["passes_the_sweep_ran_per_case"]
    assert ran["forward_backward"] == 4  # the clean gradient is shared by FGSM and i-FGSM's first step
    assert 4 <= ran["forward_only"] <= 5  # one scoring forward per condition; the first case's checks add one
    for key in ("overhead_ratio", "needed_s"):
        assert math.isfinite(report[key]) and report[key] > 0
    per_case = report["per_case"]
    assert per_case["identical_dice"] is True
    assert len(per_case["paired_ratios"]) == report["config"]["cases"] == 2
