"""The core (bins, sums, selectivity, both losses, hooks, DepthResponse) works with torch and numpy alone.

A fresh interpreter refuses every optional dependency, then dissects a toy network through ``LayerTap`` and
``DepthResponse`` and backpropagates ``AssignLoss``; each number is checked against its value by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imde.utils.optional import require

SRC = Path(__file__).resolve().parents[2] / "src"
BLOCKED = ("matplotlib", "jinja2", "tensorboard", "pybullet", "h5py", "scipy", "timm", "torchvision", "PIL", "yaml",
           "tqdm", "transformers", "safetensors")

SCRIPT = r'''
import importlib.abc, json, sys

BLOCKED = tuple(sys.argv[1].split(","))


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"refused: {name}")
        return None


sys.meta_path.insert(0, Refuse())
import torch
from torch import nn

from imde import AssignLoss, DepthResponse, LayerTap, depth_selectivity, uniform_edges

# unit 0 = depth, unit 1 = 5 - depth, read from image channel 0; two pixels, 0.5 m (bin 0) and 2 m (bin 1)
net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Identity())
with torch.no_grad():
    net[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    net[0].bias.copy_(torch.tensor([0.0, 5.0]))
depth = torch.tensor([[[[0.5, 2.0]]]])
edges = uniform_edges(2, 1.0, 3.0)
response = DepthResponse(2, edges)
with torch.no_grad(), LayerTap(net, ["0"]) as tap:
    net(depth)
    response.update(tap.features["0"], depth)
mean = response.mean_response()
with LayerTap(net, ["0"]) as tap:
    net(depth)
    loss = AssignLoss(num_bins=2, alpha=1.0, beta=3.0, lam=0.1, edges_kind="uniform")(tap.features, depth)
loss.backward()
print(json.dumps({
    "mean": mean.tolist(), "ds": depth_selectivity(mean).tolist(), "loss": float(loss),
    "grad": net[0].weight.grad.view(-1).tolist(),
    "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED)),
}))
for part in ("imde.models", "imde.data"):
    try:
        __import__(part)
        print(json.dumps({part: "imported"}))
    except ImportError as err:
        print(json.dumps({part: str(err)}))
'''


def test_core_runs_without_the_optional_dependencies() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(BLOCKED)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    first, *parts = (json.loads(line) for line in done.stdout.splitlines())
    assert first["loaded"] == []
    # Eq. 1: unit 0 responds 0.5 / 2.0 in bins 0 / 1, unit 1 4.5 / 3.0; Eq. 2: (2 - 0.5) / 2.5, (4.5 - 3) / 7.5
    assert sum(first["mean"], []) == pytest.approx([0.5, 2.0, 4.5, 3.0])
    assert first["ds"] == pytest.approx([0.6, 0.2])
    # Eq. 5-6 with d_0 = 0, d_1 = 1: DS = -0.6 and -0.2, loss = -0.1 * mean = 0.04
    assert first["loss"] == pytest.approx(0.04)
    # d loss / d w_k by hand: unit 0 (R0 = w 0.5, R1 = w 2), DS = (R0 - R1) / (R0 + R1) is scale-free: 0;
    # unit 1 (R0 = 5 - 0.5 w, R1 = 5 - 2 w at w = 1): dDS/dw = (2 R0 R1' - 2 R1 R0') / (R0 + R1)^2
    r0, r1, d0, d1 = 4.5, 3.0, -0.5, -2.0
    dds = (d0 * (r0 + r1) - r0 * (d0 + d1) - (d1 * (r0 + r1) - r1 * (d0 + d1))) / (r0 + r1) ** 2
    assert first["grad"] == pytest.approx([0.0, -0.1 * dds / 2], abs=1e-7)
    # a part without its extra says which extra installs it
    messages = {name: text for part in parts for name, text in part.items()}
    assert "pip install 'imde[models]'" in messages["imde.models"]
    assert "pip install 'imde[data]'" in messages["imde.data"]


def test_require_names_the_extra() -> None:
    assert require("json", extra="viz") is json
    with pytest.raises(ImportError, match=r"no_such_module_x is needed for figures.*pip install 'imde\[viz\]'"):
        require("no_such_module_x", extra="viz")
    with pytest.raises(ValueError, match="extra='plots'"):
        require("json", extra="plots")
