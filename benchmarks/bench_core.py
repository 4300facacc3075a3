"""Benchmark the core statistics against the straightforward per-image, per-bin loops, on identical tensors.

Times ``DepthResponse.update`` (Eq. 1) and ``AssignLoss`` forward + backward (Eq. 5) against the loop
implementations in ``tests/_reference.py`` (the way the authors' public code computes them: digitise bin by
bin, upsample, then select each bin's pixels image by image), checks that both give the same numbers,
and measures the overhead of dissecting two layers of a real model relative to a plain forward pass.

Usage (the numbers in docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_core.py               # torch's default thread count
    .venv/bin/python benchmarks/bench_core.py --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _reference import loop_digitize, loop_layer_selectivity, loop_response_sums  # noqa: E402
from imde.accumulators import DepthResponse  # noqa: E402
from imde.core.bins import DepthBins, assign_bins  # noqa: E402
from imde.hooks import LayerTap  # noqa: E402
from imde.losses.selectivity import AssignLoss  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--feature-size", type=int, nargs=2, default=(114, 152), metavar=("H", "W"))
    parser.add_argument("--depth-size", type=int, nargs=2, default=(228, 304), metavar=("H", "W"))
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of a fast path per round (best reported)")
    parser.add_argument(
        "--loop-repeats",
        type=int,
        default=3,
        help="rounds: timed runs of the slow loop, each after --repeats fast runs",
    )
    parser.add_argument(
        "--depth",
        choices=("smooth", "random"),
        default="smooth",
        help="smooth synthetic scenes (like real depth) or i.i.d. uniform depth per pixel",
    )
    parser.add_argument("--model", default="mff_resnet18", help="model for the dissection overhead ('' to skip)")
    parser.add_argument("--model-batch", type=int, default=4)
    parser.add_argument("--model-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def make_depth(batch: int, size: tuple[int, int], kind: str, generator: torch.Generator) -> torch.Tensor:
    """``[B, 1, H, W]`` metres: tilted planes with noise and a few holes (``0``), like real depth (``"smooth"``), or
    every pixel its own uniform depth in [0.5, 9.5] (``"random"``: the worst case of the Eq. 1 sums, as every band
    of every map sees every bin, and of ``torch.bucketize``, whose branches it mispredicts)."""
    height, width = size
    if kind == "random":
        return 0.5 + 9.0 * torch.rand(batch, 1, height, width, generator=generator)
    rows = torch.linspace(0, 1, height).view(1, height, 1)
    cols = torch.linspace(0, 1, width).view(1, 1, width)
    slope = torch.rand(batch, 1, 1, generator=generator) * 6 + 2
    tilt = torch.rand(batch, 1, 1, generator=generator) * 2 - 1
    depth = 0.6 + slope * (1 - rows) + tilt * cols + 0.05 * torch.randn(batch, height, width, generator=generator)
    depth[torch.rand(batch, height, width, generator=generator) < 0.05] = 0.0
    return depth.clamp_min(0.0).unsqueeze(1)


def timed(fn: Callable[[], object], repeats: int, warmup: bool = True) -> tuple[float, object]:
    """Best (minimum) wall time of ``repeats`` runs (after one warm-up run by default), and the last result.

    The minimum is the least noisy estimate on a shared machine (other processes only ever add time).
    """
    result = fn() if warmup else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def timed_pair(fast: Callable[[], object], loop: Callable[[], object], args: argparse.Namespace) -> tuple:
    """Best times of ``fast`` and ``loop``, alternating: each round runs ``fast`` ``--repeats`` times, then ``loop``.

    Alternating makes a change of the machine's load hit both alike, so that their ratio stays meaningful.

    Returns:
        ``(fast seconds, loop seconds, fast result, loop result)``.
    """
    fast(), loop()  # warm-up (allocator, caches, the cached interpolation taps)
    t_fast = t_loop = math.inf
    for _ in range(args.loop_repeats):
        elapsed, fast_result = timed(fast, args.repeats, warmup=False)
        t_fast = min(t_fast, elapsed)
        elapsed, loop_result = timed(loop, 1, warmup=False)
        t_loop = min(t_loop, elapsed)
    return t_fast, t_loop, fast_result, loop_result


def rel_diff(fast: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |fast - ref| / max |ref|`` (relative to the scale of the reference)."""
    fast, ref = fast.detach().double(), ref.detach().double()
    return float((fast - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


def bench_update(acts: torch.Tensor, depth: torch.Tensor, edges: torch.Tensor, args: argparse.Namespace) -> dict:
    def fast() -> torch.Tensor:
        acc = DepthResponse(acts.shape[1], edges)
        acc.update(acts, depth)
        return acc.sums

    def loop() -> torch.Tensor:
        return loop_response_sums(acts, loop_digitize(depth, edges), edges.numel() - 1)[0]

    t_fast, t_loop, sums, ref = timed_pair(fast, loop, args)
    return {"fast_s": t_fast, "loop_s": t_loop, "rel_diff": rel_diff(sums, ref)}


def bench_loss(acts: torch.Tensor, depth: torch.Tensor, edges: torch.Tensor, args: argparse.Namespace) -> dict:
    num_bins = edges.numel() - 1
    loss_fn = AssignLoss(num_bins=num_bins)
    assigned = assign_bins(acts.shape[1], num_bins)

    def run(compute: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        def step() -> tuple[torch.Tensor, torch.Tensor]:
            feat = acts.detach().requires_grad_()  # a fresh leaf on the same storage: no copy timed
            loss = compute(feat)
            loss.backward()
            return loss.detach(), feat.grad

        return step

    fast = run(lambda feat: loss_fn({"L": feat}, depth))
    loop = run(lambda feat: -0.1 * loop_layer_selectivity(feat, loop_digitize(depth, edges), num_bins, assigned))
    t_fast, t_loop, (loss, grad), (ref_loss, ref_grad) = timed_pair(fast, loop, args)
    return {
        "fast_s": t_fast,
        "loop_s": t_loop,
        "rel_diff": rel_diff(loss, ref_loss),
        "grad_rel_diff": rel_diff(grad, ref_grad),
    }


def bench_model(args: argparse.Namespace, generator: torch.Generator) -> dict | None:
    """Forward pass of a real model alone vs with two layers tapped and accumulated into DepthResponse."""
    if not args.model:
        return None
    try:
        from imde.models import create
    except ImportError:
        return None
    model = create(args.model, pretrained=False).eval()
    layers = [info.name for info in model.unit_info][:2]
    height, width = model.input_size
    images = torch.randn(args.model_batch, 3, height, width, generator=generator)
    depth = make_depth(args.model_batch, (height, width), args.depth, generator)
    units = {info.name: info.num_units for info in model.unit_info}

    @torch.no_grad()
    def plain() -> None:
        model(images)

    @torch.no_grad()
    def dissect() -> None:
        accs = {
            name: DepthResponse(units[name], DepthBins(model.depth_preset, args.bins).for_units(units[name]).edges)
            for name in layers
        }
        with LayerTap(model, layers) as tap:
            model(images)
        for name, acc in accs.items():
            acc.update(tap.features[name], depth)

    plain()  # warm-up
    t_plain = t_dissect = math.inf
    for _ in range(args.model_repeats):  # alternate, so that changing machine load hits both alike
        t_plain = min(t_plain, timed(plain, 1, warmup=False)[0])
        t_dissect = min(t_dissect, timed(dissect, 1, warmup=False)[0])
    return {
        "model": args.model,
        "layers": layers,
        "batch": args.model_batch,
        "size": (height, width),
        "plain_s": t_plain,
        "dissect_s": t_dissect,
        "overhead": t_dissect / t_plain - 1,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    acts = torch.relu(torch.randn(args.batch, args.units, *args.feature_size, generator=generator))
    depth = make_depth(args.batch, tuple(args.depth_size), args.depth, generator)
    # the bins AssignLoss(num_bins) and a dissection use for this layer: N_b = min(N_b, K) (Sec. 4.2)
    edges = DepthBins("nyu", args.bins).for_units(args.units).edges
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), {torch.get_num_threads()} threads; "
        f"B={args.batch} K={args.units} features {tuple(args.feature_size)} "
        f"-> depth {tuple(args.depth_size)}, N_b={edges.numel() - 1}, depth={args.depth}"
    )
    rows = [
        ("DepthResponse.update", bench_update(acts, depth, edges, args)),
        ("AssignLoss fwd+bwd", bench_loss(acts, depth, edges, args)),
    ]
    print(f"| {'operation':<22} | {'loop (s)':>9} | {'imde (s)':>9} | {'speed-up':>8} | {'max rel. diff':>13} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 11}|{'-' * 10}|{'-' * 15}|")
    for name, row in rows:
        diff = f"{row['rel_diff']:.1e}" + (f" (grad {row['grad_rel_diff']:.1e})" if "grad_rel_diff" in row else "")
        print(
            f"| {name:<22} | {row['loop_s']:9.3f} | {row['fast_s']:9.4f} | "
            f"{row['loop_s'] / row['fast_s']:7.1f}x | {diff:>13} |"
        )
    model_row = bench_model(args, generator)
    if model_row is None:
        print("model overhead: skipped (no --model or imde.models unavailable)")
    else:
        print(
            f"\n{model_row['model']} forward, batch {model_row['batch']} at {model_row['size']}: "
            f"plain {model_row['plain_s']:.3f} s, with {' + '.join(model_row['layers'])} tapped and accumulated "
            f"{model_row['dissect_s']:.3f} s: overhead {100 * model_row['overhead']:.1f}%"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if any(not math.isfinite(row["rel_diff"]) or row["rel_diff"] > 1e-6 for _, row in rows):
        raise SystemExit("fast and loop results differ by more than 1e-6 relative")


if __name__ == "__main__":
    main()
