"""DefendedIteration in a real MONAI SupervisedTrainer under DDP (2 gloo processes): the attack all-reduces nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_defended_worker.py")


def _run(tmp_path: Path, steps: int) -> dict:
    """Two gloo ranks under torchrun, in a subprocess with a deadline: a hang fails the test instead of the CI run."""
    out = tmp_path / f"k{steps}.json"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(
            [*torchrun, str(WORKER), str(steps), str(out)], capture_output=True, text=True, timeout=240, env=env
        )
    except subprocess.TimeoutExpired as stalled:
        pytest.fail(f"2-rank defended training stalled past 240 s:\n{stalled.stdout!s}\n{stalled.stderr!s}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def test_pgd_training_under_ddp_all_reduces_once_per_iteration_whatever_k(tmp_path: Path) -> None:
    one = _run(tmp_path, steps=1)
    three = _run(tmp_path, steps=3)
    assert one["calls"] == three["calls"] == 3  # one bucket, one all-reduce per training iteration
    assert one["same_weights"] and three["same_weights"]


def test_gradient_accumulation_is_refused() -> None:
    from types import SimpleNamespace

    from robustseg.defenses import AdversarialTraining
    from robustseg.workflows import DefendedIteration

    iteration = DefendedIteration(AdversarialTraining("fast", eps=0.1))
    with pytest.raises(ValueError, match="accumulation_steps"):
        iteration(SimpleNamespace(accumulation_steps=2), {"image": torch.zeros(1)})
