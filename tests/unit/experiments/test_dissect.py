"""Dissection (Eq. 1-3) through compute_responses/run_dissect against a slow per-image, per-bin reference."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from _tiny_models import DepthInImage, StridedNet, make_batches, rebatch

from imde.accumulators import DepthResponse
from imde.core.bins import DepthBins, assign_bins, dataset_edges, digitize
from imde.core.selectivity import depth_selectivity, random_baseline
from imde.experiments.dissect import DissectResult, compute_responses, run_dissect


def _features(model: torch.nn.Module, name: str, image: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        with torch.no_grad():
            model(image)
    finally:
        handle.remove()
    return captured[0]


def reference_response(model, batches, name, edges):
    """Eq. 1 the slow way: per image, upsample, then per bin a masked sum."""
    num_bins = edges.numel() - 1
    sums, counts = None, torch.zeros(num_bins, dtype=torch.float64)
    for batch in batches:
        feats = _features(model, name, batch["image"]).double()
        sums = torch.zeros(feats.shape[1], num_bins, dtype=torch.float64) if sums is None else sums
        for i in range(feats.shape[0]):
            depth = batch["depth"][i, 0]
            up = F.interpolate(feats[i:i + 1], size=depth.shape, mode="bilinear", align_corners=False)[0]
            bins = digitize(depth, edges)
            for d in range(num_bins):
                mask = bins == d
                counts[d] += mask.sum()
                sums[:, d] += up[:, mask].sum(dim=1)
    mean = sums / counts
    mean[:, counts == 0] = float("nan")
    return mean


def test_compute_responses_matches_slow_reference(batches):
    model = StridedNet()
    responses = compute_responses(model, batches, ["enc.1", "act"], bins=DepthBins("nyu", 64))
    assert list(responses) == ["enc.1", "act"]
    for name, response in responses.items():
        assert response.num_bins == 5  # N_b = min(64, K=5) (Sec. 4.2)
        torch.testing.assert_close(response.edges, dataset_edges("nyu", 5))
        expected = reference_response(model, batches, name, dataset_edges("nyu", 5))
        torch.testing.assert_close(response.mean_response(), expected, rtol=1e-9, atol=1e-9, equal_nan=True)
    # Bin 0 is (0, 0.75] m and the data start at 0.8 m: never observed -> NaN, not 0.
    assert torch.isnan(responses["act"].mean_response()[:, 0]).all()


def test_batching_does_not_change_responses(batches):
    model = StridedNet()
    whole = compute_responses(model, rebatch(batches, 6), ["act"], bins=DepthBins("nyu", 3))["act"]
    single = compute_responses(model, rebatch(batches, 1), ["act"], bins=DepthBins("nyu", 3))["act"]
    assert whole.num_bins == 3
    # float32 convolutions round differently with the batch size; the accumulation itself is float64.
    torch.testing.assert_close(whole.sums, single.sums, rtol=1e-5, atol=1e-6)
    assert torch.equal(whole.counts, single.counts)


def test_max_batches_mode_and_errors(batches):
    model = StridedNet().train()
    response = compute_responses(model, batches, ["act"], max_batches=2)["act"]
    assert response.num_images == 4
    assert model.training, "the model's training mode must be restored"
    with pytest.raises(ValueError, match="layers"):
        compute_responses(model, batches, [])
    with pytest.raises(ValueError, match="num_bins=1"):
        DepthBins("nyu", 1)
    with pytest.raises(ValueError, match="depth"):
        compute_responses(model, [{"image": batches[0]["image"]}], ["act"])
    with pytest.raises(ValueError, match="no batch"):
        compute_responses(model, [], ["act"])
    with pytest.raises(ValueError, match="bins='mars'"):
        compute_responses(model, batches, ["act"], bins="mars")
    with pytest.raises(ValueError, match="max_batches"):
        compute_responses(model, batches, ["act"], max_batches=0)


def test_run_dissect_scores_and_files(tmp_path):
    model = DepthInImage([0.4, 0.3, 0.2, 0.1])
    with torch.no_grad():
        model.mix.weight[2] = 0.0  # unit 2 never fires: a dead unit
    loaders = {"train": make_batches(2, 2, seed=1), "test": make_batches(1, 3, seed=2)}
    result = run_dissect(model, loaders, ["feat"], bins=DepthBins("nyu", 64), out_dir=tmp_path)

    for split, loader in loaders.items():
        layer = result.layers[split]["feat"]
        edges = dataset_edges("nyu", 4)
        expected = reference_response(model, loader, "feat", edges)
        torch.testing.assert_close(layer.mean_response, expected, equal_nan=True)
        # feat[k] = (k+1) * depth: every live unit's tuning curve is the bin's mean depth, scaled.
        mean_depth = expected[0]
        torch.testing.assert_close(layer.mean_response[3], 4 * mean_depth, equal_nan=True)
        torch.testing.assert_close(layer.selectivity, depth_selectivity(expected))
        torch.testing.assert_close(layer.selectivity_assigned, depth_selectivity(expected, assigned=assign_bins(4, 4)),
                                   equal_nan=True)
        assert layer.dead.tolist() == [False, False, True, False]
        assert layer.selectivity[2] == 0
        assert layer.preferred_bin.tolist() == [3, 3, -1, 3]  # the farthest bin has the largest mean depth
        assert layer.assigned_bin.tolist() == [0, 1, 2, 3]
        assert layer.random_baseline == pytest.approx(random_baseline(4))
        assert layer.num_images == sum(b["image"].shape[0] for b in loader)
        assert result.selectivity(split) == pytest.approx(float(layer.selectivity.mean()))

    saved = json.loads((tmp_path / "dissect.json").read_text())
    layer_json = saved["splits"]["test"]["layers"]["feat"]
    assert layer_json["selectivity"] == pytest.approx(result.layers["test"]["feat"].mean_selectivity)
    assert layer_json["dead_units"] == 1 and layer_json["num_bins"] == 4
    assert math.isnan(layer_json["units"]["mean_response"][0][0])  # bin 0 unobserved
    rows = list(csv.reader((tmp_path / "dissect_train_feat.csv").open()))
    assert rows[0][:6] == ["unit", "selectivity", "selectivity_assigned", "preferred_bin", "assigned_bin", "dead"]
    assert len(rows) == 1 + 4 + 1 and rows[-1][0] == "count"
    assert [int(c) for c in rows[-1][6:]] == result.layers["train"]["feat"].counts.tolist()
    assert float(rows[4][1]) == pytest.approx(float(result.layers["train"]["feat"].selectivity[3]))
    reloaded = DepthResponse.load(tmp_path / "dissect_test_feat.pt")
    torch.testing.assert_close(reloaded.sums, result.responses["test"]["feat"].sums)
    assert set(result.files) >= {tmp_path / "dissect.json", tmp_path / "dissect_train_feat.pt"}


def test_dissect_result_rejects_unknown_split(batches):
    result = DissectResult.from_responses({"test": compute_responses(StridedNet(), batches, ["act"])})
    with pytest.raises(ValueError, match="split='train'"):
        result.selectivity("train")
    with pytest.raises(ValueError, match="loaders"):
        run_dissect(StridedNet(), {}, ["act"])


def test_too_few_observed_bins_names_the_layer():
    batch = make_batches(1, 2)[0]
    flat = {"image": batch["image"], "depth": torch.where(batch["depth"] > 0, 5.0, 0.0)}  # one depth: one bin
    responses = compute_responses(StridedNet(), [flat], ["act"])
    with pytest.raises(ValueError, match=r"layer 'act' \(2 images, 0 without valid depth\): .*at least 2 observed"):
        DissectResult.from_responses({"test": responses})
