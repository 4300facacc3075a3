"""A run is the folder passed on the command line, whatever ``run_dir`` its ``config.yaml`` recorded."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from imde.cli import EXIT_BAD_INPUT, main
from imde.training import TrainConfig, train


def _digests(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/ref``: a one-step mff_tiny run whose config records the *relative* run_dir ``runs/ref``."""
    root = tmp_path_factory.mktemp("runs")
    cwd = Path.cwd()
    try:
        import os

        os.chdir(root)
        train(TrainConfig.from_yaml_dict({
            "run_dir": "runs/ref", "device": "cpu", "model": {"name": "mff_tiny", "kwargs": {"d_units": 8}},
            "data": {"name": "rendered", "root": "data", "transform": "simple",
                     "options": {"size": [32, 40], "num_train": 4, "num_test": 4, "num_workers": 0,
                                 "progress": False, "generate": True},
                     "batch_size": 2, "eval_batch_size": 2, "num_workers": 0},
            "loss": {"interp": "assign", "num_bins": 4, "layers": ["D"]},
            "train": {"epochs": 1, "max_steps": 1, "progress": False, "dissect_every_epoch": False},
        }))
    finally:
        os.chdir(cwd)
    return root


def test_a_copied_run_reads_and_writes_only_its_own_files(workspace: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    moved = workspace / "runs" / "moved"
    shutil.copytree(workspace / "runs" / "ref", moved)
    original = _digests(workspace / "runs" / "ref")
    monkeypatch.chdir(workspace)  # where the data folder is; the recorded run_dir 'runs/ref' resolves here too
    assert main(["-q", "dissect", str(moved), "--num-bins", "4"]) == 0
    assert (moved / "dissect").is_dir()
    assert _digests(workspace / "runs" / "ref") == original  # the original is untouched, byte for byte
    # the copy's own checkpoints are what is read: corrupt them and the error names the copy
    for checkpoint in (moved / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(b"garbage")
    assert main(["-q", "eval", str(moved)]) == EXIT_BAD_INPUT
    assert _digests(workspace / "runs" / "ref") == original


def test_a_run_opens_from_another_working_directory(workspace: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(workspace / "data", elsewhere / "data")  # the data path is the config's, relative to here
    monkeypatch.chdir(elsewhere)
    run = workspace / "runs" / "ref"
    out = tmp_path / "eval"
    assert main(["-q", "eval", str(run), "--out", str(out)]) == 0
    assert (out / "test.json").is_file()
    assert not (elsewhere / "runs").exists()  # nothing written under the recorded relative run_dir
