"""Cost of the statistics: dissection with bootstrap and permutation replicates against the plain dissection.

Over the same images (eval mode, random weights), ``imde.experiments.dissect.compute_responses`` of two layers
with ``bootstrap=0, permutations=0`` (today's dissection) against ``bootstrap=R, permutations=P`` (the per-image
and per-pair sums of Eq. 1, R Poisson-weighted replicates and P deranged replicates), alternating after a
warm-up; medians are compared. Also reported: the replicate memory of every layer, the time of
``DepthResponse.significance()`` (intervals, p- and q-values) per layer, and the float32 replicates' rounding
(their relative difference from the same replicates accumulated in float64).

Usage:
    .venv/bin/python benchmarks/bench_significance.py                              # mff_resnet50, D + MFF, CPU
    .venv/bin/python benchmarks/bench_significance.py --model mff_tiny --size 64 80 --images 16
    .venv/bin/python benchmarks/bench_significance.py --device cuda --images 64 --batch 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch

import imde.models
from imde.experiments.dissect import compute_responses
from imde.hooks import LayerTap
from imde.models import run_model
from imde.utils.device import resolve_device


def _batches(count: int, batch: int, size: tuple[int, int], gen: torch.Generator) -> list[dict[str, Any]]:
    out = []
    for start in range(0, count, batch):
        depth = 0.5 + 9.0 * torch.rand(batch, 1, *size, generator=gen)
        out.append({"image": torch.randn(batch, 3, *size, generator=gen), "depth": depth,
                    "focal": torch.full((batch,), 518.8579), "name": [f"img{start + i}" for i in range(batch)]})
    return out


def _time(fn: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mff_resnet50")
    parser.add_argument("--layers", nargs="+", default=["D", "MFF"])
    parser.add_argument("--size", nargs=2, type=int, default=[228, 304])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = imde.models.create(args.model, pretrained=False).to(device).eval()
    batches = _batches(args.images, args.batch, tuple(args.size), torch.Generator().manual_seed(0))
    replicated = {"bootstrap": args.bootstrap, "permutations": args.permutations, "seed": 0}

    def plain() -> None:
        compute_responses(model, batches, args.layers, device=device)

    def with_stats() -> None:
        compute_responses(model, batches, args.layers, device=device, **replicated)

    plain(), with_stats()  # warm-up
    times: dict[str, list[float]] = {"plain": [], "stats": []}
    for _ in range(args.repeats):
        times["plain"].append(_time(plain, device))
        times["stats"].append(_time(with_stats, device))
    responses = compute_responses(model, batches, args.layers, device=device, **replicated)
    layers = {}
    for name, resp in responses.items():
        reference = imde.DepthResponse(resp.num_units, resp.edges, replicate_dtype=torch.float64, **replicated)
        for batch in batches:  # the same replicates in float64: the float32 state's rounding
            with torch.no_grad(), LayerTap(model, [name]) as tap:
                run_model(model, batch, device)
                reference.update(tap.features[name], batch["depth"].to(device), keys=batch["name"])
        difference = (resp.boot_sums.double() - reference.boot_sums).abs().max()
        rounding = float(difference / reference.boot_sums.abs().max())
        seconds = _time(resp.significance, device)
        states = resp.state_dict()
        replicate_bytes = sum(states[key].numel() * states[key].element_size()
                              for key in ("boot_sums", "boot_counts", "null_sums"))
        layers[name] = {"units": resp.num_units, "bins": resp.num_bins, "replicate_MB": replicate_bytes / 2**20,
                        "significance_s": seconds, "float32_relative_rounding": rounding}
    plain_s, stats_s = statistics.median(times["plain"]), statistics.median(times["stats"])
    report = {"model": args.model, "layers": layers, "images": args.images, "batch": args.batch,
              "size": args.size, "bootstrap": args.bootstrap, "permutations": args.permutations,
              "plain_s": plain_s, "with_stats_s": stats_s, "extra_fraction": stats_s / plain_s - 1,
              "times": times, "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.machine()}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
