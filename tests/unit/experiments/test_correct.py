"""Correction (Sec. 5.2): replacement by training-set mean responses, checked against a per-pixel loop."""

from __future__ import annotations

import pytest
import torch
from _tiny_models import DepthInImage, make_batches

from imde.core.bins import DepthBins, dataset_edges, digitize
from imde.experiments.correct import replace_by_response, run_correction
from imde.experiments.dissect import DissectResult, compute_responses
from imde.experiments.evaluate import EvalSettings


def test_perfect_lookup_table_is_reproduced_in_the_features():
    edges = dataset_edges("nyu", 6)
    features = torch.randn(2, 3, 4, 5)
    depth = 0.5 + 9 * torch.rand(2, 1, 8, 10)
    depth[0, 0, :4, :4] = 0.0  # invalid
    depth[1, 0, 4:, :] = 12.0  # beyond beta: invalid
    table = 100.0 * torch.arange(3.0).view(3, 1) + torch.arange(6.0).view(1, 6)
    table[:, 2] = float("nan")  # a bin never seen in training
    edited = replace_by_response(features, depth, table, edges)

    expected = features.clone()
    for b in range(2):
        for i in range(4):
            for j in range(5):
                value = depth[b, 0, 2 * i, 2 * j]  # nearest-neighbour from 8x10 to 4x5
                d = int(digitize(value, edges))
                if d >= 0 and d != 2:
                    expected[b, :, i, j] = table[:, d]
    assert torch.equal(edited, expected)
    assert (edited != features).any() and (edited == features).any()  # both cases occur


def test_replace_by_response_rejects_mismatches():
    edges = dataset_edges("nyu", 4)
    with pytest.raises(ValueError, match=r"mean_response: expected \[3, N_b\]"):
        replace_by_response(torch.zeros(1, 3, 2, 2), torch.ones(1, 1, 2, 2), torch.zeros(4, 4), edges)
    with pytest.raises(ValueError, match="edges: expected 5 edges"):
        replace_by_response(torch.zeros(1, 3, 2, 2), torch.ones(1, 1, 2, 2), torch.zeros(3, 4), dataset_edges("nyu", 5))
    with pytest.raises(ValueError, match="depth"):
        replace_by_response(torch.zeros(2, 3, 2, 2), torch.ones(1, 1, 2, 2), torch.zeros(3, 4), edges)


def test_correction_removes_noise_the_depth_does_not_explain():
    # feat[k] = (k+1) * depth * (1 + 0.6 * noise): the training mean per depth bin removes the noise.
    model = DepthInImage([0.25, 0.25, 0.25, 0.25], noise=0.6)
    train, test = make_batches(4, 4, seed=3), make_batches(2, 4, seed=4)
    responses = compute_responses(model, train, ["feat"], bins=DepthBins("nyu", 64))
    settings = EvalSettings(max_depth=10.0)
    result = run_correction(model, responses, test, ["feat"], settings=settings)
    assert result.after["rms"] < 0.8 * result.before["rms"]
    assert result.after["delta1"] > result.before["delta1"]
    assert result.change()["rms"] == pytest.approx(result.after["rms"] - result.before["rms"])
    assert not model.feat._forward_hooks, "correction hooks must be removed"

    via_dissection = run_correction(model, DissectResult.from_responses({"train": responses}), test, ["feat"],
                                    settings=settings)
    assert via_dissection.after == pytest.approx(result.after)


def test_correction_matches_hand_computed_prediction(tmp_path):
    # Without noise the corrected prediction at a valid pixel of bin d is sum_k c_k R[k, d] / (k+1).
    contributions = [0.1, 0.2, 0.3, 0.4]
    model = DepthInImage(contributions)
    train = make_batches(2, 3, seed=5)
    test = [{"image": b["image"][:, :, :2, :2], "depth": b["depth"][:, :, :2, :2]} for b in make_batches(1, 2, seed=6)]
    responses = compute_responses(model, train, ["feat"])
    table, edges = responses["feat"].mean_response(), responses["feat"].edges
    weights = torch.tensor(contributions, dtype=torch.float64) / torch.arange(1, 5)
    bin_prediction = (weights.view(4, 1) * table).sum(0)  # predicted depth per bin
    depth = test[0]["depth"]
    bins = digitize(depth, edges)
    corrected = torch.where(bins >= 0, bin_prediction[bins.clamp(min=0)], 0.0).float()
    expected_rms = torch.stack([((corrected[i] - depth[i])[depth[i] > 0] ** 2).mean().sqrt() for i in range(2)])

    result = run_correction(model, responses, test, ["feat"], settings=EvalSettings(max_depth=10.0), out_dir=tmp_path)
    assert result.before["rms"] == pytest.approx(0.0, abs=1e-5)
    assert result.after["rms"] == pytest.approx(float(expected_rms.mean()), rel=1e-4)
    assert (tmp_path / "correction.json").is_file()


def test_correction_rejects_unknown_layers():
    model = DepthInImage([0.5, 0.3, 0.2])
    responses = compute_responses(model, make_batches(1, 2), ["feat"])
    with pytest.raises(ValueError, match=r"\['mix'\] have no training responses"):
        run_correction(model, responses, make_batches(1, 2), ["mix"])
    with pytest.raises(ValueError, match="split='train'"):
        run_correction(model, DissectResult.from_responses({"test": responses}), make_batches(1, 2), ["feat"])


class _Samples(torch.utils.data.Dataset):
    """Dataset samples (the public sample dict) cut from in-memory batches."""

    def __init__(self, batches: list[dict[str, object]]) -> None:
        self.image = torch.cat([b["image"] for b in batches])
        self.depth = torch.cat([b["depth"] for b in batches])

    def __len__(self) -> int:
        return self.image.shape[0]

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"image": self.image[index], "depth": self.depth[index], "name": f"s{index}"}


def test_correction_through_a_dataloader_equals_the_batch_list():
    model = DepthInImage([0.25, 0.25, 0.25, 0.25], noise=0.6)
    train, test = make_batches(2, 4, seed=3), make_batches(2, 4, seed=4)
    responses = compute_responses(model, torch.utils.data.DataLoader(_Samples(train), batch_size=3), ["feat"])
    loader = torch.utils.data.DataLoader(_Samples(test), batch_size=4, num_workers=2)
    settings = EvalSettings(max_depth=10.0)
    via_loader = run_correction(model, responses, loader, ["feat"], settings=settings)
    via_list = run_correction(model, responses, test, ["feat"], settings=settings)
    assert via_loader.after == pytest.approx(via_list.after)
    assert via_loader.after["rms"] < via_loader.before["rms"]
