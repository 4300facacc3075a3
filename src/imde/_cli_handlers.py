"""What each ``imde`` subcommand does: parse nothing, print little, call the library (see :mod:`imde.cli`)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from imde.utils.config import parse_override

log = logging.getLogger("imde")


def _options(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML; dotted keys are not allowed here)."""
    options = {}
    for text in pairs:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise ValueError(f"option {text!r}: expected key=value with a plain key, e.g. list_file=test.txt")
        options[keys[0]] = value
    return options


def _out(args: argparse.Namespace, config: Any, default: str) -> Path:
    return Path(args.out) if args.out else Path(config.run_dir) / default


def _session(args: argparse.Namespace, distributed: bool = False) -> Any:
    from imde.tasks import open_session

    return open_session(args.source, args.overrides, checkpoint=args.checkpoint, device=args.device,
                        distributed=distributed)


def cmd_data_render(args: argparse.Namespace) -> int:
    """``imde data render``."""
    from imde.data import create
    from imde.data.rendered import generate, save_contact_sheet

    options = {"size": tuple(args.size), "num_train": args.num_train, "num_test": args.num_test, "seed": args.seed,
               "camera": args.camera, "materials": args.materials}
    generate(args.root, **options)
    sheet = save_contact_sheet(create("rendered", args.root, "test", **options), Path(args.root) / "contact_sheet.png",
                               n=min(16, args.num_test))
    print(f"rendered {args.num_train} train + {args.num_test} test images into {args.root}; contact sheet {sheet}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    """``imde data show``: counts, shapes, depth range, and a contact sheet."""
    import torch

    from imde.data import create
    from imde.data.rendered import cached_options, save_contact_sheet

    options = _options(args.options)
    if args.name == "rendered":  # show what was rendered there, never render
        options = {**cached_options(args.root), **options, "generate": False}
    dataset = create(args.name, args.root, args.split, **options)
    count = len(dataset)  # type: ignore[arg-type]
    if count == 0:
        raise ValueError(f"dataset {args.name!r} at {args.root!r}: the {args.split} split is empty")
    sample = dataset[0]
    depth = sample["depth"]
    valid = depth[torch.isfinite(depth) & (depth > 0)]
    print(f"{args.name} {args.split}: {count} samples; image {tuple(sample['image'].shape)}, depth "
          f"{tuple(depth.shape)}; first sample {sample['name']!r}: depth {float(valid.min()):.2f}-"
          f"{float(valid.max()):.2f} m, {100 * valid.numel() / depth.numel():.1f}% valid")
    out = Path(args.out or f"{args.name}_{args.split}.png")
    print(f"contact sheet: {save_contact_sheet(dataset, out, n=min(args.count, count))}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``imde train``."""
    from imde.training import TrainConfig, train

    overrides = [*args.overrides, *([f"device={args.device}"] if args.device else [])]
    config = TrainConfig.from_yaml(args.config, overrides)
    result = train(config, resume=args.resume)
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``imde eval``."""
    from imde.tasks import evaluate_run

    session = _session(args, distributed=True)  # under torchrun: each process a shard, the sums all-reduced
    result = evaluate_run(session, args.split, max_batches=args.max_batches, progress=session.info.is_main)
    if session.info.is_main:
        print(result.to_table())
        path = _out(args, session.config, "eval") / f"{args.split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        result.to_json(path)
        print(f"written {path}")
    return 0


def cmd_dissect(args: argparse.Namespace) -> int:
    """``imde dissect``."""
    from dataclasses import replace

    from imde.tasks import dissect_run

    session = _session(args, distributed=True)  # under torchrun: each process a shard, the sums all-reduced
    if args.num_bins is not None:
        session.config = replace(session.config, loss=replace(session.config.loss, num_bins=args.num_bins))
    out = _out(args, session.config, "dissect")
    main = session.info.is_main
    result = dissect_run(session, args.split, args.layers, max_batches=args.max_batches, progress=main,
                         out_dir=out if main else None, bootstrap=args.bootstrap,
                         permutations=args.permutations, seed=args.seed)
    if not main:
        return 0
    for split, per_layer in result.layers.items():
        for name, layer in per_layer.items():
            sig = layer.significance
            ci = "" if sig is None or not sig.bootstrap else f" [{sig.layer_ci[0]:.4f}, {sig.layer_ci[1]:.4f}]"
            found = "" if sig is None or not sig.permutations else f", {sig.num_significant} selective at q < 0.05"
            print(f"{split:>6} {name:>10}: selectivity {layer.mean_selectivity:.4f}{ci} (random baseline "
                  f"{layer.random_baseline:.4f}, {int(layer.dead.sum())} dead of {layer.num_units}{found})")
    print(f"written {out}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """``imde ablate``."""
    from imde.tasks import ablate_run
    from imde.viz.plots import plot_ablation, save_figure

    session = _session(args)
    out = _out(args, session.config, "ablation")
    result = ablate_run(session, args.layers, step=args.step, max_batches=args.max_batches, progress=True,
                        out_dir=out)
    save_figure(plot_ablation(result), out / "ablation.png")
    for units, most, least in zip(result.units, result.most_selective_first, result.least_selective_first):
        print(f"{units:4d} units ablated: delta1 {most:.4f} (most selective first)  {least:.4f} (least first)")
    print(f"written {out}")
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    """``imde correct``."""
    from imde.tasks import correct_run

    session = _session(args)
    result = correct_run(session, [args.layer] if args.layer else None, max_batches=args.max_batches,
                         progress=True, out_dir=_out(args, session.config, "correction"))
    for metric in ("delta1", "rms"):
        print(f"{metric}: {result.before[metric]:.4f} -> {result.after[metric]:.4f}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """``imde explain``."""
    from imde.tasks import explain_run
    from imde.viz.plots import plot_explain, save_figure

    session = _session(args)
    out = _out(args, session.config, "explain")
    try:
        result = explain_run(session, args.layer, index=args.index, epsilon=args.epsilon,
                             max_batches=args.max_batches, out_dir=out)
    except ValueError as err:
        if str(err).startswith("index="):
            raise ValueError(f"--index {args.index}: {str(err).split(': ', 1)[1]}") from None
        raise
    save_figure(plot_explain(result), out / "explain.png")
    for name, case in (("clean", result.clean), ("adversarial", result.adversarial)):
        print(f"{name:>11}: {100 * case.error_fraction:.1f}% error pixels, top bin {case.top_bin}, units {case.units}")
    print(f"written {out}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """``imde study``."""
    from imde.paper.config import load_study_config
    from imde.paper.pipeline import run_study, step_status

    config = load_study_config(args.config, args.overrides, smoke=args.smoke)
    if args.list:
        for name, done in step_status(config):
            print(f"{'done' if done else '    '}  {name}")
        return 0
    results = run_study(config, force=tuple(args.force))
    if not results.get("claims_evaluated", True):
        from imde.paper.steps import CLAIMS_OFF

        print(f"{config.out}: claims not evaluated ({CLAIMS_OFF}); {results['seconds']:.0f} s of steps")
        return 0
    held = [claim for claim in results["claims"] if claim["holds"]]
    print(f"{config.out}: {len(held)}/{len(results['claims'])} claims hold; {results['seconds']:.0f} s of steps")
    for claim in results["claims"]:
        interval = "" if not claim.get("verdict") else (
            f" [{claim['ci_low']:.4f}, {claim['ci_high']:.4f}] {claim['verdict']}")
        print(f"  [{'ok' if claim['holds'] else 'FAIL'}] {claim['claim']}: {claim['value']:.4f}{interval}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``imde report``."""
    from imde.paper.report import build_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir={args.run_dir!r}: no such folder")
    print(f"written {build_report(run_dir)}")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    """``imde claims``: every claim measured afresh on each run, one column per run."""
    from imde.paper.claims import claims_across_runs, claims_markdown
    from imde.paper.report import read_results
    from imde.utils.io import atomic_write_text

    repeated = sorted({source for source in args.runs if args.runs.count(source) > 1})
    if repeated:
        raise ValueError(f"run(s) {', '.join(repeated)} given more than once")
    runs = {source: read_results(source) for source in args.runs}
    table = claims_markdown(list(runs), claims_across_runs(runs))
    print(table, end="")
    if args.out:
        atomic_write_text(Path(args.out), table)
        print(f"written {args.out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``imde models``: names, parameter counts and declared layers, built on the meta device (no memory)."""
    import torch

    from imde.models import create, list_models, model_options
    from imde.training.config import TrainConfig, default_layers

    names = args.names or list_models()
    unknown = [name for name in names if name not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; registered: {', '.join(list_models())}")
    for name in names:
        with torch.device("meta"):
            model = create(name)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params:,} parameters, input {model.input_size}, preset {model.depth_preset}, "
              f"loss {model.default_loss}")
        options = ", ".join(f"{key}={value!r}" for key, value in model_options(name).items())
        print(f"  options (model.kwargs): {options or 'none'}")
        print(f"  default layers: {' '.join(default_layers(TrainConfig(), model))}")
        for info in model.unit_info:
            sign = "signed" if info.signed else ">= 0"
            print(f"    {info.name:<8} {info.num_units:4d} units  stride {info.stride:>4g}  {sign:<6}  {info.module}")
    return 0
