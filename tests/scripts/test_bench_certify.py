"""Smoke test of scripts/bench_certify.py: the quick configuration writes the expected JSON (not a timing test)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_certify.py"


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    output = tmp_path / "bench_certify.json"
    assert main(["--quick", "--threads", "1", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["config"]["quick"] is True and report["threads"] == 1
    assert [t["name"] for t in report["throughput"]] == ["direct", "sliding_window", "bundle_network_direct"]
    assert report["config"]["sw_roi"] == 32 and report["config"]["batches"] == 2
    for t in report["throughput"]:
        assert math.isfinite(t["ratio"]) and t["ratio"] > 0 and t["samples_per_s"] > 0
        assert t["samples_per_s"] == t["batch"] / t["smoother_batch_s"]
        assert t["batches_per_round"] == 2
    memory = report["memory"]
    assert memory["n_large"] == 10 * memory["n_small"]
    assert memory["peak_ratio"] >= 1.0  # the peak after the larger run includes the smaller one's
