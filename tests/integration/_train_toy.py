"""A learnable toy for the training tests: depth is written into the image, a BN-free net reads it back.

``ToyDepthNet`` follows the model contract (``unit_info``, ``default_loss``, ``max_depth``, ``depth_preset``):
its layer ``feat`` (4 ReLU units, stride 1) can learn to be depth-selective, because the image's first
channel is ``depth / 10``. It has no BatchNorm, so a 2-process DDP run computes the same gradients as one
process. ``ToyDepthSet`` is an in-memory dataset of sample dicts with smooth depth ramps in (0.8, 9.6) m.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from imde.models import UnitInfo
from imde.training import TrainConfig

SIZE = (16, 20)


class ToyDepthNet(nn.Module):
    """image[:, :1] -> 1x1 conv (16) -> ReLU -> 1x1 conv (4) -> ReLU = ``feat`` -> 1x1 conv -> depth.

    The initial weights are fixed (independent of the global seed) and every unit starts alive.
    """

    unit_info = (UnitInfo("feat", 4, 1, False, "act"),)
    default_loss = "cspn_l1"
    max_depth = 10.0
    depth_preset = "nyu"

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Conv2d(1, 16, 1), nn.ReLU())
        self.feat = nn.Conv2d(16, 4, 1)
        self.act = nn.ReLU()
        self.head = nn.Conv2d(4, 1, 1)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # hidden unit j = relu(depth - t_j): a piecewise-linear basis, no dead units
            self.hidden[0].weight.fill_(10.0)
            self.hidden[0].bias.copy_(-torch.linspace(0.0, 9.0, 16))
            self.feat.weight.copy_(torch.rand(4, 16, 1, 1, generator=gen) * 0.2)
            self.feat.bias.zero_()
            self.head.weight.fill_(0.25)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.act(self.feat(self.hidden(x[:, :1]))))


class ToyDepthSet(Dataset[dict[str, Any]]):
    """``n`` samples: a random linear depth ramp per image, the image holds ``depth / 10`` in every channel."""

    def __init__(self, n: int, seed: int = 0, size: tuple[int, int] = SIZE) -> None:
        gen = torch.Generator().manual_seed(seed)
        height, width = size
        ys = torch.linspace(0, 1, height).view(height, 1)
        xs = torch.linspace(0, 1, width).view(1, width)
        self.samples = []
        for index in range(n):
            a, b, c = torch.rand(3, generator=gen).tolist()
            ramp = (a * ys + b * xs + c) / 3.0  # in [0, 1]
            depth = (0.8 + 8.8 * ramp).unsqueeze(0)
            image = (depth / 10.0).expand(3, height, width).clone()
            self.samples.append({"image": image, "depth": depth, "name": f"toy/{seed}_{index:03d}.png"})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.samples[index]


def toy_config(run_dir: str, **sections: Any) -> TrainConfig:
    """A CPU config for the toy: batch 4, no workers, no progress bars; ``sections`` override key by key."""
    base: dict[str, Any] = {
        "run_dir": run_dir,
        "device": "cpu",
        "seed": 0,
        "model": {"name": "toy"},
        "data": {"batch_size": 4, "eval_batch_size": 4, "num_workers": 0},
        "loss": {"interp": "none", "layers": ["feat"], "num_bins": 4},
        "optim": {"name": "adam", "lr": 1e-2},
        "train": {"epochs": 2, "log_every": 1, "progress": False},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return TrainConfig.from_yaml_dict(base)
