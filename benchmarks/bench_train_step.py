"""Training throughput of a small depth network on CPU: memory layout, threads, and trainings side by side.

One training step is what ``imde train`` does per batch: forward, the model's own loss, optionally the
assign term (Eq. 5-6) on two layers, backward, Adam. Measured configurations (images per second, all
processes together):

- ``contiguous`` / ``channels_last`` model weights (``train.channels_last``), with ``--threads`` intra-op
  threads, one process;
- ``P x 1 thread``: ``P`` processes (``--processes``) each training its own copy with one thread and the
  given layout at the same time, as ``imde study`` does with ``train_workers: P``.

Every configuration runs ``--steps`` timed steps after ``--warmup`` untimed ones, on fixed random batches;
the best of ``--repeats`` rounds is reported. Last, the precision of each layout: the relative distance of the
weight gradients of one float32 step (batch of 4, the model's own loss, training mode) from the same step in
float64.

Usage:
    .venv/bin/python benchmarks/bench_train_step.py                      # the demo's model and sizes
    .venv/bin/python benchmarks/bench_train_step.py --model mff_tiny --d-units 16 --size 128 160 --threads 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from copy import deepcopy as copy_module
from typing import Any

import torch
import torch.nn.functional as F

import imde.models
from imde.hooks import LayerTap
from imde.losses import create as create_loss
from imde.losses.selectivity import AssignLoss

LAYERS = ("D", "MFF")


def _steps_per_second(args: dict[str, Any]) -> float:
    """Best steps/s over ``repeats`` rounds of ``steps`` steps, in this process with ``threads`` threads."""
    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    model = imde.models.create(args["model"], d_units=args["d_units"])
    if args["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    base_loss = create_loss(model.default_loss)
    assign = AssignLoss(num_bins=args["d_units"], lam=1.0) if args["assign"] else None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    height, width = args["size"]
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(args["batch"], 3, height, width, generator=gen)
    depth = 0.8 + 9.0 * torch.rand(args["batch"], 1, height, width, generator=gen)

    def step(tap: LayerTap) -> None:
        pred = model(image)
        target = F.interpolate(depth, size=pred.shape[-2:], mode="nearest")
        loss = base_loss(pred, target)
        if assign is not None:
            loss = loss + assign({name: tap.features[name] for name in LAYERS}, depth)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    best = float("inf")
    with LayerTap(model, list(LAYERS)) as tap:
        for _ in range(args["warmup"]):
            step(tap)
        for _ in range(args["repeats"]):
            start = time.perf_counter()
            for _ in range(args["steps"]):
                step(tap)
            best = min(best, (time.perf_counter() - start) / args["steps"])
    return 1.0 / best


def _gradient_error(args: dict[str, Any], channels_last: bool) -> float:
    """``|g32 - g64| / |g64|`` over all weight gradients of one step, float32 in the given layout vs float64."""
    torch.manual_seed(0)
    model = imde.models.create(args["model"], d_units=args["d_units"]).train()
    base_loss = create_loss(model.default_loss)
    height, width = args["size"]
    gen = torch.Generator().manual_seed(2)
    image = torch.randn(4, 3, height, width, generator=gen)
    depth = 0.8 + 9.0 * torch.rand(4, 1, height, width, generator=gen)
    grads = []
    for dtype, layout in ((torch.float64, torch.contiguous_format),
                          (torch.float32, torch.channels_last if channels_last else torch.contiguous_format)):
        copy = copy_module(model).to(dtype=dtype, memory_format=layout)
        pred = copy(image.to(dtype))
        base_loss(pred, F.interpolate(depth.to(dtype), size=pred.shape[-2:], mode="nearest")).backward()
        grads.append(torch.cat([p.grad.double().flatten() for p in copy.parameters()]))
    reference, measured = grads
    return float((measured - reference).norm() / reference.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mff_tiny", help="registered model name (default: mff_tiny)")
    parser.add_argument("--d-units", type=int, default=8, help="units of D and MFF (default: 8, the demo's)")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 80), metavar=("H", "W"),
                        help="input size (default: 64 80, the demo's)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default: 16)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one-process runs (default: 2)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the side-by-side runs (default: 2)")
    parser.add_argument("--no-assign", action="store_true", help="leave out the assign term")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best is reported (default: 3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    common = {"model": args.model, "d_units": args.d_units, "size": tuple(args.size), "batch": args.batch,
              "assign": not args.no_assign, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats}
    rows = []
    for channels_last in (False, True):
        layout = "channels_last" if channels_last else "contiguous"
        for threads in sorted({1, args.threads}):
            rate = _steps_per_second({**common, "channels_last": channels_last, "threads": threads})
            setup = f"1 process x {threads} thread{'s' * (threads > 1)}"
            rows.append({"layout": layout, "setup": setup, "img_per_s": rate * args.batch})
        jobs = [{**common, "channels_last": channels_last, "threads": 1}] * args.processes
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            rates = pool.map(_steps_per_second, jobs)
        rows.append({"layout": layout, "setup": f"{args.processes} processes x 1 thread",
                     "img_per_s": sum(rates) * args.batch})
    print(f"{args.model} (d_units={args.d_units}), batch {args.batch} at {args.size[0]}x{args.size[1]}, "
          f"{'with' if common['assign'] else 'without'} the assign term; torch {torch.__version__}, "
          f"{platform.machine()}, {multiprocessing.cpu_count()} cores")
    print(f"{'layout':<14} {'setup':<26} {'images/s':>9}")
    for row in rows:
        print(f"{row['layout']:<14} {row['setup']:<26} {row['img_per_s']:>9.1f}")
    errors = {layout: _gradient_error(common, layout == "channels_last") for layout in ("contiguous", "channels_last")}
    print("weight-gradient distance from float64 (one step, batch 4): "
          + ", ".join(f"{layout} {error:.1e}" for layout, error in errors.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "rows": rows, "gradient_error": errors}, handle, indent=1)


if __name__ == "__main__":
    main()
