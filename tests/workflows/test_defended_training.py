"""DefendedIteration in a real MONAI SupervisedTrainer under DDP (2 gloo processes): the attack all-reduces nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_defended_worker.py")


def _run(tmp_path: Path, steps: int) -> dict:
    """Two gloo ranks under torchrun, in their own process group with a deadline: a hang fails the test (with each
    rank's stack, which the worker dumps before the deadline) and leaves no process behind."""
    out = tmp_path / f"k{steps}.json"
    log = tmp_path / f"k{steps}.log"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*torchrun, str(WORKER), str(steps), str(out)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"2-rank defended training stalled past 240 s:\n{log.read_text()[-6000:]}")
    assert code == 0, log.read_text()[-6000:]
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
