"""DefendedIteration in a real MONAI SupervisedTrainer under DDP (2 gloo processes): the attack all-reduces nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from robustseg.labels import LabelScheme

BLOBS = LabelScheme(class_names=("background", "blob"))


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels[:, 0].long())


def _worker(rank: int, port: int, steps: int, out: str) -> None:
    from monai.engines import SupervisedTrainer
    from monai.inferers import SimpleInferer
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from robustseg.defenses import AdversarialTraining
    from robustseg.workflows import DefendedIteration

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    ddp = nn.parallel.DistributedDataParallel(net)
    calls = {"n": 0}

    def counting(state, bucket):  # type: ignore[no-untyped-def]  (DDP checks the annotations: none at all)
        state["n"] += 1
        return allreduce_hook(None, bucket)

    ddp.register_comm_hook(calls, counting)
    g = torch.Generator().manual_seed(rank)
    data = []
    for _ in range(3):
        image = torch.randn((2, 2, 12, 12), generator=g)
        data.append({"image": image, "label": (image[:, :1] > 0.3).long()})
    objective = AdversarialTraining("pgd", eps=0.2, steps=steps, scheme=BLOBS, mask="none", seed=0)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=ddp,
        optimizer=torch.optim.SGD(ddp.parameters(), lr=0.1),
        loss_function=_ce,
        inferer=SimpleInferer(),
        iteration_update=DefendedIteration(objective),
    )
    trainer.run()
    first = next(iter(net.parameters())).detach().clone()
    gathered = [torch.zeros_like(first) for _ in range(2)]
    dist.all_gather(gathered, first)
    same = bool(torch.equal(gathered[0], gathered[1]))
    if rank == 0:
        Path(out).write_text(json.dumps({"calls": calls["n"], "same_weights": same}))
    dist.destroy_process_group()


def _run(tmp_path: Path, steps: int, port: int) -> dict:
    out = tmp_path / f"k{steps}.json"
    mp.spawn(_worker, args=(port, steps, str(out)), nprocs=2, join=True)
    return json.loads(out.read_text())


def test_pgd_training_under_ddp_all_reduces_once_per_iteration_whatever_k(tmp_path: Path) -> None:
    one = _run(tmp_path, steps=1, port=29611)
    three = _run(tmp_path, steps=3, port=29612)
    assert one["calls"] == three["calls"] == 3  # one bucket, one all-reduce per training iteration
    assert one["same_weights"] and three["same_weights"]


def test_gradient_accumulation_is_refused() -> None:
    from types import SimpleNamespace

    from robustseg.defenses import AdversarialTraining
    from robustseg.workflows import DefendedIteration

    iteration = DefendedIteration(AdversarialTraining("fast", eps=0.1))
    with pytest.raises(ValueError, match="accumulation_steps"):
        iteration(SimpleNamespace(accumulation_steps=2), {"image": torch.zeros(1)})
