"""Two CPU processes (gloo) each accumulate half of a dataset; all_reduce equals one process over all of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _distributed import free_port, torchrun_process

from imde.accumulators import DepthResponse
from imde.core.bins import sid_edges

WORLD_SIZE = 2
EDGES = sid_edges(16, 0.75, 10.0)


def _dataset() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    activations = torch.randn(7, 6, 5, 7, generator=generator)
    depth = torch.rand(7, 1, 10, 14, generator=generator) * 11.0
    depth[3] = 0.0  # an image with no valid pixel
    return activations, depth


def _one_image_a_batch(rank: int, activations: torch.Tensor, depth: torch.Tensor) -> DepthResponse:
    acc = DepthResponse(6, EDGES)
    for index in range(rank, activations.shape[0], WORLD_SIZE):  # an uneven shard per rank, one image a batch
        acc.update(activations[index : index + 1], depth[index : index + 1])
    return acc


def _resampled(rank: int, activations: torch.Tensor, depth: torch.Tensor) -> DepthResponse:
    acc = DepthResponse(6, EDGES, bootstrap=20, permutations=10, seed=5)
    # rank 0: images 0-3 in batches of 2, rank 1: images 4-6 at once
    for lo, hi in [(0, 2), (2, 4)] if rank == 0 else [(4, 7)]:
        acc.update(activations[lo:hi], depth[lo:hi], keys=[f"img{i}" for i in range(lo, hi)])
    return acc


def _worker(rank: int, port: int, out_dir: str, accumulate: Callable[..., DepthResponse]) -> None:
    """Rank ``rank`` accumulates its share with ``accumulate``, all-reduces and saves ``<name><rank>.pt``."""
    with torchrun_process(rank, WORLD_SIZE, port):
        acc = accumulate(rank, *_dataset())
        acc.all_reduce()
        acc.save(Path(out_dir) / f"{accumulate.__name__}{rank}.pt")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_two_process_all_reduce_equals_single_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(free_port(), str(tmp_path), _one_image_a_batch), nprocs=WORLD_SIZE, join=True)
    activations, depth = _dataset()
    single = DepthResponse(6, EDGES)
    single.update(activations, depth)
    for rank in range(WORLD_SIZE):
        reduced = DepthResponse.load(tmp_path / f"_one_image_a_batch{rank}.pt")
        assert torch.equal(reduced.counts, single.counts)
        assert torch.allclose(reduced.sums, single.sums, rtol=1e-12, atol=1e-12)
        assert torch.allclose(reduced.mean_response(), single.mean_response(), rtol=1e-12, equal_nan=True)
        assert (reduced.num_images, reduced.num_empty_images, reduced.num_updates) == (7, 1, 7)
        assert reduced.num_empty_batches == 1


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_two_processes_give_the_replicates_of_one(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(free_port(), str(tmp_path), _resampled), nprocs=WORLD_SIZE, join=True)
    activations, depth = _dataset()
    single = DepthResponse(6, EDGES, bootstrap=20, permutations=10, seed=5)
    for lo, hi in [(0, 2), (2, 4), (4, 7)]:  # the same batches, in one process
        single.update(activations[lo:hi], depth[lo:hi], keys=[f"img{i}" for i in range(lo, hi)])
    expected = single.state_dict()
    for rank in range(WORLD_SIZE):
        reduced = DepthResponse.load(tmp_path / f"_resampled{rank}.pt")
        state = reduced.state_dict()
        for name in single.state_names:
            assert torch.allclose(state[name].double(), expected[name].double(), rtol=1e-6, atol=1e-5), name
        sig, ref = reduced.significance(), single.significance()
        assert torch.allclose(sig.ci_low, ref.ci_low, atol=1e-6) and torch.equal(sig.p_value, ref.p_value)
