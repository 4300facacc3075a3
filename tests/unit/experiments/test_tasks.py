"""imde.tasks decides each default once, from the run's training config and its model."""

from __future__ import annotations

import pytest
import torch
from _tiny_models import StridedNet, make_batches

from imde.core.bins import DepthBins
from imde.experiments.dissect import run_dissect
from imde.tasks import Session, ablate_run, dissect_run
from imde.training.config import EvalConfig, LossConfig, TrainConfig


def session(loss: LossConfig, eval_config: EvalConfig | None = None) -> Session:
    config = TrainConfig(loss=loss, eval=eval_config or EvalConfig())
    batches = make_batches(3, 2, seed=1)
    # the loaders a Session would build from config.data, given here (keyed by split and batch size)
    return Session(config, StridedNet(), "cpu", loaders={("train", None): batches, ("test", None): batches[:2]})


def test_layers_bins_and_protocol_come_from_the_training() -> None:
    run = session(LossConfig(interp="assign", layers=("act",), num_bins=4, preset="kitti"))
    assert run.layers() == ["act"] and run.layers(["enc.1"]) == ["enc.1"]
    assert run.bins == DepthBins("kitti", 4)
    baseline = session(LossConfig(num_bins=8))  # no loss layers, no preset: the model's (StridedNet: nyu)
    assert baseline.bins == DepthBins("nyu", 8)
    assert baseline.layers() == []  # StridedNet declares no layers
    baseline.model.max_depth = 7.5
    settings = baseline.settings(max_batches=2)
    assert (settings.max_depth, settings.max_batches, settings.crop) == (7.5, 2, "none")  # the model's max_depth
    capped = session(LossConfig(), EvalConfig(max_depth=5.0, crop="eigen_nyu")).settings()
    assert (capped.max_depth, capped.crop) == (5.0, "eigen_nyu")


def test_dissect_and_ablate_run_with_those_defaults() -> None:
    run = session(LossConfig(interp="assign", layers=("enc.1",), num_bins=3))
    result = dissect_run(run, ["train", "test"])
    reference = run_dissect(run.model, {"train": run.loader("train"), "test": run.loader("test")}, ["enc.1"],
                            bins=DepthBins("nyu", 3))
    for split in ("train", "test"):
        torch.testing.assert_close(result.layers[split]["enc.1"].mean_response,
                                   reference.layers[split]["enc.1"].mean_response, equal_nan=True)
    curve = ablate_run(run, step=2, dissection=result)
    assert curve.units == [0, 2, 4, 5] and curve.layers == ["enc.1"]
    with pytest.raises(ValueError, match=r"ablation step=5: layers \['enc.1'\] have 5 units"):
        ablate_run(run, step=5, dissection=result)
