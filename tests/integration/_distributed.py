"""Helpers shared by the multi-process (gloo, CPU) tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


def free_port() -> int:
    """A free TCP port on the loopback interface for a process group's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def torchrun_process(rank: int, world_size: int, port: int, *, join: bool = True) -> Iterator[None]:
    """Be process ``rank`` of a gloo group as ``torchrun`` would start it (its environment variables, one thread).

    Args:
        join: join the group here; ``False`` leaves that to the code under test (the CLI joins it itself).
    """
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    if join:
        dist.init_process_group("gloo", init_method="env://")
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
