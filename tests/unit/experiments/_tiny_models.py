"""Tiny models with analytically known responses, and in-memory batches, for the experiment tests.

The image carries the ground-truth depth in channel 0 (and deterministic noise in channel 1), so a 1x1
convolution can make a unit's activation an exact function of the depth.
"""

from __future__ import annotations

import torch
from torch import nn


class DepthInImage(nn.Module):
    """``feat[k] = relu(w_k * x0 * (1 + noise * x1))``; prediction ``sum_k c_k feat[k] / w_k = depth`` (noise 0).

    Layer ``"feat"`` (a dotted module name) has ``K`` units at full resolution; ``contributions`` ``c_k`` (sum 1)
    set how much each unit contributes to the prediction, so ablating a set ``S`` scales it by ``1 - sum_S c_k``.
    """

    max_depth = 10.0
    depth_preset = "nyu"

    def __init__(self, contributions: list[float], noise: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        units = len(contributions)
        weights = torch.arange(1, units + 1, dtype=torch.float32)
        self.mix = nn.Conv2d(3, units, 1, bias=False)
        self.gate = nn.Conv2d(3, units, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[:, 0, 0, 0] = weights
            self.gate.weight.zero_()
            self.gate.weight[:, 1, 0, 0] = noise
        self.feat = nn.ReLU()
        self.head = nn.Conv2d(units, 1, 1, bias=False)
        with torch.no_grad():
            self.head.weight[0, :, 0, 0] = scale * torch.tensor(contributions) / weights

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.feat(self.mix(x) * (1 + self.gate(x))))


class TwoBranchDepth(nn.Module):
    """Two :class:`DepthInImage` halves whose predictions add up: layers ``left.feat`` and ``right.feat``.

    With ``left + right`` contributions summing to 1, ablating any set of units of either layer scales the
    prediction by ``1 - sum c_k`` over the ablated units, as in one ``DepthInImage``.
    """

    max_depth = 10.0
    depth_preset = "nyu"

    def __init__(self, left: list[float], right: list[float]) -> None:
        super().__init__()
        self.left = DepthInImage(left)
        self.right = DepthInImage(right)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.left(x) + self.right(x)


class StridedNet(nn.Module):
    """A random conv net with a stride-2 layer ``"enc.1"`` (signed, 5 units) and a ReLU layer ``"act"``."""

    max_depth = 10.0
    depth_preset = "nyu"

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 5, 3, stride=2, padding=1))
        self.act = nn.ReLU()
        self.head = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.softplus(self.head(self.act(self.enc(x)))) + 0.5


def make_batches(num_batches: int, batch_size: int, size: tuple[int, int] = (12, 16), seed: int = 0,
                 invalid_fraction: float = 0.1) -> list[dict[str, object]]:
    """Batches with depth in (0.8, 9.5] m, ~10 % invalid (0) pixels, depth copied into image channel 0."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for index in range(num_batches):
        depth = 0.8 + 8.7 * torch.rand(batch_size, 1, *size, generator=gen)
        depth[torch.rand(depth.shape, generator=gen) < invalid_fraction] = 0.0
        noise = torch.rand(batch_size, 1, *size, generator=gen) * 2 - 1
        image = torch.cat([depth, noise, torch.rand(batch_size, 1, *size, generator=gen)], dim=1)
        names = [f"img{index}_{i}" for i in range(batch_size)]
        batches.append({"image": image, "depth": depth, "focal": torch.full((batch_size,), 500.0), "name": names})
    return batches


def rebatch(batches: list[dict[str, object]], batch_size: int) -> list[dict[str, object]]:
    """The same images regrouped into batches of ``batch_size``."""
    image = torch.cat([b["image"] for b in batches])
    depth = torch.cat([b["depth"] for b in batches])
    return [{"image": image[i:i + batch_size], "depth": depth[i:i + batch_size]}
            for i in range(0, image.shape[0], batch_size)]


