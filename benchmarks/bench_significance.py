"""Cost of the statistics: dissection with bootstrap and permutation replicates against the plain dissection.

Over the same images (eval mode, random weights), ``imde.experiments.dissect.compute_responses`` of two layers
with ``bootstrap=0, permutations=0`` (today's dissection) against ``bootstrap=R, permutations=P`` (the per-image
and per-pair sums of Eq. 1, R Poisson-weighted replicates and P deranged replicates), alternating after a
warm-up; medians are compared. Because a loaded machine makes the difference of two whole dissections noisy, the
added work is also timed alone: the layers' features are captured once, then the Eq. 1 accumulation of all the
batches runs plain and with the replicates, alternating. Also reported: the replicate memory of every layer, the time of
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


def _parse() -> argparse.Namespace:
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
    return parser.parse_args()


def _alternate(plain: Any, stats: Any, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Warm both up, then time them alternately ``repeats`` times each."""
    plain(), stats()
    times: dict[str, list[float]] = {"plain": [], "stats": []}
    for _ in range(repeats):
        times["plain"].append(_time(plain, device))
        times["stats"].append(_time(stats, device))
    return times


def _features(model: torch.nn.Module, batches: list[dict[str, Any]], layers: list[str],
              device: torch.device) -> list[tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]]:
    out = []
    with torch.no_grad(), LayerTap(model, layers) as tap:
        for batch in batches:
            run_model(model, batch, device)
            out.append(({name: tap.features[name] for name in layers}, batch["depth"].to(device), batch["name"]))
    return out


def _accumulate(features: list[tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]],
                replicate_dtype: torch.dtype = torch.float32, **kwargs: int) -> dict[str, imde.DepthResponse]:
    accumulators: dict[str, imde.DepthResponse] = {}
    for maps, depth, keys in features:
        for name, tensor in maps.items():
            if name not in accumulators:
                edges = imde.dataset_edges("nyu", min(64, tensor.shape[1]))
                accumulators[name] = imde.DepthResponse(tensor.shape[1], edges, replicate_dtype=replicate_dtype,
                                                        **kwargs)
            accumulators[name].update(tensor, depth, keys=keys)
    return accumulators


def _layer_costs(features: list[Any], replicated: dict[str, int], device: torch.device) -> dict[str, Any]:
    """Replicate memory, ``significance()`` time and the float32 replicates' rounding of every layer."""
    single, double = _accumulate(features, **replicated), _accumulate(features, torch.float64, **replicated)
    layers = {}
    for name, resp in single.items():
        reference = double[name].boot_sums
        rounding = float((resp.boot_sums.double() - reference).abs().max() / reference.abs().max())
        states = resp.state_dict()
        replicate_bytes = sum(states[key].numel() * states[key].element_size()
                              for key in ("boot_sums", "boot_counts", "null_sums") if key in states)
        layers[name] = {"units": resp.num_units, "bins": resp.num_bins, "replicate_MB": replicate_bytes / 2**20,
                        "significance_s": _time(resp.significance, device), "float32_relative_rounding": rounding}
    return layers


def main() -> None:  # noqa: D103
    args = _parse()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = imde.models.create(args.model, pretrained=False).to(device).eval()
    batches = _batches(args.images, args.batch, tuple(args.size), torch.Generator().manual_seed(0))
    replicated = {"bootstrap": args.bootstrap, "permutations": args.permutations, "seed": 0}
    whole = _alternate(lambda: compute_responses(model, batches, args.layers, device=device),
                       lambda: compute_responses(model, batches, args.layers, device=device, **replicated),
                       args.repeats, device)
    features = _features(model, batches, args.layers, device)
    alone = _alternate(lambda: _accumulate(features), lambda: _accumulate(features, **replicated),
                       max(args.repeats, 5), device)
    plain_s, stats_s = statistics.median(whole["plain"]), statistics.median(whole["stats"])
    report = {"model": args.model, "layers": _layer_costs(features, replicated, device), "images": args.images,
              "batch": args.batch, "size": args.size, "bootstrap": args.bootstrap,
              "permutations": args.permutations, "dissection_plain_s": plain_s, "dissection_stats_s": stats_s,
              "dissection_times": whole, "accumulation_plain_s": statistics.median(alone["plain"]),
              "accumulation_stats_s": statistics.median(alone["stats"]), "accumulation_times": alone,
              "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.machine()}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
