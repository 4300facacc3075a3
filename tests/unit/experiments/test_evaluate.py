"""Streaming evaluation: protocol (upsampling, caps, skipping), outputs (table, LaTeX, JSON) and exports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from imde.accumulators import DepthMetrics
from imde.core.metrics import METRIC_NAMES
from imde.experiments.evaluate import EvalResult, ExportOptions, align_prediction, evaluate


class HalfResDepth(nn.Module):
    """Predicts ``10 * image[:, 0]`` at half resolution, like MFF's output stride 2."""

    depth_preset = "nyu"

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.scale * F.avg_pool2d(x[:, :1], 2)


def _batches(num: int, batch_size: int, *, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(num):
        image = torch.rand(batch_size, 3, 8, 12, generator=gen)
        depth = torch.rand(batch_size, 1, 8, 12, generator=gen) * 9 + 0.5
        depth[:, :, 0, 0] = 0.0
        out.append({"image": image, "depth": depth, "name": [f"scene/rgb_{b}_{i}.jpg" for i in range(batch_size)]})
    return out


def test_evaluate_equals_metrics_on_upsampled_prediction() -> None:
    model = HalfResDepth()
    batches = _batches(3, 2)
    result = evaluate(model, batches, device="cpu", max_depth=10.0, progress=False)
    expected = DepthMetrics(max_depth=10.0)
    for batch in batches:
        pred = F.interpolate(10 * F.avg_pool2d(batch["image"][:, :1], 2), size=(8, 12), mode="bilinear",
                             align_corners=False)
        expected.update(pred, batch["depth"])
    assert result.num_images == 6 and result.num_skipped == 0
    for name in METRIC_NAMES:
        assert result.metrics[name] == pytest.approx(expected.compute()[name], rel=1e-6)
    assert (result.crop, result.min_depth, result.max_depth) == ("none", 1e-3, 10.0)


def test_constant_prediction_hand_values_and_skipped_images() -> None:
    image = torch.full((2, 3, 4, 4), 0.3)  # prediction 3 m everywhere
    depth = torch.full((2, 1, 4, 4), 2.0)
    depth[1] = 0.0  # no valid pixel: skipped
    result = evaluate(HalfResDepth(), [{"image": image, "depth": depth}], device="cpu", progress=False)
    assert result.num_images == 1 and result.num_skipped == 1
    assert result.metrics["rms"] == pytest.approx(1.0)
    assert result.metrics["rel"] == pytest.approx(0.5)
    assert result.metrics["delta1"] == 0.0 and result.metrics["delta2"] == 1.0
    assert result.metrics["log10"] == pytest.approx(math.log10(1.5))


def test_max_batches_and_mode_restored() -> None:
    model = HalfResDepth().train()
    batches = _batches(4, 1)
    result = evaluate(model, batches, device="cpu", max_batches=2, progress=False)
    assert result.num_images == 2 and model.training
    assert model.scale.grad is None


def test_gt_resized_to_prediction_when_not_upsampling() -> None:
    pred = torch.arange(4.0).reshape(1, 1, 2, 2) + 1
    depth = torch.arange(16.0).reshape(1, 1, 4, 4)
    p, d = align_prediction(pred, depth, upsample_to_gt=False)
    assert torch.equal(p, pred) and torch.equal(d, depth[..., ::2, ::2])
    p, d = align_prediction(pred, depth)
    assert p.shape == depth.shape and torch.equal(d, depth)
    with pytest.raises(ValueError, match=r"depth: expected shape \[1, 1, H, W\]"):
        align_prediction(pred, depth[0])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no batches"):
        evaluate(HalfResDepth(), [], device="cpu", progress=False)
    with pytest.raises(ValueError, match="missing keys \\['depth'\\]"):
        evaluate(HalfResDepth(), [{"image": torch.rand(1, 3, 4, 4)}], device="cpu", progress=False)
    with pytest.raises(ValueError, match="crop"):
        evaluate(HalfResDepth(), _batches(1, 1), device="cpu", crop="eigen", progress=False)
    with pytest.raises(ValueError, match="format='jpg'"):
        ExportOptions("x", format="jpg")


def test_outputs_table_latex_json(tmp_path: Path) -> None:
    metrics = {name: 0.5 for name in METRIC_NAMES}
    metrics["rms"] = float("nan")
    result = EvalResult(metrics, 10, 2, "eigen_nyu", 1e-3, 10.0)
    table = result.to_table()
    assert "d<1.25" in table and "RMS" in table and "crop=eigen_nyu" in table and "skipped=2" in table
    row = result.to_latex_row("MFF", names=("delta1", "rms"))
    assert row == r"MFF & 0.500 & -- \\"
    text = result.to_json(tmp_path / "eval.json")
    loaded = json.loads((tmp_path / "eval.json").read_text())
    assert json.loads(text) == loaded and loaded["num_images"] == 10 and loaded["crop"] == "eigen_nyu"


def test_export_png_npy_and_colour(tmp_path: Path) -> None:
    batches = _batches(1, 2)
    model = HalfResDepth()
    evaluate(model, batches, device="cpu", progress=False, export=ExportOptions(tmp_path / "png", colorize=True))
    evaluate(model, batches, device="cpu", progress=False, export=ExportOptions(tmp_path / "npy", format="npy"))
    pred = F.interpolate(10 * F.avg_pool2d(batches[0]["image"][:, :1], 2), size=(8, 12), mode="bilinear",
                         align_corners=False)
    png = np.asarray(Image.open(tmp_path / "png" / "scene_rgb_0_1.png"))
    assert png.dtype == np.uint16 and png.shape == (8, 12)
    np.testing.assert_allclose(png / 1000.0, pred[1, 0].numpy(), atol=5e-4)  # millimetres (NYU)
    npy = np.load(tmp_path / "npy" / "scene_rgb_0_0.npy")
    np.testing.assert_allclose(npy, pred[0, 0].numpy(), rtol=1e-6)
    colour = np.asarray(Image.open(tmp_path / "png" / "scene_rgb_0_0_color.png"))
    assert colour.shape == (8, 12, 3) and colour.dtype == np.uint8
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "scene_rgb_0_0.png", "scene_rgb_0_0_color.png", "scene_rgb_0_1.png", "scene_rgb_0_1_color.png"]
