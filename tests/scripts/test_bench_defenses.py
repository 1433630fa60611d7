"""Smoke test of scripts/bench_defenses.py: a tiny configuration prints the expected JSON (not a timing test)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_defenses.py"


def test_tiny_run_prints_ratios_and_targets(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    main(["--roi", "16", "--batch", "1", "--repeats", "1", "--steps", "1", "2"])
    report = json.loads(capsys.readouterr().out)
    assert report["batch"] == [1, 4, 16, 16, 16]
    assert set(report["ratio_over_clean"]) == {"pgd1", "pgd2", "fast", "fgsm_ratio0.5", "distillation"}
    assert report["targets"] == {"pgd1": pytest.approx(2.2), "pgd2": pytest.approx(3.3), "fast": 2.2}
    assert all(math.isfinite(r) and r > 0 for r in report["ratio_over_clean"].values())
    assert report["meets_targets"]["pgd1"] == (report["ratio_over_clean"]["pgd1"] <= 2.2)
