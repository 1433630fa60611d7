"""One rank of a 2-process gloo run of DefendedIteration in a MONAI SupervisedTrainer (started by torchrun).

Usage: torchrun --standalone --nproc_per_node 2 ddp_defended_worker.py STEPS OUT_JSON
Rank 0 writes {"calls": all-reduces counted by a DDP comm hook, "same_weights": ranks agree after training}.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from robustseg.defenses import AdversarialTraining
from robustseg.labels import LabelScheme
from robustseg.workflows import DefendedIteration

BLOBS = LabelScheme(class_names=("background", "blob"))


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels[:, 0].long())


def main(steps: int, out: Path) -> None:
    faulthandler.dump_traceback_later(200, exit=True)  # a hung rank shows where, before the test's 240 s deadline
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))  # a lost peer fails fast, it does not hang
    rank = dist.get_rank()
    print(f"rank {rank}: process group up", flush=True)
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
    print(f"rank {rank}: trained", flush=True)
    first = next(iter(net.parameters())).detach().clone()
    gathered = [torch.zeros_like(first) for _ in range(2)]
    dist.all_gather(gathered, first)
    if rank == 0:
        out.write_text(json.dumps({"calls": calls["n"], "same_weights": bool(torch.equal(gathered[0], gathered[1]))}))
    dist.barrier()
    print(f"rank {rank}: done", flush=True)
    # gloo's teardown (destroy_process_group, or the interpreter's exit) hung now and then here with torch 2.13 on 2
    # cores, after both ranks had finished: leave without it.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
