"""compute_responses under torch.distributed: two gloo ranks on halves of a loader equal one process on all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _distributed import free_port
from torch import nn

from imde.accumulators import DepthResponse
from imde.core.bins import DepthBins
from imde.experiments.dissect import compute_responses

WORLD_SIZE = 2


class _Net(nn.Module):
    max_depth = 10.0

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.enc = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.head = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(torch.relu(self.enc(x)))


def _batches() -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(11)
    return [{"image": torch.randn(1, 3, 10, 12, generator=gen), "depth": 0.5 + 9 * torch.rand(1, 1, 10, 12,
                                                                                            generator=gen)}
            for _ in range(5)]


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        shard = _batches()[rank::WORLD_SIZE]  # 3 and 2 batches
        responses = compute_responses(_Net(), shard, ["enc"], bins=DepthBins("nyu", 8))
        responses["enc"].save(Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()



@pytest.mark.slow  # ~25 s on 2 cores, mostly process start-up; DepthResponse.all_reduce has a default-suite test
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    single = compute_responses(_Net(), _batches(), ["enc"], bins=DepthBins("nyu", 8))["enc"]
    for rank in range(WORLD_SIZE):
        reduced = DepthResponse.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(reduced.counts, single.counts)
        torch.testing.assert_close(reduced.sums, single.sums, rtol=1e-12, atol=1e-12)
        assert reduced.num_images == 5
