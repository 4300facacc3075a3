"""Depth metrics: hand-computed values, a slow per-image numpy reference, streaming/merge invariance, crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imde.accumulators import DepthMetrics
from imde.core.metrics import METRIC_NAMES, compute_depth_metrics, valid_mask


def _reference(pred: np.ndarray, gt: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """Slow, obvious per-image implementation (one image, numpy float64)."""
    keep = np.isfinite(gt) & (gt > lo) & (gt < hi)
    g = gt[keep].astype(np.float64)
    p = pred[keep].astype(np.float64)
    p = np.where(np.isposinf(p), hi, p)
    p = np.clip(p, lo, hi)
    ratio = np.maximum(g / p, p / g)
    e = np.log(p) - np.log(g)
    out = {
        "delta1.02": np.mean(ratio < 1.02),
        "delta1.05": np.mean(ratio < 1.05),
        "delta1.10": np.mean(ratio < 1.10),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
        "rms": np.sqrt(np.mean((g - p) ** 2)),
        "mae": np.mean(np.abs(g - p)),
        "rel": np.mean(np.abs(g - p) / g),
        "sq_rel": np.mean((g - p) ** 2 / g),
        "rms_log": np.sqrt(np.mean(e**2)),
        "log10": np.mean(np.abs(np.log10(g) - np.log10(p))),
        "silog": 100 * np.sqrt(np.mean(e**2) - np.mean(e) ** 2),
    }
    return {k: float(v) for k, v in out.items()}


def test_hand_computed_single_image() -> None:
    # valid pixels: (gt, pred) = (1, 1), (2, 4), (4, 5); gt 0 and gt 12 (>= max 10) are ignored
    gt = torch.tensor([[[[1.0, 2.0, 4.0], [0.0, 12.0, 1.0]]]])
    pred = torch.tensor([[[[1.0, 4.0, 5.0], [3.0, 3.0, 1.0]]]])
    gt[0, 0, 1, 2] = 0.0  # make the last pixel invalid too
    values, has_valid = compute_depth_metrics(pred, gt, min_depth=1e-3, max_depth=10.0)
    assert has_valid.tolist() == [True]
    # ratios 1, 2, 1.25: the threshold is strict, so 1.25 fails delta1
    assert values["delta1.02"].item() == pytest.approx(1 / 3)
    assert values["delta1"].item() == pytest.approx(1 / 3)
    assert values["delta2"].item() == pytest.approx(2 / 3)  # 1.25 < 1.5625, 2 is not
    assert values["delta3"].item() == pytest.approx(2 / 3)  # 2 > 1.953
    assert values["rms"].item() == pytest.approx(math.sqrt((0 + 4 + 1) / 3))
    assert values["mae"].item() == pytest.approx((0 + 2 + 1) / 3)
    assert values["rel"].item() == pytest.approx((0 + 1.0 + 0.25) / 3)
    assert values["sq_rel"].item() == pytest.approx((0 + 4 / 2 + 1 / 4) / 3)
    logs = [0.0, math.log(2.0), math.log(1.25)]
    assert values["rms_log"].item() == pytest.approx(math.sqrt(sum(v * v for v in logs) / 3))
    assert values["log10"].item() == pytest.approx(sum(v / math.log(10) for v in logs) / 3)
    mean_e, mean_e2 = sum(logs) / 3, sum(v * v for v in logs) / 3
    assert values["silog"].item() == pytest.approx(100 * math.sqrt(mean_e2 - mean_e**2))


def test_prediction_is_clamped_and_inf_becomes_max() -> None:
    gt = torch.tensor([[[5.0, 5.0]]])
    pred = torch.tensor([[[float("inf"), 20.0]]])  # both become 10
    values, _ = compute_depth_metrics(pred, gt, min_depth=1e-3, max_depth=10.0)
    assert values["rms"].item() == pytest.approx(5.0)
    values, _ = compute_depth_metrics(torch.tensor([[[-3.0, 0.0]]]), gt, min_depth=0.5, max_depth=10.0)
    assert values["rms"].item() == pytest.approx(4.5)  # clamped to min_depth


def test_matches_slow_reference_per_image() -> None:
    gen = torch.Generator().manual_seed(3)
    gt = torch.rand(5, 1, 9, 11, generator=gen) * 12  # some above max_depth
    gt[gt < 1.0] = 0.0
    pred = gt * (0.7 + 0.6 * torch.rand(5, 1, 9, 11, generator=gen)) + 0.05
    pred[0, 0, 0, 0] = float("inf")
    values, _ = compute_depth_metrics(pred, gt, min_depth=1e-3, max_depth=10.0)
    for i in range(5):
        ref = _reference(pred[i, 0].numpy(), gt[i, 0].numpy(), 1e-3, 10.0)
        for name in METRIC_NAMES:
            assert values[name][i].item() == pytest.approx(ref[name], rel=1e-5, abs=1e-6), (i, name)


def test_images_without_valid_pixels_are_skipped_and_counted() -> None:
    gt = torch.ones(3, 1, 4, 4) * 2
    gt[1] = 0.0
    pred = torch.ones(3, 1, 4, 4) * 2
    pred[2] = 4.0
    metrics = DepthMetrics(max_depth=10.0)
    values = metrics.update(pred, gt)
    assert math.isnan(values["rms"][1].item())
    assert metrics.num_images == 2 and metrics.num_skipped == 1
    assert metrics.compute()["rms"] == pytest.approx(1.0)  # mean of per-image 0 and 2
    assert metrics.compute()["delta1"] == pytest.approx(0.5)


def test_dataset_mean_is_over_images_not_pixels() -> None:
    gt = torch.full((2, 1, 2, 2), 2.0)
    gt[0, 0, 0, :] = 0.0  # image 0 has 2 valid pixels, image 1 has 4
    pred = torch.full((2, 1, 2, 2), 3.0)
    pred[1] = 2.0
    metrics = DepthMetrics()
    metrics.update(pred, gt)
    assert metrics.compute()["rel"] == pytest.approx((0.5 + 0.0) / 2)


def test_streaming_equals_one_shot_and_merge_equals_whole() -> None:
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(8, 1, 6, 7, generator=gen) * 9 + 0.5
    gt[3] = 0.0
    pred = gt + torch.randn(8, 1, 6, 7, generator=gen) * 0.3
    whole = DepthMetrics()
    whole.update(pred, gt)
    streamed = DepthMetrics()
    for lo, hi in [(0, 1), (1, 4), (4, 8)]:
        streamed.update(pred[lo:hi], gt[lo:hi])
    left, right = DepthMetrics(), DepthMetrics()
    left.update(pred[:5], gt[:5])
    right.update(pred[5:], gt[5:])
    merged = left.merge(right)
    for other in (streamed, merged):
        assert other.num_images == whole.num_images == 7 and other.num_skipped == 1
        for name in METRIC_NAMES:
            assert other.compute()[name] == pytest.approx(whole.compute()[name], rel=1e-12)


def test_crop_restricts_pixels() -> None:
    gt = torch.full((1, 1, 480, 640), 2.0)
    pred = torch.full((1, 1, 480, 640), 2.0)
    pred[..., :45, :] = 8.0  # outside the Eigen NYU crop (rows 45:471)
    cropped = DepthMetrics(crop="eigen_nyu")
    cropped.update(pred, gt)
    assert cropped.compute()["rms"] == pytest.approx(0.0)
    full = DepthMetrics()
    full.update(pred, gt)
    assert full.compute()["rms"] == pytest.approx(6 * math.sqrt(45 / 480))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"pred \[2, 3, 3\] and gt \[2, 4, 4\]"):
        compute_depth_metrics(torch.ones(2, 3, 3), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"gt: expected shape \[B, 1, H, W\] or \[B, H, W\], got \[4, 4\]"):
        valid_mask(torch.ones(4, 4), min_depth=0.1, max_depth=1.0)
    with pytest.raises(ValueError, match="min_depth=5, max_depth=1"):
        DepthMetrics(min_depth=5, max_depth=1)
    with pytest.raises(ValueError, match="crop"):
        DepthMetrics(crop="eigen")
    with pytest.raises(ValueError, match="merge: protocols differ"):
        DepthMetrics(max_depth=10).merge(DepthMetrics(max_depth=80))
