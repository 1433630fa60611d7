"""scripts/bench_sensitivity.py: the evaluations ratio on known responses, and refresh costs from records."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_sensitivity.py"


def test_true_error_is_zero_on_a_linear_response_and_shrinks_with_more_levels() -> None:
    bench = runpy.run_path(str(SCRIPT))
    assert bench["true_error"](bench["RESPONSES"]["linear"], np.linspace(0, 1, 3)) == pytest.approx(0, abs=1e-12)
    cliff = bench["RESPONSES"]["late_cliff"]
    assert bench["true_error"](cliff, np.linspace(0, 1, 33)) < bench["true_error"](cliff, np.linspace(0, 1, 5))


def test_the_report_holds_ratios_and_refresh_costs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = {
        "epoch": 2,
        "seconds": 1.0,
        "training_seconds_since_last": 20.0,
        "refresh_ratio": 0.05,
        "analyses": {
            "blur": {"points": [{"level": 0.0, "drop": 0.0, "kid": 0.0}, {"level": 1.0, "drop": 0.4, "kid": 0.2}]}
        },
    }
    (tmp_path / "refresh_epoch2.json").write_text(json.dumps(record))
    runpy.run_path(str(SCRIPT))["main"](["--refreshes", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert "recorded:blur" in report["evaluations"] and report["paper_claim_ratio"] == 10
    row = report["evaluations"]["late_cliff"]
    assert row["uniform_evaluations_same_error"] >= 3 and row["ratio"] == pytest.approx(
        row["uniform_evaluations_same_error"] / row["adaptive_evaluations"]
    )
    assert report["refresh_cost"]["median_ratio"] == 0.05 and report["refresh_cost"]["meets_target"]


def test_evaluations_to_reach_an_error_counts_the_fewest_levels_of_each_way() -> None:
    bench = runpy.run_path(str(SCRIPT))
    cliff = bench["RESPONSES"]["late_cliff"]
    found = bench["evaluations_to_reach"](cliff, 0.05)
    uniform = found["uniform"]
    assert bench["true_error"](cliff, np.linspace(0, 1, uniform)) <= 0.05
    assert bench["true_error"](cliff, np.linspace(0, 1, uniform - 1)) > 0.05
    assert found["ratio"] == pytest.approx(uniform / found["adaptive"])
    linear = bench["evaluations_to_reach"](bench["RESPONSES"]["linear"], 0.02)
    assert linear == {"adaptive": 3, "uniform": 3, "ratio": 1}
