"""Dissection with replicates: p-values of a depth-coding model, results JSON, early refusal, random control."""

from __future__ import annotations

import json

import pytest
import torch
from _tiny_models import DepthInImage, StridedNet, make_batches
from torch.utils.data import DataLoader, TensorDataset

from imde.experiments.dissect import run_dissect, run_random_control


def test_depth_coding_units_are_significant_and_the_json_says_so(tmp_path) -> None:
    batches = make_batches(3, 4)
    model = DepthInImage([0.25, 0.25, 0.25, 0.25])  # feat[k] = k * depth of its own pixel
    result = run_dissect(model, {"test": batches}, ["feat"], bootstrap=50, permutations=49, seed=1,
                         out_dir=tmp_path)
    layer = result.layers["test"]["feat"]
    sig = layer.significance
    assert sig is not None
    # its own image's depth, pixel by pixel: no deranged pairing comes close (p = 1 / (1 + P), the smallest)
    assert torch.allclose(sig.p_value, torch.full((4,), 1 / 50, dtype=torch.float64))
    assert sig.num_significant == 4
    assert torch.allclose(sig.selectivity, layer.selectivity)
    saved = json.loads((tmp_path / "dissect.json").read_text())["splits"]["test"]
    low, high = saved["selectivity_ci"]
    assert low <= saved["selectivity"] <= high
    entry = saved["layers"]["feat"]
    assert entry["selectivity"] == pytest.approx(layer.mean_selectivity)  # the existing keys are unchanged
    assert entry["significance"]["num_significant"] == 4 and len(entry["significance"]["units"]["q_value"]) == 4
    plain = run_dissect(model, {"test": batches}, ["feat"]).to_dict()["splits"]["test"]
    assert "selectivity_ci" not in plain and "significance" not in plain["layers"]["feat"]


def test_batches_of_one_are_refused_early_and_a_last_one_joins_the_batch_before() -> None:
    loader = DataLoader(TensorDataset(torch.rand(4, 3, 8, 8)), batch_size=1)

    class Exploding(StridedNet):
        def forward(self, x, focal=None):  # noqa: D102
            raise AssertionError("no forward pass expected")

    with pytest.raises(ValueError, match="batch_size=1"):
        run_dissect(Exploding(), {"test": loader}, ["act"], permutations=10)
    batches = make_batches(1, 5)
    last_alone = [{key: value[:4] for key, value in batches[0].items()},
                  {key: value[4:] for key, value in batches[0].items()}]
    model = StridedNet()
    joined = run_dissect(model, {"test": last_alone}, ["act"], permutations=9, bootstrap=5, seed=2)
    together = run_dissect(model, {"test": batches}, ["act"], permutations=9, bootstrap=5, seed=2)
    a, b = joined.responses["test"]["act"], together.responses["test"]["act"]
    assert a.num_images == 5 and a.num_updates == 1  # the lone image was permuted with the four before it
    assert torch.allclose(a.null_sums, b.null_sums) and torch.allclose(a.boot_sums, b.boot_sums)


def test_random_control_is_seeded_and_leaves_the_global_generator_alone() -> None:
    batches = make_batches(2, 3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = run_random_control(StridedNet, {"test": batches}, ["act"], weight_seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    again = run_random_control(StridedNet, {"test": batches}, ["act"], weight_seed=5)
    other = run_random_control(StridedNet, {"test": batches}, ["act"], weight_seed=6)
    same = first.layers["test"]["act"].mean_response
    torch.testing.assert_close(same, again.layers["test"]["act"].mean_response, rtol=0, atol=0, equal_nan=True)
    assert not torch.allclose(same, other.layers["test"]["act"].mean_response, equal_nan=True)
