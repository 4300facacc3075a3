"""Cost of interpretability: the assign term in a training step, and dissection next to a plain forward pass.

1. Training step on one fixed batch: forward + the model's original loss + backward + optimiser step, versus
   the same step with ``AssignLoss`` (Eq. 5-6) on two layers captured by ``LayerTap``.
2. Over the same N images in eval mode: a plain ``no_grad`` forward pass versus
   ``imde.experiments.dissect.compute_responses`` of two layers (Eq. 1 sums on the same forward pass).

The two variants alternate (A, B, A, B, ...) after a warm-up so that drifting machine load hits both alike;
the medians are compared. Targets from issue 5: at most 5 % overhead for MFF on CPU.

Usage:
    .venv/bin/python benchmarks/bench_overhead.py                       # MFF-ResNet50, 228x304, CPU
    .venv/bin/python benchmarks/bench_overhead.py --model mff_tiny --size 128 160 --repeats 5
    .venv/bin/python benchmarks/bench_overhead.py --device cuda --batch 8 --images 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from bench_core import make_depth

import imde.models
from imde.accumulators import DepthResponse, update_responses
from imde.core.bins import DEPTH_PRESETS, DepthBins
from imde.experiments.dissect import compute_responses
from imde.hooks import LayerTap
from imde.losses import create as create_loss
from imde.losses.selectivity import AssignLoss
from imde.utils.device import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _alternate(a: Callable[[], None], b: Callable[[], None], repeats: int, device: torch.device) -> tuple[list, list]:
    """Warm both up once, then time them alternately ``repeats`` times each."""
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - start)
    return times


def _batch(model: torch.nn.Module, batch: int, size: tuple[int, int], gen: torch.Generator,
           depth: str = "random") -> dict[str, Any]:
    height, width = size
    depth_map = make_depth(batch, size, depth, gen)  # bench_core's ground truth
    sample = {"image": torch.randn(batch, 3, height, width, generator=gen), "depth": depth_map,
              "focal": torch.full((batch,), 518.8579)}
    if getattr(model, "in_chans", 3) == 4:
        sample["sparse_depth"] = torch.where(torch.rand(depth_map.shape, generator=gen) < 0.01, depth_map, 0.0)
    return sample


def bench_training_step(model: torch.nn.Module, batch: dict[str, Any], layers: list[str], device: torch.device,
                        repeats: int) -> dict[str, float]:
    """Median seconds of a plain training step and of the same step plus ``AssignLoss`` on ``layers``."""
    base_loss = create_loss(model.default_loss)
    alpha, beta = DEPTH_PRESETS[getattr(model, "depth_preset", "nyu")]
    assign = AssignLoss(bins=DepthBins("nyu", 64), alpha=alpha, beta=beta, lam=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    model.train()

    def step(with_assign: bool) -> None:
        tap = LayerTap(model, layers) if with_assign else nullcontext()
        with tap:
            pred = imde.models.run_model(model, batch, device)
            depth = batch["depth"].to(device)
            target = F.interpolate(depth, size=pred.shape[-2:], mode="nearest")
            loss = base_loss(pred, target)
            if with_assign:
                loss = loss + assign({name: tap.features[name] for name in layers}, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    plain, with_term = _alternate(lambda: step(False), lambda: step(True), repeats, device)
    result = _summary(plain, with_term)
    result["term_alone_s"] = _term_alone(model, batch, layers, assign, device, repeats)
    result["term_alone_pct"] = 100.0 * result["term_alone_s"] / result["plain_s"]
    return result


def _term_alone(model: torch.nn.Module, batch: dict[str, Any], layers: list[str], assign: AssignLoss,
                device: torch.device, repeats: int) -> float:
    """Median seconds of ``AssignLoss`` forward + backward on leaf features shaped like the model's layers.

    Less sensitive to machine load than the difference of two full steps: it times only the added work.
    """
    with torch.no_grad(), LayerTap(model, layers) as tap:
        pred = imde.models.run_model(model, batch, device)
    target = F.interpolate(batch["depth"].to(device), size=pred.shape[-2:], mode="nearest")
    features = {name: tap.features[name].detach().clone().requires_grad_(True) for name in layers}

    def term() -> None:
        assign(features, target).backward()

    times, _ = _alternate(term, lambda: None, repeats, device)
    return statistics.median(times)


def bench_dissection(model: torch.nn.Module, batches: list[dict[str, Any]], layers: list[str], device: torch.device,
                     repeats: int) -> dict[str, float]:
    """Median seconds of a plain eval forward over ``batches`` and of dissecting ``layers`` over them."""
    model.eval()
    preset = getattr(model, "depth_preset", "nyu")

    def forward() -> None:
        with torch.no_grad():
            for batch in batches:
                imde.models.run_model(model, batch, device)

    def dissect() -> None:
        compute_responses(model, batches, layers, bins=DepthBins(preset), device=device)

    plain, with_dissection = _alternate(forward, dissect, repeats, device)
    result = _summary(plain, with_dissection)
    result["sums_alone_s"] = _sums_alone(model, batches, layers, DepthBins(preset), device, repeats)
    result["sums_alone_pct"] = 100.0 * result["sums_alone_s"] / result["plain_s"]
    return result


def _sums_alone(model: torch.nn.Module, batches: list[dict[str, Any]], layers: list[str], bins: DepthBins,
                device: torch.device, repeats: int) -> float:
    """Median seconds of the Eq. 1 accumulation alone: ``update_responses`` over features captured once.

    Like :func:`_term_alone`, it times only the added work (not the taps' copies nor the depth check).
    """
    captured = []
    for batch in batches:
        _, features = imde.models.run_with_features(model, batch, layers, device=device)
        captured.append((list(features.values()), batch["depth"].to(device)))

    def accumulate() -> None:
        first = captured[0][0]
        responses = [DepthResponse(m.shape[1], bins.for_units(m.shape[1]).edges, device=device) for m in first]
        for maps, depth in captured:
            update_responses(responses, maps, depth)

    times, _ = _alternate(accumulate, lambda: None, repeats, device)
    return statistics.median(times)


def _summary(plain: list[float], other: list[float]) -> dict[str, float]:
    a, b = statistics.median(plain), statistics.median(other)
    return {"plain_s": a, "with_s": b, "overhead_pct": 100.0 * (b / a - 1.0), "plain_min_s": min(plain),
            "with_min_s": min(other), "repeats": len(plain)}


def add_run_arguments(parser: argparse.ArgumentParser, *, size: list[int], batch: int, images: int, eval_batch: int,
                      repeats: int) -> None:
    """The options every overhead benchmark takes (input size, batches, repetitions, threads, device, JSON)."""
    parser.add_argument("--size", nargs=2, type=int, default=size, metavar=("H", "W"), help="input size")
    parser.add_argument("--batch", type=int, default=batch, help=f"training batch size (default: {batch})")
    parser.add_argument("--images", type=int, default=images, help=f"images of the dissection pass (default: {images})")
    parser.add_argument("--eval-batch", type=int, default=eval_batch,
                        help=f"batch size of the dissection pass (default: {eval_batch})")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"timed repetitions of each variant (default: {repeats})")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--depth", choices=["random", "smooth"], default="random",
                        help="ground truth (bench_core.make_depth): per-pixel random depth, the sums' worst case "
                             "(default), or smooth scenes like real depth")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


def prepare_run(args: argparse.Namespace, **model_kwargs: Any) -> tuple[torch.nn.Module, torch.device, dict, list]:
    """Threads, device, the seeded model (``args.model`` with ``model_kwargs``), one training batch and the
    dissection pass's batches, as the options of :func:`add_run_arguments` ask."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = imde.models.create(args.model, **model_kwargs).to(device)
    size = tuple(args.size)
    train_batch = _batch(model, args.batch, size, gen, args.depth)
    eval_batches = [_batch(model, min(args.eval_batch, args.images - i), size, gen, args.depth)
                    for i in range(0, args.images, args.eval_batch)]
    return model, device, train_batch, eval_batches


def run_and_report(args: argparse.Namespace, model: torch.nn.Module, device: torch.device, train_batch: dict,
                   eval_batches: list, dissect_layers: list[str], train_layers: list[str]) -> dict[str, Any]:
    """Both measurements, printed and (with ``--json``) written; the options are :func:`add_run_arguments`'."""
    size = tuple(args.size)
    results = {
        "model": args.model, "size": list(size), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "dissection_layers": dissect_layers, "training_layers": train_layers,
        "dissection": bench_dissection(model, eval_batches, dissect_layers, device, args.repeats),
        "training_step": bench_training_step(model, train_batch, train_layers, device, args.repeats),
        "batch": args.batch, "images": args.images, "eval_batch": args.eval_batch, "depth": args.depth,
    }
    step, dis = results["training_step"], results["dissection"]
    print(f"{args.model} {size[0]}x{size[1]} on {device} ({results['device_name']}, {results['threads']} threads), "
          f"{args.depth} depth")
    print(f"{args.images} images, batch {args.eval_batch}: forward {dis['plain_s']:.3f} s, dissection of "
          f"{dissect_layers} {dis['with_s']:.3f} s -> overhead {dis['overhead_pct']:+.1f} % (median of "
          f"{args.repeats}); the sums alone {dis['sums_alone_s']:.4f} s = {dis['sums_alone_pct']:.1f} % of the forward")
    print(f"training step, batch {args.batch}: plain {step['plain_s']:.3f} s, with AssignLoss on {train_layers} "
          f"{step['with_s']:.3f} s -> overhead {step['overhead_pct']:+.1f} %; the term alone (forward + backward) "
          f"{step['term_alone_s']:.4f} s = {step['term_alone_pct']:.1f} % of the plain step")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mff_resnet50", help="registered model (default: mff_resnet50)")
    parser.add_argument("--layers", nargs=2, default=["D", "MFF"], help="two layers (default: D MFF)")
    add_run_arguments(parser, size=[228, 304], batch=2, images=8, eval_batch=4, repeats=5)
    args = parser.parse_args()
    model, device, train_batch, eval_batches = prepare_run(args, pretrained=False)
    run_and_report(args, model, device, train_batch, eval_batches, args.layers, args.layers)


if __name__ == "__main__":
    main()
