"""Data parallelism under `torchrun`: which process this is, its shard of an epoch, summed metrics.

Active only when torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) names more than one process, or
one process with EDGEKD_DDP=1 (DDP with NCCL on a machine with one GPU, which NCCL does not let two
processes share); otherwise every function here is a no-op and the trainer runs as a single process does.
The process group is initialised once per process (nccl on CUDA, gloo on CPU) and reused by every
trainer the process runs (an auxiliary teacher, then its student).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

FORCE_ENV = "EDGEKD_DDP"  # "1": a one-process torchrun job still runs DDP (to check that path on one GPU)


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local: int = 0
    forced: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1 or self.forced

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Rank:
    """This process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""
    if not {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= set(os.environ):
        return Rank()
    world = int(os.environ["WORLD_SIZE"])
    forced = world == 1 and os.environ.get(FORCE_ENV) == "1"
    return Rank(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]), forced)


def init(rank: Rank, device: torch.device) -> None:
    """Join the process group (idempotent); nccl for CUDA devices, gloo otherwise."""
    if not rank.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(lambda: dist.destroy_process_group() if dist.is_initialized() else None)


def shard(order: np.ndarray, rank: Rank) -> np.ndarray:
    """This rank's samples of an epoch: the same permutation on every rank, strided by rank.

    The tail is cut to a multiple of the world size so every rank runs the same number of batches
    (a rank with one more batch would wait forever on the others' gradients). The permutation changes
    every epoch, so a different handful of samples sits out each epoch.
    """
    if not rank.active:
        return order
    usable = len(order) - len(order) % rank.world
    return order[:usable][rank.rank :: rank.world]


def shard_len(n: int, rank: Rank) -> int:
    return n if not rank.active else n // rank.world


def summed(values: list[float], device: torch.device, rank: Rank) -> list[float]:
    """Each value summed over the ranks (unchanged in a single process)."""
    if not rank.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def broadcast_from_main(value: int, rank: Rank) -> int:
    if not rank.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])


def sync_buffers(model: nn.Module, rank: Rank) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so all evaluate the same model."""
    if rank.active:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(rank: Rank) -> None:
    if rank.active:
        dist.barrier()


def wrap(model: nn.Module, device: torch.device, rank: Rank) -> nn.Module:
    """The student as DDP sees it (the model itself in a single process). Only the student is wrapped:
    the teacher is frozen and runs whole on every rank."""
    if not rank.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
