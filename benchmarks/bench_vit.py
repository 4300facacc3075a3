"""Cost of interpretability for a ViT depth network: Depth Anything V2 Small at 518x518.

1. Dissection of the four encoder blocks the DPT neck reads (``block2``, ``block5``, ``block8``, ``block11``, tokens
   laid out on the 37x37 patch grid) and the head's ``head_conv2``, next to a plain ``no_grad`` forward pass over
   the same images (``imde.experiments.dissect.compute_responses``, Eq. 1).
2. A metric fine-tuning step (forward, Depth Anything V2's SiLog, backward, optimiser step) with and without
   ``AssignLoss`` (Eq. 5-6) on the recipe's layers ``head_conv2`` and ``fusion3``.

The variants alternate after a warm-up and the medians are compared (``bench_overhead.py``'s method). Targets:
at most 5 % overhead for both.

Usage:
    .venv/bin/python benchmarks/bench_vit.py                                   # CPU, small counts
    .venv/bin/python benchmarks/bench_vit.py --device cuda --batch 4 --images 32 --repeats 10 --json vit.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import add_run_arguments, prepare_run, run_and_report  # noqa: E402

DISSECTED = ["block2", "block5", "block8", "block11", "head_conv2"]
TRAINED = ["head_conv2", "fusion3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="depth_anything_v2_small", help="registered ViT model")
    parser.add_argument("--dissect-layers", nargs="+", default=DISSECTED, help="layers dissected")
    parser.add_argument("--train-layers", nargs="+", default=TRAINED, help="layers of the assign term")
    add_run_arguments(parser, size=[518, 518], batch=2, images=4, eval_batch=2, repeats=3)  # batch 2: the release's
    args = parser.parse_args()
    model, device, train_batch, eval_batches = prepare_run(args, metric=True, max_depth=20.0)
    run_and_report(args, model, device, train_batch, eval_batches, args.dissect_layers, args.train_layers)


if __name__ == "__main__":
    main()
