"""Smoke test of scripts/bench_natural2d.py: the quick configuration writes the expected JSON (not a timing test)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_natural2d.py"


@pytest.mark.slow
def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    output = tmp_path / "bench.json"
    assert main(["--quick", "--threads", "1", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["config"]["quick"] is True and report["threads"] == 1 and report["device"] == "cpu"
    compute, bundle = report["training"]["compute"], report["training"]["bundle_trainer"]
    assert compute["batch"] == 2 and compute["images_per_s"] > 0 and len(compute["step_s"]["repeats"]) == 2
    assert bundle["images"] == 4 and bundle["images_per_s"] > 0  # 4 scenes, batch 2, drop_last: 2 iterations
    overhead = report["attack_step_overhead"]
    assert overhead["input_shape"] == [1, 3, 32, 32]
    assert len(overhead["attack_step_s"]["repeats"]) == 2 * 2  # steps x repeats
    assert math.isfinite(overhead["ratio"]) and overhead["ratio"] > 0
