"""One writer per run folder: a second process stops at once, a killed holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imde.errors import RunFolderBusyError
from imde.utils.runlock import WRITER_NAME, exclusive_run_dir

SRC = str(Path(__file__).resolve().parents[3] / "src")
HOLD = """
import sys, time
from imde.utils.runlock import exclusive_run_dir
with exclusive_run_dir(sys.argv[1], "holder-under-test"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(run_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_stops_at_once_naming_the_folder_and_the_holder(tmp_path: Path) -> None:
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusyError) as info, exclusive_run_dir(tmp_path / "run"):
            pytest.fail("the lock of a folder held by another process was granted")
        message = str(info.value)
        assert str(tmp_path / "run") in message
        assert f"process {holder.pid}" in message and "holder-under-test" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = _holder(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with exclusive_run_dir(tmp_path / "run", "after") as folder:
        assert (folder / WRITER_NAME).is_file()
    assert not (tmp_path / "run" / WRITER_NAME).exists()  # released: the holder's note goes too


def test_training_refuses_a_folder_another_process_writes(tmp_path: Path) -> None:
    from imde.training import TrainConfig, train

    holder = _holder(tmp_path / "run")
    try:
        config = TrainConfig.from_yaml_dict({"run_dir": str(tmp_path / "run"), "model": {"name": "mff_tiny"}})
        with pytest.raises(RunFolderBusyError, match="being written by process"):
            train(config)
        assert not (tmp_path / "run" / "config.yaml").exists()  # nothing written by the refused run
    finally:
        holder.kill()
        holder.wait()


def test_a_second_study_into_the_same_folder_is_one_line_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from imde.cli import EXIT_BAD_INPUT, main

    demo = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"
    holder = _holder(tmp_path / "study")
    try:
        assert main(["study", str(demo), "--smoke", f"run_dir={tmp_path / 'study'}"]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.startswith("imde: error: run folder") and f"process {holder.pid}" in err
        assert not (tmp_path / "study" / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
