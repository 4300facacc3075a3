"""``train_workers``: the study's variants trained side by side in worker processes, as in one process."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from imde.paper.config import load_study_config
from imde.paper.parallel import ParallelTrainings, stop_cleanly_on_sigterm
from imde.paper.runner import StepRunner
from imde.paper.steps import StudySteps
from imde.training.checkpoint import read_checkpoint
from imde.utils.io import atomic_path

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


@pytest.fixture
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _train_steps(root: Path, workers: int, *overrides: str) -> tuple[StudySteps, StepRunner]:
    config = load_study_config(DEMO, [f"run_dir={root}", f"train.data.root={root.parent / 'data'}",
                                      f"train_workers={workers}", *overrides], smoke=True)
    steps = StudySteps(config, device="cpu")
    runner = StepRunner(config.out)
    runner.run([step for step in steps.plan() if step.name == "render" or step.name.startswith("train_")])
    return steps, runner


def test_workers_train_the_same_models_as_one_process(tmp_path: Path, threads: None) -> None:
    torch.set_num_threads(1)  # one thread here, and 2 // 2 = 1 per worker below: the same arithmetic
    _train_steps(tmp_path / "serial", 1)
    torch.set_num_threads(2)
    steps, runner = _train_steps(tmp_path / "parallel", 2)
    assert not steps._trainings._running  # every worker has finished and been joined
    for variant in ("baseline", "assign", "reg"):
        assert runner.record(f"train_{variant}").summary["result"]["steps"] == 6  # 48 images, batch 8
        serial = read_checkpoint(tmp_path / "serial" / "models" / variant / "checkpoints" / "last.pt")["model"]
        parallel = read_checkpoint(tmp_path / "parallel" / "models" / variant / "checkpoints" / "last.pt")["model"]
        assert all(torch.equal(serial[name], parallel[name]) for name in serial), variant
    assert not read_checkpoint(tmp_path / "parallel" / "models" / "reg" / "checkpoints" / "last.pt")[
        "config"]["train"]["progress"]  # bars off in the workers


def test_a_failing_worker_reports_its_error_and_leaves_no_marker(tmp_path: Path) -> None:
    # a value only the training itself checks (the study checks models, data and layers before starting)
    with pytest.raises(ValueError, match="train.best_metric='nope'") as failure:
        _train_steps(tmp_path / "run", 3, "variants.baseline.train.eval_every_epoch=true",
                     "variants.baseline.train.best_metric=nope")
    assert "while training variant 'baseline'" in str(failure.value.__notes__)
    assert not list((tmp_path / "run" / "steps").glob("train_*.done"))  # the other workers were stopped too
    assert not list((tmp_path / "run").rglob("*.tmp"))


def _write_slowly(target: Path, ready: Any) -> None:
    stop_cleanly_on_sigterm()
    with atomic_path(target) as tmp:
        tmp.write_text("half")
        ready.set()
        time.sleep(60)


def test_a_stopped_worker_removes_the_file_it_was_writing(tmp_path: Path) -> None:
    # spawn, as ParallelTrainings starts its workers: a fork of the multi-threaded test process could inherit a
    # held lock (stdio's) and hang on its way out instead of exiting
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_write_slowly, args=(tmp_path / "last.pt", ready))
    process.start()
    assert ready.wait(30)
    process.terminate()  # what ParallelTrainings.close does to the other workers
    process.join(30)
    assert process.exitcode == 1  # Terminated raised out of the target, not killed by the signal
    assert list(tmp_path.iterdir()) == []  # neither last.pt nor the temporary file


def test_a_worker_killed_without_a_result_is_an_error(tmp_path: Path) -> None:
    config = load_study_config(DEMO, [f"run_dir={tmp_path / 'run'}", f"train.data.root={tmp_path / 'data'}",
                                      "train.train.epochs=1000"], smoke=True)
    configs = StudySteps(config, device="cpu").train_configs
    trainings = ParallelTrainings({"baseline": configs["baseline"], "reg": configs["reg"]}, workers=2, threads=1)
    trainings._running["baseline"].kill()
    with pytest.raises(RuntimeError, match=r"variant 'baseline' exited with code -9 without reporting a result"):
        trainings.result("baseline")
    assert not trainings._running  # the other worker was stopped too
    with pytest.raises(KeyError, match="'reg' is not being trained here"):
        trainings.result("reg")
