"""Selectivity significance on synthetic units with a known truth, invariance of the replicates, paired metrics."""

from __future__ import annotations

import math

import pytest
import torch

import imde
from imde.accumulators import DepthMetrics, DepthResponse
from imde.core.bins import digitize
from imde.core.resampling import key_hashes, poisson_weights
from imde.significance import compare_metrics, metric_intervals

EDGES = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
H = W = 8


def _scenes(num_images: int, spread: float, seed: int) -> torch.Tensor:
    """Depth growing with the image row (``0..2`` m), shifted per image by up to ``spread`` metres."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(H, dtype=torch.float32).view(1, H, 1) / (H - 1) * 2.0
    shift = torch.rand(num_images, 1, 1, generator=generator) * spread
    return (rows + shift + 0.05).expand(num_images, H, W).contiguous()


def _accumulate(activations: torch.Tensor, depth: torch.Tensor, batch: int, **kwargs: int) -> DepthResponse:
    resp = DepthResponse(activations.shape[1], EDGES, **kwargs)
    keys = [f"img{i}" for i in range(activations.shape[0])]
    for start in range(0, activations.shape[0], batch):
        resp.update(activations[start : start + batch], depth[start : start + batch], keys[start : start + batch])
    return resp


def test_own_depth_unit_is_significant_and_row_unit_is_not() -> None:
    depth = _scenes(48, spread=1.0, seed=0)
    generator = torch.Generator().manual_seed(1)
    bins = digitize(depth, EDGES)
    activations = 0.1 * torch.randn(48, 2, H, W, generator=generator)
    activations[:, 0] += (bins == 2).float()  # fires on its own image's bin-2 pixels
    activations[:, 1] = (torch.arange(H) >= H - 2).float().view(1, H, 1)  # the bottom rows, whatever the depth
    sig = _accumulate(activations, depth, 8, bootstrap=200, permutations=199, seed=0).significance()
    own, row = 0, 1
    assert sig.p_value[own] < 0.01 and sig.q_value[own] < 0.05
    assert sig.ci_low[own] <= sig.selectivity[own] <= sig.ci_high[own]
    assert sig.ci_high[own] - sig.ci_low[own] < 0.05
    assert sig.selectivity[row] > imde.random_baseline(4) + 0.05  # high DS...
    assert sig.p_value[row] > 0.2  # ...that the permutation null explains: rows are near in every image
    assert sig.num_significant == 1 and sig.preferred_stability[own] == 1.0
    assert sig.layer_ci[0] <= sig.layer_selectivity <= sig.layer_ci[1]


def test_noise_units_keep_the_type_one_error() -> None:
    units = 400
    depth = _scenes(24, spread=2.0, seed=2)
    activations = torch.randn(24, units, 4, 4, generator=torch.Generator().manual_seed(3)).abs()
    sig = _accumulate(activations, depth, 6, permutations=99, seed=1).significance()
    rejected = float((sig.p_value < 0.05).double().mean())
    assert abs(rejected - 0.05) < 4 * math.sqrt(0.05 * 0.95 / units)  # within Monte-Carlo error
    assert sig.num_significant <= 0.05 * units  # BH: few or no discoveries among pure noise


def _bin_coded(num_images: int, units: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images half in bin 0, half in bin 2; unit k responds ``level[k, d] + noise`` per image (true DS known)."""
    generator = torch.Generator().manual_seed(seed)
    depth = torch.full((num_images, H, W), 0.5)
    depth[:, H // 2 :] = 2.5
    level = torch.stack([torch.full((units,), 3.0), torch.linspace(1.0, 2.0, units)], 1)  # [K, 2]: bins 0 and 2
    per_image = level.unsqueeze(0) + noise * torch.randn(num_images, units, 2, generator=generator)
    activations = per_image[:, :, [0] * (H // 2) + [1] * (H // 2)].unsqueeze(-1).expand(-1, -1, -1, W).contiguous()
    # Eq. 2 over the 2 observed bins of the population mean (noise averages out; the maps are constant along each
    # half, so the bilinear upsampling mixes the halves only at the boundary, equally for both bins)
    true_ds = (level[:, 0] - level[:, 1]) / (level[:, 0] + level[:, 1])
    return activations, depth, true_ds.double()


def test_interval_width_shrinks_like_one_over_sqrt_n() -> None:
    widths = []
    for num_images in (32, 128):
        activations, depth, _ = _bin_coded(num_images, 8, noise=0.5, seed=4)
        sig = _accumulate(activations, depth, 16, bootstrap=400, seed=0).significance()
        widths.append(float((sig.ci_high - sig.ci_low).mean()))
    assert 1.6 < widths[0] / widths[1] < 2.5  # sqrt(128 / 32) = 2


def test_coverage_of_the_95_percent_interval() -> None:
    covered, total = 0, 0
    for dataset in range(20):
        activations, depth, true_ds = _bin_coded(40, 25, noise=0.6, seed=100 + dataset)
        sig = _accumulate(activations, depth, 10, bootstrap=200, seed=dataset).significance()
        covered += int(((sig.ci_low <= true_ds) & (true_ds <= sig.ci_high)).sum())
        total += true_ds.numel()
    coverage = covered / total
    assert abs(coverage - 0.95) < 4 * math.sqrt(0.95 * 0.05 / total) + 0.01


def test_replicates_are_invariant_to_batching_order_and_merging() -> None:
    depth = _scenes(12, spread=2.0, seed=5)
    activations = torch.randn(12, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    keys = [f"img{i}" for i in range(12)]
    whole = _accumulate(activations, depth, 12, bootstrap=50, seed=3)
    batched = _accumulate(activations, depth, 5, bootstrap=50, seed=3)
    order = torch.randperm(12)
    shuffled = DepthResponse(3, EDGES, bootstrap=50, seed=3)
    for part in order.split(4):
        shuffled.update(activations[part], depth[part], [keys[i] for i in part])
    halves = _accumulate(activations[:7], depth[:7], 3, bootstrap=50, seed=3)
    second = DepthResponse(3, EDGES, bootstrap=50, seed=3)
    second.update(activations[7:], depth[7:], keys[7:])
    halves.merge(second)
    for other in (batched, shuffled, halves):
        assert torch.allclose(other.boot_sums, whole.boot_sums, rtol=1e-5, atol=1e-4)
        assert torch.equal(other.boot_counts, whole.boot_counts) and other.key_checksum == whole.key_checksum
        sig, ref = other.significance(), whole.significance()
        assert torch.allclose(sig.ci_low, ref.ci_low, atol=1e-5) and torch.allclose(sig.ci_high, ref.ci_high, atol=1e-5)


def test_bootstrap_replicate_equals_a_weighted_reference() -> None:
    depth = _scenes(6, spread=1.0, seed=7)
    activations = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(8))
    resp = _accumulate(activations, depth, 3, bootstrap=4, seed=9)
    weights = poisson_weights(9, key_hashes([f"img{i}" for i in range(6)]), 4)
    for r in range(4):  # replicate r = the dataset with image i repeated weights[r, i] times
        reference = DepthResponse(2, EDGES)
        index = torch.arange(6).repeat_interleave(weights[r])
        if index.numel():
            reference.update(activations[index], depth[index])
        assert torch.allclose(resp.boot_sums[r].double(), reference.sums, rtol=1e-5, atol=1e-4)
        assert torch.equal(resp.boot_counts[r], reference.counts.double())


def test_null_replicate_pairs_activations_with_another_images_depth() -> None:
    depth = _scenes(4, spread=2.0, seed=10)
    activations = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(11))
    resp = _accumulate(activations, depth, 4, permutations=3, seed=2)
    from imde.core.resampling import cyclic_derangements

    partner = cyclic_derangements(2, key_hashes([f"img{i}" for i in range(4)]), 3)
    for r in range(3):
        reference = DepthResponse(2, EDGES)
        reference.update(activations, depth[partner[r]])
        assert torch.allclose(resp.null_sums[r].double(), reference.sums, rtol=1e-5, atol=1e-4)
    order = torch.tensor([2, 0, 3, 1])  # the same batch in another order: the same null
    reordered = DepthResponse(2, EDGES, permutations=3, seed=2)
    reordered.update(activations[order], depth[order], [f"img{i}" for i in order.tolist()])
    assert torch.allclose(reordered.null_sums, resp.null_sums, rtol=1e-6, atol=1e-5)


def test_a_batch_of_one_is_refused_with_permutations() -> None:
    resp = DepthResponse(2, EDGES, permutations=5)
    with pytest.raises(ValueError, match="a batch of 1 image cannot be permuted"):
        resp.update(torch.rand(1, 2, 4, 4), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="keys: expected one str/int per image"):
        DepthResponse(2, EDGES, bootstrap=3).update(torch.rand(2, 2, 4, 4), torch.rand(2, 8, 8), keys=["a"])


def test_compare_selectivity_is_paired() -> None:
    depth = _scenes(30, spread=2.0, seed=12)
    generator = torch.Generator().manual_seed(13)
    base = torch.randn(30, 4, 4, 4, generator=generator).abs()
    better = base.clone()
    better[:, :, :2] += 1.0  # more response on the near rows: more selective, by the same images
    resp_a = _accumulate(better, depth, 6, bootstrap=300, seed=0)
    resp_b = _accumulate(base, depth, 10, bootstrap=300, seed=0)
    diff = imde.compare_selectivity(resp_a, resp_b)
    sig_a, sig_b = resp_a.significance(), resp_b.significance()
    assert diff.estimate == pytest.approx(sig_a.layer_selectivity - sig_b.layer_selectivity)
    assert diff.ci_low <= diff.estimate <= diff.ci_high
    same = imde.compare_selectivity(resp_a, resp_a)
    assert same.estimate == 0 and same.ci_low == 0 and same.ci_high == 0  # paired: identical replicates cancel
    with pytest.raises(ValueError, match="not paired"):
        imde.compare_selectivity(resp_a, _accumulate(base[:20], depth[:20], 10, bootstrap=300, seed=0))
    with pytest.raises(ValueError, match="not paired"):
        imde.compare_selectivity(resp_a, _accumulate(base, depth, 10, bootstrap=300, seed=1))


def test_metrics_bootstrap_and_paired_difference() -> None:
    generator = torch.Generator().manual_seed(14)
    gt = torch.rand(20, 1, 6, 6, generator=generator) * 8 + 1
    pred_a = gt * (1 + 0.1 * torch.randn(20, 1, 6, 6, generator=generator))
    pred_b = pred_a + 0.3
    a, b = DepthMetrics(bootstrap=200, seed=4), DepthMetrics(bootstrap=200, seed=4)
    keys = [f"img{i}" for i in range(20)]
    for start in (0, 7):
        stop = 7 if start == 0 else 20
        a.update(pred_a[start:stop], gt[start:stop], keys[start:stop])
    b.update(pred_b, gt, keys)
    weights = poisson_weights(4, key_hashes(keys), 200).double()
    from imde.core.metrics import METRIC_NAMES, compute_depth_metrics

    per_image, _ = compute_depth_metrics(pred_a, gt, max_depth=10.0)
    rms = (weights @ per_image["rms"]) / weights.sum(1)
    assert torch.allclose(a.replicates()[:, METRIC_NAMES.index("rms")], rms, rtol=1e-10)
    low, high = metric_intervals(a)["rms"]
    assert low <= a.compute()["rms"] <= high
    diff = compare_metrics(a, b)["rms"]
    assert diff.estimate == pytest.approx(a.compute()["rms"] - b.compute()["rms"])
    assert diff.ci_low <= diff.estimate <= diff.ci_high and diff.ci_high < 0  # b is worse on every image


def test_a_large_batch_is_permuted_in_groups_of_at_most_eight() -> None:
    from imde.accumulators import NULL_GROUP
    from imde.core.resampling import permutation_groups

    depth = _scenes(13, spread=2.0, seed=15)
    activations = torch.randn(13, 2, 4, 4, generator=torch.Generator().manual_seed(16))
    keys = [f"img{i}" for i in range(13)]
    whole = _accumulate(activations, depth, 13, permutations=6, bootstrap=4, seed=3)
    groups = permutation_groups(3, key_hashes(keys), NULL_GROUP)
    assert sorted(len(g) for g in groups) == [6, 7]
    by_group = DepthResponse(2, EDGES, permutations=6, bootstrap=4, seed=3)
    for group in groups:  # the same null as feeding each group as its own batch
        by_group.update(activations[group], depth[group], [keys[i] for i in group.tolist()])
    for name in ("null_sums", "boot_sums", "sums"):
        assert torch.allclose(getattr(by_group, name).double(), getattr(whole, name).double(), rtol=1e-5, atol=1e-4)
