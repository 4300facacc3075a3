"""``imde eval`` and ``imde dissect`` under torchrun: two CPU processes (gloo) give the one-process numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _distributed import free_port, torchrun_process

import imde.models
from imde.cli import EXIT_BAD_INPUT, main
from imde.utils.config import save_yaml

WORLD_SIZE = 2


def _commands(root: Path, out: str) -> list[list[str]]:
    source = [str(root / "config.yaml"), "--checkpoint", str(root / "weights.pt"), "--device", "cpu"]
    return [["-q", "eval", *source, "--out", str(root / out / "eval")],
            ["-q", "dissect", *source, "--split", "train", "test", "--bootstrap", "20", "--out",
             str(root / out / "dissect")]]


def _worker(rank: int, port: int, root: str) -> None:
    with torchrun_process(rank, WORLD_SIZE, port, join=False):
        for argv in _commands(Path(root), "ddp"):
            assert main(argv) == 0
        assert dist.is_initialized() and dist.get_world_size() == WORLD_SIZE  # the CLI joined torchrun's group


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mff_tiny (seeded, untrained) with its weights file and a config on 11 + 7 rendered rooms."""
    root = tmp_path_factory.mktemp("cli_ddp")
    torch.manual_seed(0)
    torch.save(imde.models.create("mff_tiny", d_units=8).state_dict(), root / "weights.pt")
    options = {"size": [32, 40], "num_train": 11, "num_test": 7, "seed": 0, "camera": "fixed"}
    config = {"model": {"name": "mff_tiny", "kwargs": {"d_units": 8}}, "loss": {"layers": ["D", "MFF"]},
              "data": {"name": "rendered", "root": str(root / "data"), "options": options, "transform": "simple",
                       "eval_batch_size": 3, "num_workers": 0}}
    save_yaml(config, root / "config.yaml")
    assert main(["-q", "data", "render", "--root", str(root / "data"), "--size", "32", "40", "--num-train", "11",
                 "--num-test", "7", "--camera", "fixed"]) == 0
    return root


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_eval_and_dissect_under_torchrun_equal_one_process(trained: Path) -> None:
    for argv in _commands(trained, "single"):
        assert main(argv) == 0
    mp.spawn(_worker, args=(free_port(), str(trained)), nprocs=WORLD_SIZE, join=True)
    single = json.loads((trained / "single" / "eval" / "test.json").read_text())
    ddp = json.loads((trained / "ddp" / "eval" / "test.json").read_text())
    assert ddp["num_images"] == single["num_images"] == 7  # shards of 4 and 3 images, none repeated
    for name, value in single["metrics"].items():
        assert ddp["metrics"][name] == pytest.approx(value, rel=1e-6), name
    for split in ("train", "test"):
        for layer in ("D", "MFF"):
            one = _csv_numbers(trained / "single" / "dissect" / f"dissect_{split}_{layer}.csv")
            two = _csv_numbers(trained / "ddp" / "dissect" / f"dissect_{split}_{layer}.csv")
            assert len(one) == len(two) == 9  # 8 units and the pixel counts per bin
            for a, b in zip(one, two, strict=True):
                assert b == pytest.approx(a, rel=1e-5, abs=1e-7, nan_ok=True)
        # the bootstrap weights come from the images' names: the same replicates whatever the process
        one_json, two_json = (json.loads((trained / run / "dissect" / "dissect.json").read_text())["splits"][split]
                              for run in ("single", "ddp"))
        assert two_json["selectivity_ci"] == pytest.approx(one_json["selectivity_ci"], rel=1e-5)


def _csv_numbers(path: Path) -> list[list[float]]:
    """The rows of a dissection CSV after its header, as numbers (the label ``count`` -> -1, empty -> NaN)."""
    rows = path.read_text().splitlines()[1:]
    return [[-1.0 if x == "count" else float(x or "nan") for x in row.split(",")] for row in rows]


def test_subcommands_that_cannot_share_their_work_are_refused_under_torchrun(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["study", "configs/demo.yaml", "--list"]) == EXIT_BAD_INPUT
    assert "`imde study` runs in one process; under torchrun only train, eval, dissect" in capsys.readouterr().err
