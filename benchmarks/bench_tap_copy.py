"""Cost of the copy that ``LayerTap`` takes of every tapped layer's output.

``LayerTap`` clones each layer's output when the layer returns, so that in-place ops later in the forward
pass (``out += identity``, ``ReLU(inplace=True)``) cannot change what it hands out. This script compares,
on the same batch, a forward pass with ``LayerTap`` against the same pass with a bare hook that keeps a
reference to the output (the old behaviour, wrong under in-place ops):

1. eval mode, ``no_grad`` (dissection, explanation, atlases);
2. train mode, forward + backward of the sum of the tapped features (the selectivity losses' case: the copy
   is in the autograd graph).

The two variants alternate after a warm-up so that drifting machine load hits both alike; medians are
reported.

Usage:
    .venv/bin/python benchmarks/bench_tap_copy.py                          # mff_resnet18 + fcn_resnet50, CPU
    .venv/bin/python benchmarks/bench_tap_copy.py --batch 8 --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import imde.models
from imde.hooks import LayerTap
from imde.utils.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import _alternate  # noqa: E402  (one timing method for every benchmark)


class BareTap(LayerTap):
    """``LayerTap`` whose hooks keep the output tensor itself, without the copy (wrong under in-place ops)."""

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self.features[name] = output

        return hook


def _step(model: nn.Module, tap_cls: type[LayerTap], layers: list[str], x: torch.Tensor, train: bool) -> None:
    model.train(train)
    with torch.set_grad_enabled(train), tap_cls(model, layers) as tap:
        model(x)
        if train:
            sum(f.float().sum() for f in tap.features.values()).backward()
            model.zero_grad(set_to_none=True)


def _models() -> dict[str, tuple[nn.Module, list[str]]]:
    mff = imde.models.create("mff_resnet18")
    out = {"mff_resnet18 (D, MFF, Rconv0, Rconv1)": (mff, [info.name for info in mff.unit_info])}
    try:
        from torchvision.models.segmentation import fcn_resnet50
    except ImportError:  # torchvision is optional
        return out
    fcn = fcn_resnet50(num_classes=1, weights=None, weights_backbone=None)
    bn3 = [name for name, _ in fcn.named_modules() if name.startswith("backbone.layer") and name.endswith(".bn3")]
    out[f"fcn_resnet50 (all {len(bn3)} bottleneck bn3)"] = (fcn, bn3)
    return out


def run(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, *args.size, device=device)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads "
          f"{torch.get_num_threads()}, device {device}, batch {args.batch} at {args.size[0]}x{args.size[1]}, "
          f"median of {args.repeats}")
    print("| model (tapped layers) | mode | bare hook (s) | LayerTap with copy (s) | overhead |")
    print("|---|---|---|---|---|")
    for label, (model, layers) in _models().items():
        model.to(device)
        for mode, train in (("eval, no_grad", False), ("train, fwd + bwd", True)):
            bare = functools.partial(_step, model, BareTap, layers, x, train)
            tap = functools.partial(_step, model, LayerTap, layers, x, train)
            t_bare, t_tap = (statistics.median(t) for t in _alternate(bare, tap, args.repeats, device))
            print(f"| {label} | {mode} | {t_bare:.4f} | {t_tap:.4f} | {100 * (t_tap / t_bare - 1):+.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(228, 304))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
