"""Two CPU processes (gloo, DDP) train the toy like one process: same losses, same evaluation and dissection.

With global batch 4 the DistributedSampler gives each rank 2 samples per step, and the union of the ranks'
samples at every step is exactly the single process's batch; the toy has no BatchNorm and its loss is a
mean over equally many pixels per rank, so averaged gradients equal the single-process gradient up to
float rounding. The held-out shards do not overlap or pad, so the all-reduced evaluation and dissection
of one model equal the single-process ones to float64 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _distributed import free_port, torchrun_process
from _train_toy import ToyDepthNet, ToyDepthSet, toy_config

from imde.core.bins import DepthBins
from imde.experiments.dissect import compute_responses
from imde.experiments.evaluate import evaluate
from imde.training import train
from imde.training.data import eval_loader
from imde.training.distributed import DistInfo
from imde.training.tracking import read_metrics_csv

WORLD_SIZE = 2
SECTIONS = {"loss": {"interp": "none", "layers": ["feat"], "num_bins": 4}, "optim": {"lr": 3e-2},
            "train": {"epochs": 2, "log_every": 1, "progress": False}}


def _held_out(config, info: DistInfo) -> dict:
    """Evaluation and dissection of the untrained toy over this process's shard (all-reduced)."""
    loader = eval_loader(ToyDepthSet(7, seed=1), config.data, info)  # 7: uneven shards
    metrics = evaluate(ToyDepthNet(), loader, device="cpu", progress=False).to_dict()
    response = compute_responses(ToyDepthNet(), loader, ["feat"], bins=DepthBins("nyu", 4), device="cpu")["feat"]
    return {"metrics": metrics, "sums": response.sums.tolist(), "counts": response.counts.tolist()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    with torchrun_process(rank, WORLD_SIZE, port):
        config = toy_config(str(Path(out_dir) / "ddp"), **SECTIONS)
        train(config, model=ToyDepthNet(), train_set=ToyDepthSet(16), test_set=ToyDepthSet(6, seed=1))
        held_out = _held_out(config, DistInfo(rank, WORLD_SIZE, rank))
        (Path(out_dir) / f"held_out_{rank}.json").write_text(json.dumps(held_out))



def _step_losses(run_dir: Path) -> list[float]:
    rows = read_metrics_csv(run_dir / "metrics.csv")
    return [r["value"] for r in rows if r["kind"] == "step" and r["name"] == "loss"]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_two_processes_equal_one(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    config = toy_config(str(tmp_path / "single"), **SECTIONS)
    single = train(config, model=ToyDepthNet(), train_set=ToyDepthSet(16), test_set=ToyDepthSet(6, seed=1))

    ddp_losses, single_losses = _step_losses(tmp_path / "ddp"), _step_losses(tmp_path / "single")
    assert len(ddp_losses) == len(single_losses) == 8
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4)
    ddp_last = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert ddp_last["history"][-1]["eval/rms"] == pytest.approx(single.history[-1]["eval/rms"], rel=1e-4)
    assert ddp_last["history"][-1]["dissect/feat"] == pytest.approx(single.history[-1]["dissect/feat"], rel=1e-3)
    for key, value in single.history[-1].items():
        if key != "img_per_s":
            assert ddp_last["history"][-1][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key

    reference = _held_out(config, DistInfo())
    for rank in range(WORLD_SIZE):
        held_out = json.loads((tmp_path / f"held_out_{rank}.json").read_text())
        assert held_out["counts"] == reference["counts"]
        assert torch.allclose(torch.tensor(held_out["sums"], dtype=torch.float64),
                              torch.tensor(reference["sums"], dtype=torch.float64), rtol=1e-12, atol=1e-12)
        assert held_out["metrics"]["num_images"] == 7
        for name, value in reference["metrics"]["metrics"].items():
            assert held_out["metrics"]["metrics"][name] == pytest.approx(value, rel=1e-12), name


class _BNToy(ToyDepthNet):
    """The toy with a BatchNorm layer: its running statistics are updated by each process's own batches."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(16)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.act(self.feat(self.bn(self.hidden(x[:, :1])))))


class _AugmentedToySet(ToyDepthSet):
    """The toy set with one random draw per sample, as an augmentation makes, recorded in the order drawn."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.draws: list[float] = []

    def __getitem__(self, index: int) -> dict:
        self.draws.append(torch.rand(()).item())
        return super().__getitem__(index)


def _bn_worker(rank: int, port: int, out_dir: str) -> None:
    with torchrun_process(rank, WORLD_SIZE, port):
        config = toy_config(str(Path(out_dir) / "ddp"), **{**SECTIONS, "train": {**SECTIONS["train"], "epochs": 1}})
        model, train_set = _BNToy(), _AugmentedToySet(16)
        train(config, model=model, train_set=train_set, test_set=ToyDepthSet(6, seed=1))
        result = {"draws": train_set.draws, "running_mean": model.bn.running_mean.tolist()}
        (Path(out_dir) / f"bn_{rank}.json").write_text(json.dumps(result))


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_processes_augment_differently_and_evaluate_the_saved_batchnorm_statistics(tmp_path: Path) -> None:
    mp.spawn(_bn_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [json.loads((tmp_path / f"bn_{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    # each process draws its own augmentations (the same seed everywhere made them identical)
    assert len(ranks[0]["draws"]) == len(ranks[1]["draws"]) == 8 and ranks[0]["draws"] != ranks[1]["draws"]
    # before the held-out passes every process takes rank 0's BatchNorm statistics: the ones last.pt holds
    last = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    saved = last["model"]["bn.running_mean"].tolist()
    assert ranks[0]["running_mean"] == ranks[1]["running_mean"] == saved
    # each process's random state is saved, so that a resumed run goes on with its own augmentations
    assert len(last["rng"]["ranks"]) == WORLD_SIZE
    assert not torch.equal(last["rng"]["ranks"][0]["torch"], last["rng"]["ranks"][1]["torch"])
