"""The ``imde`` command line: one entry point, one subcommand per job, each a thin call into the library.

Bad input (a missing file, an unknown config key, a layer the model does not have) is printed as one line
``imde: error: ...`` with exit status 2; ``--debug`` shows the traceback instead. Heavy modules (torch
models, matplotlib) are imported inside the handlers so that ``imde --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from imde import __version__
from imde.errors import RunFolderBusyError, WeightsUnavailableError

EXIT_BAD_INPUT = 2
SPLITS = ("train", "test")

_EPILOG = """examples:
  imde study configs/demo.yaml                      # the whole paper story on the rendered data
  imde study configs/demo.yaml --smoke run_dir=runs/demo-smoke
  imde train configs/train/mff/resnet50_assign_d_mff.yaml data.root=/data/nyu
  imde dissect runs/demo/models/assign --split train test
  imde report runs/demo
  imde claims runs/demo runs/demo-s1 runs/demo-s2
  imde models mff_tiny
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], int] | None, summary: str, examples: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary, description=summary, epilog=f"examples:\n{examples}",
                            formatter_class=_formatter)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def _add_source(parser: argparse.ArgumentParser) -> None:
    """Arguments naming a trained model: a training run directory, or a config plus weights."""
    parser.add_argument("source", help="training run directory (config.yaml + checkpoints/) or a training config YAML")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the training config")
    parser.add_argument("--checkpoint", default="best",
                        help="'best', 'last' or a checkpoint / released weights file (default: best)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto; mps has no float64)")
    parser.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (quick looks)")


def _add_out(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", default=None, help=f"output folder (default: <run dir>/{default})")


def build_parser() -> argparse.ArgumentParser:
    """The ``imde`` argument parser with every subcommand."""
    from imde import _cli_handlers as h

    parser = argparse.ArgumentParser(
        prog="imde", formatter_class=_formatter, epilog=_EPILOG,
        description="Interpretable monocular depth estimation (You et al., ICCV 2021): dissect depth networks "
                    "by depth, train them to be depth-selective, and check what their units do.",
    )
    parser.add_argument("--version", action="version", version=f"imde {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = _add_command(sub, "data", None, "render or inspect datasets",
                        "  imde data render --root data/rendered\n  imde data show rendered data/rendered --split test")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    render = _add_command(data_sub, "render", h.cmd_data_render, "render the embedded RGB-D dataset (cached on disk)",
                          "  imde data render --root data/rendered --num-train 2000 --num-test 300")
    render.add_argument("--root", default="data/rendered", help="output folder (default: data/rendered)")
    render.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(128, 160), help="image size")
    render.add_argument("--num-train", type=int, default=2000, help="training images (default: 2000)")
    render.add_argument("--num-test", type=int, default=300, help="test images (default: 300)")
    render.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    render.add_argument("--camera", choices=("varied", "fixed"), default="varied",
                        help="camera rig: 'varied' height/tilt/lens per view (default) or 'fixed' (the demo's)")
    render.add_argument("--materials", choices=("random", "indoor"), default="random",
                        help="surfaces: 'random' pattern and colour on each (default) or 'indoor' (wooden floors, "
                             "painted walls, plaster ceilings; the demo's)")
    show = _add_command(data_sub, "show", h.cmd_data_show, "summarise a dataset and save a contact sheet",
                        "  imde data show rendered data/rendered --split test --out sheet.png\n"
                        "  imde data show nyu_bts /data/nyu list_file=/data/nyu/test.txt")
    show.add_argument("name", help="dataset name (rendered, nyu_hu_csv, nyu_bts, nyu_mat, nyu_h5, kitti_eigen)")
    show.add_argument("root", help="dataset root folder (or zip)")
    show.add_argument("options", nargs="*", metavar="key=value", help="dataset options, e.g. list_file=...")
    show.add_argument("--split", default="train", choices=SPLITS, help="train or test (default: train)")
    show.add_argument("--count", type=int, default=16, help="samples in the contact sheet (default: 16)")
    show.add_argument("--out", default=None, help="contact sheet PNG (default: <name>_<split>.png)")

    train = _add_command(sub, "train", h.cmd_train, "train a model from a YAML config",
                         "  imde train configs/train/mff/resnet50_assign_d_mff.yaml data.root=/data/nyu\n"
                         "  imde train configs/train/mff/resnet50_baseline.yaml run_dir=runs/r50 --resume")
    train.add_argument("config", help="training config YAML (may name a recipe and a base file)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=1e-3")
    train.add_argument("--resume", action="store_true", help="continue from run_dir/checkpoints/last.pt")
    train.add_argument("--device", default=None, help="auto, cpu or cuda (default: the config's)")

    ev = _add_command(sub, "eval", h.cmd_eval, "evaluate a trained model on a split (depth metrics)",
                      "  imde eval runs/demo/models/assign --split test")
    _add_source(ev)
    ev.add_argument("--split", default="test", choices=SPLITS, help="split to evaluate (default: test)")
    _add_out(ev, "eval")

    dissect = _add_command(sub, "dissect", h.cmd_dissect, "dissect layers by depth (Eq. 1-2; Tables 1, 4, 7)",
                           "  imde dissect runs/demo/models/assign --layers D MFF --split train test")
    _add_source(dissect)
    dissect.add_argument("--layers", nargs="+", default=None, help="layer names (default: the trained layers)")
    dissect.add_argument("--split", nargs="+", default=["test"], choices=SPLITS,
                         help="splits to dissect (default: test)")
    dissect.add_argument("--num-bins", type=int, default=None,
                         help="requested depth bins (default: the training config's loss.num_bins, 64 unless set)")
    dissect.add_argument("--bootstrap", type=int, default=0, metavar="R",
                         help="bootstrap replicates for intervals of every DS (default 0: none; e.g. 1000)")
    dissect.add_argument("--permutations", type=int, default=0, metavar="P",
                         help="permutation-null replicates for p/q-values (default 0: none; batches of >= 2 images)")
    dissect.add_argument("--seed", type=int, default=0, help="seed of the replicates (default: 0)")
    _add_out(dissect, "dissect")

    ablate = _add_command(sub, "ablate", h.cmd_ablate, "ablate units by selectivity, both orders (Fig. 2)",
                          "  imde ablate runs/demo/models/baseline --layers D MFF --step 4")
    _add_source(ablate)
    ablate.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                        help="layers whose units are ranked together and ablated (default: the trained layers)")
    ablate.add_argument("--step", type=int, default=4, help="units ablated between evaluations (default: 4)")
    _add_out(ablate, "ablation")

    correct = _add_command(sub, "correct", h.cmd_correct, "replace responses by their training means (Table 3)",
                           "  imde correct runs/demo/models/assign --layer D")
    _add_source(correct)
    correct.add_argument("--layer", default=None,
                         help="the one layer to correct (default: every trained layer, all at once)")
    _add_out(correct, "correction")

    explain = _add_command(sub, "explain", h.cmd_explain, "explain errors on an FGSM adversarial image (Fig. 8)",
                           "  imde explain runs/demo/models/assign --index 3 --epsilon 0.05")
    _add_source(explain)
    explain.add_argument("--layer", default=None, help="layer whose units are inspected (default: first trained)")
    explain.add_argument("--index", type=int, default=0, help="test image index (default: 0)")
    explain.add_argument("--epsilon", type=float, default=0.05, help="FGSM step (default: 0.05)")
    _add_out(explain, "explain")

    study = _add_command(sub, "study", h.cmd_study, "run the whole paper pipeline, resumably",
                         "  imde study configs/demo.yaml\n  imde study configs/demo.yaml --smoke run_dir=runs/smoke\n"
                         "  imde study configs/demo.yaml --force ablate_assign\n  imde study configs/demo.yaml --list")
    study.add_argument("config", help="study config YAML")
    study.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run_dir=runs/x")
    study.add_argument("--smoke", action="store_true",
                       help="the same pipeline at toy sizes: the config <name>_smoke.yaml beside it")
    study.add_argument("--force", nargs="+", default=[], metavar="STEP",
                       help="redo these steps and every step depending on them")
    study.add_argument("--list", action="store_true", help="list the steps and whether each is done, then exit")

    report = _add_command(sub, "report", h.cmd_report, "(re)build report.html and results.md of a study run",
                          "  imde report runs/demo")
    report.add_argument("run_dir", help="a study run directory")

    claims = _add_command(sub, "claims", h.cmd_claims, "the paper's claims over several study runs (e.g. seeds)",
                          "  imde claims runs/demo runs/demo-s1 runs/demo-s2\n"
                          "  imde claims runs/demo runs/demo-s1 --out claims.md")
    claims.add_argument("runs", nargs="+", metavar="RUN_DIR", help="study run directories (or their results.json)")
    claims.add_argument("--out", default=None, help="also write the table to this Markdown file")

    models = _add_command(sub, "models", h.cmd_models, "list registered models and their dissectable layers",
                          "  imde models\n  imde models mff_tiny")
    models.add_argument("names", nargs="*", help="only these models")
    return parser


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr,
                        force=True)


# Subcommands that share their work out over the processes of ``torchrun``; the others would only repeat it.
DISTRIBUTED_COMMANDS = ("train", "eval", "dissect")


def _check_torchrun(args: argparse.Namespace) -> None:
    """Refuse to run a subcommand that cannot share its work under ``torchrun`` (``WORLD_SIZE > 1``)."""
    import os

    world_size = os.environ.get("WORLD_SIZE", "1")
    name = getattr(args, "command", None)
    if world_size not in ("", "0", "1") and name not in DISTRIBUTED_COMMANDS:
        raise ValueError(f"WORLD_SIZE={world_size}: `imde {name}` runs in one process; under torchrun only "
                         f"{', '.join(DISTRIBUTED_COMMANDS)} share their work out")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``imde`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also come after options (``imde study c.yaml --smoke run_dir=x``)
    if extra and hasattr(args, "overrides"):
        stray = [item for item in extra if "=" not in item or item.startswith("-")]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)} (config overrides are key=value)")
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    _configure_logging(args.quiet)
    try:
        _check_torchrun(args)
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, WeightsUnavailableError, RunFolderBusyError) as exc:
        if args.debug:
            raise
        print(f"imde: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("imde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
