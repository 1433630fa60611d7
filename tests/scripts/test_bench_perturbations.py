"""Smoke test of scripts/bench_perturbations.py: a few ops and corruptions print the expected JSON (not a timing
test)."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_perturbations.py"


def test_a_few_ops_print_costs_against_the_forward_pass(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    main(["--repeats", "1", "--spacing", "6", "--size", "64", "--ops", "ghosting", "rotate", "skull_strip", "jpeg"])
    report = json.loads(capsys.readouterr().out)
    assert set(report["mri"]) == {"ghosting"} and set(report["natural"]) == {"rotate"}
    assert set(report["brats_c"]) == {"ghosting", "skull_strip"} and set(report["natural_c"]) == {"jpeg"}
    assert report["natural_case"] == [1, 3, 64, 64] and report["mri_case"][:2] == [1, 4]
    rows = [*report["mri"].values(), *report["natural"].values(), *report["brats_c"].values()]
    assert all(math.isfinite(r["ratio"]) and r["ratio"] == pytest.approx(r["op_ms"] / r["forward_ms"]) for r in rows)
    assert all(r["demo_ratio"] == pytest.approx(r["op_ms"] / r["demo_forward_ms"]) for r in rows)
    assert report["mri_case"][2] % 16 == 0  # padded for the bundle's UNet, which halves four times
    assert report["meets_target"] == (not report["over_target"])
