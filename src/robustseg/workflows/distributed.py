"""Cases sharded over the ranks of ``torchrun``, and the merge of the ranks' results on rank 0.

Evaluation workflows (the audit sweep, the certification run) give each rank the cases of MONAI's
``DistributedSampler(even_divisible=False, shuffle=False)``: unequal shares, no case twice (torch's own sampler pads
by repeating cases, which would bias every mean). Each rank appends its rows to its own results file; after a
barrier, rank 0 merges them into the one results table and writes statistics, report and the MLflow run. Seeds are
per case, so the results are those of a single process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from monai.data import DistributedSampler

from robustseg.evaluation.results import ResultsStore

__all__ = [
    "barrier",
    "finish",
    "held_group",
    "init_from_env",
    "is_rank0",
    "leave",
    "merge",
    "open_store",
    "rank_and_world",
    "resume_summary",
    "shard",
]

_STARTED = False
_HELD = False


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment); else nothing.

    The evaluation overlays call this first in ``initialize``, so ``torchrun --nproc_per_node N -m monai.bundle run
    ...`` shards their cases with no extra profile. The backend is ``nccl`` on GPUs, ``gloo`` on CPUs; on GPUs each
    rank is put on the device ``LOCAL_RANK`` (set the bundle's ``device`` to ``cuda:LOCAL_RANK`` likewise).
    Returns whether this call started the group.
    """
    global _STARTED
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available()
    dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    _STARTED = True
    return True


def finish() -> None:
    """Leave the process group :func:`init_from_env` started (after a last barrier); nothing otherwise, and nothing
    while :func:`held_group` keeps it for further workflows of the same process."""
    global _STARTED
    if _STARTED and not _HELD and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _STARTED = False


def leave() -> None:
    """End a multi-process training (``multi_gpu_train.json``'s finalize): a last barrier, the group destroyed, and on
    the gloo backend the process ended at once, its streams and log handlers flushed.

    Gloo's worker threads can still hold finished work whose tensors Python frees while the interpreter shuts down;
    now and then that aborts a rank ("terminate called without an active exception", exit -6) after every checkpoint,
    metric and MLflow run was written, and torchrun reports the whole run failed. Nothing is left to do at that point,
    so the process skips the interpreter's teardown. Without a process group: nothing.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gloo = dist.get_backend() == "gloo"
    dist.barrier()
    dist.destroy_process_group()
    if gloo:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@contextmanager
def held_group() -> Iterator[None]:
    """One process group for several workflows run in one process (``robustseg audit``: attack, then certify).

    A group destroyed and created again in one process under ``torchrun`` races between ranks; holding it keeps the
    one :func:`init_from_env` starts until the block ends.
    """
    global _HELD
    init_from_env()
    _HELD = True
    try:
        yield
    finally:
        _HELD = False
        finish()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (0, 1 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_rank0() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every rank; nothing without a process group."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def shard(num_cases: int) -> list[int]:
    """Indices of the cases of this rank: all of them on one rank, MONAI's uneven shares otherwise."""
    rank, world = rank_and_world()
    if world == 1:
        return list(range(num_cases))
    cases: Any = range(num_cases)  # any sized sequence serves as the sampler's dataset
    sampler = DistributedSampler(cases, even_divisible=False, shuffle=False, num_replicas=world, rank=rank)
    return [int(i) for i in sampler]


def open_store(output_dir: Path, columns: Sequence[str], key: Sequence[str], name: str = "results") -> ResultsStore:
    """This rank's results store; rows any rank stored earlier (in any layout of ranks) count as done.

    One rank writes ``<name>.csv``; rank ``r`` of several writes ``<name>.rank<r>.csv``, merged by :func:`merge`.
    """
    rank, world = rank_and_world()
    main = output_dir / f"{name}.csv"
    path = main if world == 1 else output_dir / f"{name}.rank{rank}.csv"
    others = [p for p in [main, *sorted(output_dir.glob(f"{name}.rank*.csv"))] if p != path and p.is_file()]
    return ResultsStore(path, columns, key, also=others)


def resume_summary(stored_rows: int, complete: int, todo: int) -> str:
    """What a resumed run reuses and what it computes, for its log: ``reusing 18 stored rows (1 cases complete),
    computing 1 cases``."""
    if not stored_rows:
        return f"computing {todo} cases"
    return f"reusing {stored_rows} stored rows ({complete} cases complete), computing {todo} cases"


def merge(output_dir: Path, columns: Sequence[str], key: Sequence[str], name: str = "results") -> ResultsStore:
    """On rank 0 after a barrier: every rank's rows in ``<name>.csv``, the rank files removed; returns that store."""
    store = ResultsStore(output_dir / f"{name}.csv", columns, key)
    for part in sorted(output_dir.glob(f"{name}.rank*.csv")):
        store.append(ResultsStore(part, columns, key).rows())
        part.unlink()
    return store
