"""Process-group set-up for one process (CPU, one GPU, MPS) or many through ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` :func:`setup`
initialises ``torch.distributed`` from the environment (``env://``), with NCCL on CUDA and gloo otherwise,
and pins each process to its local GPU. Rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from imde.utils.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """``True`` on the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """``True`` when more than one process takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected an integer (set by torchrun)") from None


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by ``torchrun`` with more than one process.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; under DDP with CUDA each process uses
            ``cuda:LOCAL_RANK``.

    Returns:
        ``(info, device)``. An already initialised process group is reused.

    Raises:
        ValueError: a bad device (see :func:`imde.utils.device.resolve_device`).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if dist.is_available() and dist.is_initialized():
        world_size = dist.get_world_size()
    resolved = resolve_device(device)
    if world_size <= 1:
        return DistInfo(), resolved
    local_rank = _env_int("LOCAL_RANK", 0)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), resolved


def cleanup() -> None:
    """Destroy the process group if this module's :func:`setup` (or anyone) created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics; no-op in a single process).

    DDP copies them to the other ranks before each training forward, and that forward then updates each
    rank's copy with its own batch: after an epoch the ranks hold different statistics, and only rank 0's are
    saved.
    """
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over processes (``values`` itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    reduced = values.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


class ShardSampler(Sampler[int]):
    """Ordered, non-padding shard of a dataset for evaluation: process ``r`` gets indices ``r, r + W, ...``.

    Unlike ``DistributedSampler`` it never repeats a sample to even out the shards, so sums all-reduced
    over processes (metrics, dissection) equal those of a single process exactly.

    Args:
        length: dataset length.
        rank: this process's rank.
        world_size: number of processes.

    Raises:
        ValueError: fewer samples than processes (a process would see no data).
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}: expected 0 <= rank < world_size={world_size}")
        if length < world_size:
            raise ValueError(f"the evaluation split has {length} samples, fewer than the {world_size} processes")
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
