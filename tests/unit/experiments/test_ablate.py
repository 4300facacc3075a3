"""Ablation (Fig. 2) on models where ablating units S scales the prediction by 1 - sum_S c_k exactly."""

from __future__ import annotations

import json

import pytest
import torch
from _tiny_models import DepthInImage, TwoBranchDepth, make_batches

from imde.experiments.ablate import ablation_counts, run_ablation, zero_units
from imde.experiments.evaluate import EvalSettings

CONTRIBUTIONS = [0.05, 0.3, 0.12, 0.53]
SELECTIVITY = torch.tensor([0.9, 0.1, 0.5, 0.3])  # most selective first: units 0, 2, 3, 1
# pred = (1 - s) * gt with s the ablated share: REL = s, delta1 = 1 while 1 / (1 - s) < 1.25.
MOST_SHARE = [0.0, 0.05, 0.17, 0.70]
LEAST_SHARE = [0.0, 0.3, 0.83, 0.95]


def test_curves_match_hand_computed_errors(tmp_path):
    model = DepthInImage(CONTRIBUTIONS)
    loader = make_batches(2, 2)
    result = run_ablation(model, loader, {"feat": SELECTIVITY}, step=[0, 1, 2, 3],
                          settings=EvalSettings(max_depth=10.0), out_dir=tmp_path)
    assert result.order == [("feat", 0), ("feat", 2), ("feat", 3), ("feat", 1)]
    assert [m["rel"] for m in result.metrics_most] == pytest.approx(MOST_SHARE, abs=1e-5)
    assert [m["rel"] for m in result.metrics_least] == pytest.approx(LEAST_SHARE, abs=1e-5)
    assert result.most_selective_first == [1.0, 1.0, 1.0, 0.0]
    assert result.least_selective_first == [1.0, 0.0, 0.0, 0.0]
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["units"] == [0, 1, 2, 3] and saved["least_selective_first"] == result.least_selective_first
    assert not model.feat._forward_hooks


def test_units_of_several_layers_are_ranked_together():
    # The same four units split over two layers (Fig. 2 ranks the units of D and MFF as one list): the pooled
    # order interleaves the layers and the curves equal the one-layer model's.
    model = TwoBranchDepth(CONTRIBUTIONS[:2], CONTRIBUTIONS[2:])
    order_by = {"left.feat": SELECTIVITY[:2], "right.feat": SELECTIVITY[2:]}
    result = run_ablation(model, make_batches(2, 2), order_by, step=1, settings=EvalSettings(max_depth=10.0))
    assert result.layers == ["left.feat", "right.feat"]
    assert result.order == [("left.feat", 0), ("right.feat", 0), ("right.feat", 1), ("left.feat", 1)]
    assert [m["rel"] for m in result.metrics_most[:4]] == pytest.approx(MOST_SHARE, abs=1e-5)
    assert [m["rel"] for m in result.metrics_least[:4]] == pytest.approx(LEAST_SHARE, abs=1e-5)
    assert result.metrics_most[4]["rel"] == pytest.approx(1.0, abs=1e-3)  # all ablated: pred 0, clamped to 1 mm
    assert result.to_dict()["order"][1] == ["right.feat", 0]
    assert not model.left.feat._forward_hooks and not model.right.feat._forward_hooks


def test_ties_keep_the_layer_order_then_the_unit_index():
    model = TwoBranchDepth(CONTRIBUTIONS[:2], CONTRIBUTIONS[2:])
    tied = {"right.feat": torch.full((2,), 0.5), "left.feat": torch.full((2,), 0.5)}
    result = run_ablation(model, make_batches(1, 2), tied, step=2, settings=EvalSettings(max_depth=10.0))
    assert result.order == [("right.feat", 0), ("right.feat", 1), ("left.feat", 0), ("left.feat", 1)]
    # least selective first breaks the tie the same way: the right branch (0.12 + 0.53) goes first
    assert result.metrics_least[1]["rel"] == pytest.approx(0.65, abs=1e-5)


def test_shared_endpoints_are_evaluated_once():
    model = DepthInImage(CONTRIBUTIONS)
    loader = make_batches(2, 2)
    calls = []
    model.head.register_forward_hook(lambda *args: calls.append(1))
    result = run_ablation(model, loader, {"feat": SELECTIVITY}, step=1, settings=EvalSettings(max_depth=10.0))
    assert result.units == [0, 1, 2, 3, 4]
    # 0 and 4 ablated units are the same model in both orders: 1 + 2 * 3 + 1 evaluations of 2 batches.
    assert len(calls) == 8 * 2
    assert result.most_selective_first[0] == result.least_selective_first[0] == 1.0
    assert result.metrics_most[-1] == result.metrics_least[-1]


def test_counts_and_zeroing_helpers():
    assert ablation_counts(5, 2) == [0, 2, 4, 5]
    assert ablation_counts(5, [3, 0, 3]) == [0, 3]
    out = zero_units(torch.ones(2, 4, 3, 3), torch.tensor([1, 3]))
    assert out[:, [0, 2]].eq(1).all() and out[:, [1, 3]].eq(0).all()
    # an ablated unit is 0 whatever it held (a multiply by 0 would leave inf * 0 = NaN); the others are untouched
    wild = torch.tensor([float("inf"), float("nan"), -float("inf"), 2.0]).view(1, 4, 1, 1).expand(2, 4, 3, 3)
    out = zero_units(wild.contiguous(memory_format=torch.channels_last), torch.tensor([0, 1, 2]))
    assert out[:, :3].eq(0).all() and out[:, 3].eq(2).all()


def test_bad_arguments():
    model = DepthInImage(CONTRIBUTIONS)
    loader = make_batches(1, 2)
    with pytest.raises(ValueError, match="step=0"):
        ablation_counts(4, 0)
    with pytest.raises(ValueError, match="between 0 and 4"):
        ablation_counts(4, [1, 5])
    with pytest.raises(ValueError, match=r"order_by\['feat'\]: expected a finite per-unit selectivity \[K\], "
                                         r"got \(2, 2\)"):
        run_ablation(model, loader, {"feat": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"order_by\['feat'\]: .* got \(1,\)"):
        run_ablation(model, loader, {"feat": torch.tensor([float("nan")])})
    with pytest.raises(ValueError, match="for at least one layer, got Tensor"):
        run_ablation(model, loader, SELECTIVITY)
    with pytest.raises(ValueError, match="for at least one layer, got dict"):
        run_ablation(model, loader, {})
    with pytest.raises(ValueError, match="metric='nope'"):
        run_ablation(model, loader, {"feat": SELECTIVITY}, metric="nope", settings=EvalSettings(max_depth=10.0))


def test_selectivity_count_must_match_the_layer():
    model = DepthInImage(CONTRIBUTIONS)
    with pytest.raises(ValueError,
                       match=r"order_by\['feat'\]: 3 selectivities, but the layer outputs \(2, 4, 12, 16\)"):
        run_ablation(model, make_batches(1, 2), {"feat": torch.tensor([0.3, 0.2, 0.1])},
                     settings=EvalSettings(max_depth=10.0))
