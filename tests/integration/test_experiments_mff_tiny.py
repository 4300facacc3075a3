"""The paper's experiments end to end on the registered CPU-sized MFF (random weights, random scenes)."""

from __future__ import annotations

import json

import pytest
import torch

import imde.models
from imde.experiments.ablate import run_ablation
from imde.experiments.correct import run_correction
from imde.experiments.dissect import run_dissect
from imde.experiments.evaluate import EvalSettings
from imde.experiments.explain import run_explain
from imde.viz import plots


def _batches(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        depth = 1.0 + 6.0 * torch.rand(2, 1, 64, 80, generator=gen)
        out.append({"image": torch.randn(2, 3, 64, 80, generator=gen), "depth": depth})
    return out


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return imde.models.create("mff_tiny", d_units=8, r_units=16)


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                     reason="no CUDA device")])]


@pytest.mark.parametrize("device", DEVICES)
def test_dissect_correct_ablate_explain(model, tmp_path, device):
    train, test = _batches(2, 1), _batches(1, 2)
    dissection = run_dissect(model, {"train": train, "test": test}, ["D", "Rconv0"], device=device,
                             out_dir=tmp_path)
    layer = dissection.layers["train"]["Rconv0"]
    assert (layer.num_units, layer.num_bins) == (16, 16)  # N_b = min(64, K)
    assert dissection.layers["test"]["D"].num_bins == 8
    assert bool(((layer.selectivity >= 0) & (layer.selectivity <= 1)).all())
    assert json.loads((tmp_path / "dissect.json").read_text())["splits"]["test"]["layers"]["D"]["num_units"] == 8

    settings = EvalSettings(device=device, max_batches=1)
    correction = run_correction(model, dissection, test, ["Rconv0"], settings=settings)
    assert correction.before["rms"] != correction.after["rms"]  # random weights: delta1 is 0 either way

    ablation = run_ablation(model, test, {"Rconv0": layer.selectivity}, step=[0, 8, 16], metric="rms",
                            settings=settings)
    assert ablation.units == [0, 8, 16]
    assert ablation.most_selective_first[0] == ablation.least_selective_first[0] == correction.before["rms"]
    assert ablation.most_selective_first[1] != ablation.least_selective_first[1]

    explain = run_explain(model, {k: v[:1] for k, v in test[0].items()}, layer="Rconv0",
                          responses=dissection.layers["train"]["Rconv0"], device=device)
    assert explain.adversarial.loss > explain.clean.loss  # FGSM on the model's own (Hu et al.) loss
    assert explain.adversarial.histogram.sum() <= explain.adversarial.errors.sum()
    fig = plots.plot_unit_responses(layer, units=list(range(4)))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
