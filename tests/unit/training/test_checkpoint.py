"""Checkpoints: weights_only round trip, RNG states, resume config check, model mismatch, samplers, CSV log."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imde.training import checkpoint as ckpt
from imde.training.config import TrainConfig
from imde.training.distributed import DistInfo, ShardSampler
from imde.training.tracking import RunLogger, read_metrics_csv

RECIPES = Path(__file__).resolve().parents[3] / "configs" / "recipes"


def test_rng_state_round_trip_through_weights_only_file(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    ckpt.save_checkpoint(tmp_path / "c.pt", rng=ckpt.rng_state(), model=model, model_name="lin")
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), [random.random() for _ in range(3)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    state = ckpt.read_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    ckpt.set_rng_state(state["rng"])
    got = (torch.rand(3), np.random.rand(3), np.random.randn(), [random.random() for _ in range(3)])
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]
    assert set(state["model"]) == {"weight", "bias"} and state["format"] == ckpt.FORMAT


def test_each_process_resumes_its_own_random_state(caplog: pytest.LogCaptureFixture) -> None:
    single = ckpt.rng_state()
    assert ckpt.rank_rng_state(single, rank=0, world_size=1) is single  # one process: the state as saved
    states = [{"torch": torch.tensor([rank])} for rank in range(3)]
    assert ckpt.rank_rng_state({"ranks": states}, rank=2, world_size=3) is states[2]
    assert ckpt.rank_rng_state({"ranks": states}, rank=1, world_size=2) is states[0]  # another world size
    assert "the random states of 3 processes, not 2" in caplog.text


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ckpt.read_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an imde training checkpoint"):
        ckpt.read_checkpoint(tmp_path / "other.pt")


def test_check_resume_lists_differing_keys_and_allows_more_epochs() -> None:
    saved_cfg = TrainConfig.from_yaml(RECIPES / "mff.yaml").to_dict()
    state = {"model_name": "mff_resnet50", "config": saved_cfg}
    longer = TrainConfig.from_yaml(RECIPES / "mff.yaml", ["train.epochs=30", "device=cpu"]).to_dict()
    ckpt.check_resume(state, longer, "last.pt")  # epochs and device may change
    other = TrainConfig.from_yaml(RECIPES / "mff.yaml", ["optim.lr=1e-3", "loss.lam=0.5"]).to_dict()
    with pytest.raises(ValueError, match=r"differing keys: loss\.lam: 0\.1 -> 0\.5; optim\.lr: 0\.0001 -> 0\.001"):
        ckpt.check_resume(state, other, "last.pt")
    bts = TrainConfig.from_yaml(RECIPES / "bts_nyu.yaml").to_dict()
    with pytest.raises(ValueError, match="is from model 'mff_resnet50'.*'bts_densenet161_nyu'"):
        ckpt.check_resume(state, bts, "last.pt")


def test_load_model_state_names_mismatches() -> None:
    state = {"model": nn.Linear(2, 1).state_dict()}
    with pytest.raises(ValueError, match="does not fit Sequential: 2 missing keys"):
        ckpt.load_model_state(nn.Sequential(nn.Linear(2, 1)), state, "x.pt")
    with pytest.raises(ValueError, match=r"(?s)does not fit Linear: .*size mismatch"):
        ckpt.load_model_state(nn.Linear(3, 1), state, "x.pt")


def test_shard_sampler_partitions_without_padding() -> None:
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for s in shards for i in s) == list(range(7))
    with pytest.raises(ValueError, match="2 samples, fewer than the 3 processes"):
        ShardSampler(2, 0, 3)
    assert DistInfo().is_main and not DistInfo().distributed and not DistInfo(1, 2, 1).is_main


def test_global_batch_must_split_over_processes() -> None:
    from imde.training.config import DataConfig
    from imde.training.data import train_loader

    loader = train_loader(list(range(10)), DataConfig(batch_size=4, num_workers=0), DistInfo(1, 2, 1), seed=0)
    assert loader.batch_size == 2 and len(loader) == 3
    with pytest.raises(ValueError, match="batch_size=3: the global batch must be divisible by the 2 processes"):
        train_loader(list(range(10)), DataConfig(batch_size=3, num_workers=0), DistInfo(0, 2, 0), seed=0)


def test_train_sampler_ranks_together_see_the_single_process_batches() -> None:
    from torch.utils.data import DistributedSampler

    data = list(range(10))
    single = list(DistributedSampler(data, num_replicas=1, rank=0, seed=4))
    ranks = [list(DistributedSampler(data, num_replicas=2, rank=r, seed=4)) for r in range(2)]
    for step in range(3):  # global batch 4 = 2 per rank
        union = sorted(ranks[0][2 * step : 2 * step + 2] + ranks[1][2 * step : 2 * step + 2])
        assert union == sorted(single[4 * step : 4 * step + 4])


def test_run_logger_truncates_on_resume(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path)
    for step in (1, 2, 3):
        logger.log("step", {"loss": float(step)}, step=step, epoch=0)
    logger.close()
    logger = RunLogger(tmp_path, resume_step=2)
    logger.log("step", {"loss": 30.0, "nan": float("nan")}, step=3, epoch=0)
    logger.close()
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["step"], r["name"], r["value"]) for r in rows][:3] == [(1, "loss", 1.0), (2, "loss", 2.0),
                                                                      (3, "loss", 30.0)]
    assert np.isnan(rows[3]["value"])
    assert not (RunLogger(tmp_path / "off", enabled=False).csv_path.parent / "off").exists()
