"""``imde study``: the paper's whole story as resumable steps writing into one run directory.

Layout of ``run_dir`` (read by :mod:`imde.paper.report`); every result file is written by the result's own
``save`` and read back by its ``load`` (:class:`imde.experiments.results.SavedResult`)::

    config.yaml            the resolved study config
    models/<variant>/      training runs (config.yaml, checkpoints/, metrics.csv, tb/)
    dissect/<variant>/     dissect.json, per-unit CSVs, raw responses (.pt)
    eval/<variant>.json    test-split metrics (EvalResult)
    compare.json           Table 2 (selectivity train/test and metrics per variant; also .csv and .md)
    correction/<variant>.json, ablation/<variant>.json, explain/<variant>.json (+ explain/<variant>.pt: maps)
    figures/*.png          contact sheet, ablation curves, dissection and feature-map figures
    atlas/<variant>/       unit browser sprites
    results.json           the public summary with the measured claims; results.md and report.html
    steps/<step>.done      markers of finished steps
"""

from __future__ import annotations

import logging
import time
from typing import Any

from imde.paper.config import StudyConfig
from imde.paper.runner import Step, StepRecord, StepRunner, dependents
from imde.utils.config import diff_dicts, load_yaml, save_yaml, to_dict
from imde.utils.runlock import exclusive_run_dir

log = logging.getLogger("imde.paper")


# Top-level config keys whose change leaves every finished step valid.
_NO_EFFECT = ("run_dir", "device", "train_workers")
# Keys whose change makes the steps starting with these names stale (redone with their dependents). Any other
# key (train, variants, render) changes what the models were trained on: the run directory is
# then not reused.
_REDONE = {
    "dissect": ("dissect_",),
    "stats": ("dissect_", "eval_", "correct_", "ablate_"),
    "correction": ("correct_",),
    "ablation": ("ablate_",),
    "explain": ("explain_", "atlas_"),
    "report": ("atlas_", "report"),
    "name": ("results", "report"),
    "claims": ("results", "report"),
}


def stale_steps(config: StudyConfig) -> tuple[list[str], tuple[str, ...]]:
    """What a change of config since the run directory's ``config.yaml`` makes stale.

    Returns:
        ``(changed keys, name prefixes of the steps to redo)``; both empty for a new run directory.

    Raises:
        ValueError: a key that changes the trained models differs, naming it and how to proceed.
    """
    saved = config.out / "config.yaml"
    if not saved.is_file():
        return [], ()
    differ = [key for key in diff_dicts(load_yaml(saved), to_dict(config)) if key.split(".")[0] not in _NO_EFFECT]
    retrain = [key for key in differ if key.split(".")[0] not in _REDONE]
    if retrain:
        shown = ", ".join(retrain[:8]) + (" ..." if len(retrain) > 8 else "")
        raise ValueError(f"run_dir={str(config.out)!r} holds a study trained with another config (differs in "
                         f"{shown}); use another run_dir=..., or delete the folder to start over")
    return differ, tuple(prefix for key in differ for prefix in _REDONE[key.split(".")[0]])


def _named(plan: list[Step], prefixes: tuple[str, ...]) -> list[str]:
    """The steps of ``plan`` whose names start with one of ``prefixes`` (none for no prefix)."""
    return [step.name for step in plan if prefixes and step.name.startswith(prefixes)]


def run_study(config: StudyConfig, *, force: tuple[str, ...] = (), device: str | None = None) -> dict[str, Any]:
    """Run (or resume) every step of the study and return ``results.json``'s content.

    Args:
        config: the study.
        force: steps to redo, with every step depending on them.
        device: overrides ``config.device``.

    Raises:
        ValueError: a run directory holding models trained with another config, or an unknown step in ``force``.
        RunFolderBusyError: another process is writing ``config.out`` (one writer per run folder).
    """
    with exclusive_run_dir(config.out, f"imde study {config.name}"):
        return _run_study(config, force, device)


def _run_study(config: StudyConfig, force: tuple[str, ...], device: str | None) -> dict[str, Any]:
    """The body of :func:`run_study`, inside the run folder's writer lock."""
    from imde.paper.steps import StudySteps

    changed, prefixes = stale_steps(config)
    steps = StudySteps(config, device=device or config.device)
    plan = steps.plan()
    runner = StepRunner(config.out)
    stale = _named(plan, prefixes)
    if stale:
        log.info("config changed since the last run (%s): redoing %s", ", ".join(changed),
                 ", ".join(runner.forget(plan, stale)))
    if force:
        log.info("forcing %s", ", ".join(runner.forget(plan, force)))
    save_yaml(config, config.out / "config.yaml")
    start = time.perf_counter()
    records = runner.run(plan)
    log.info("study %s finished in %.1f s (%.1f s of step time in total)", config.name,
             time.perf_counter() - start, total_seconds(records))
    return steps.results()


def total_seconds(records: dict[str, StepRecord]) -> float:
    """Compute time of the whole study: the sum of every step's recorded duration, resumed or not."""
    return float(sum(record.seconds for record in records.values()))


def step_status(config: StudyConfig) -> list[tuple[str, bool]]:
    """``[(step name, finished?)]`` in run order (``imde study --list``)."""
    from imde.paper.steps import StudySteps

    runner = StepRunner(config.out)
    plan = StudySteps(config).plan()
    _, prefixes = stale_steps(config)
    stale = set(dependents(plan, _named(plan, prefixes)))
    return [(step.name, step.name not in stale and runner.record(step.name) is not None) for step in plan]
