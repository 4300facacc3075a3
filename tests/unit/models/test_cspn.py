"""CSPN: unpooling, the propagation against a per-pixel loop, the sparse reset quirk, input checks."""

from __future__ import annotations

import pytest
import torch

import imde.models
from imde.models.cspn import cspn_propagate, unpool

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _reference(guidance: torch.Tensor, blur: torch.Tensor, sparse: torch.Tensor, steps: int) -> torch.Tensor:
    weights = guidance / guidance.abs().sum(1, keepdim=True)
    height, width = blur.shape[-2:]
    depth = blur.clone()
    for _ in range(steps):
        new = torch.zeros_like(depth)
        for y in range(height):
            for x in range(width):
                total = (1 - weights[0, :, y, x].sum()) * blur[0, 0, y, x]
                for n, (dy, dx) in enumerate(NEIGHBOURS):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        total = total + weights[0, n, y, x] * depth[0, 0, y + dy, x + dx]
                new[0, 0, y, x] = blur[0, 0, y, x] if sparse[0, 0, y, x] != 0 else total
        depth = new
    return depth


def test_unpool_keeps_values_top_left_and_crops() -> None:
    x = torch.arange(1.0, 7.0).view(1, 1, 2, 3)
    out = unpool(x, (3, 5))
    expected = torch.tensor([[1.0, 0, 2, 0, 3], [0, 0, 0, 0, 0], [4, 0, 5, 0, 6]])
    assert torch.equal(out[0, 0], expected)


def test_propagation_matches_a_pixel_loop() -> None:
    guidance = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    blur = torch.rand(1, 1, 4, 5, dtype=torch.float64) * 5
    sparse = torch.zeros_like(blur)
    sparse[0, 0, 1, 2] = 3.0
    out = cspn_propagate(guidance, blur, sparse, steps=3)
    assert torch.allclose(out, _reference(guidance, blur, sparse, steps=3))
    assert out[0, 0, 1, 2] == blur[0, 0, 1, 2]  # reset to the initial depth, not to the measurement (original quirk)


def test_propagation_of_a_constant_with_positive_affinities_away_from_borders() -> None:
    guidance = torch.rand(1, 8, 7, 7) + 0.1
    blur = torch.full((1, 1, 7, 7), 2.0)
    out = cspn_propagate(guidance, blur, torch.zeros_like(blur), steps=2)
    # Positive weights sum to 1, so the centre keeps 0 and interior pixels average a constant; zero padding
    # pulls the border down.
    assert torch.allclose(out[..., 2:-2, 2:-2], blur[..., 2:-2, 2:-2], atol=1e-5)
    assert (out[..., 0, :] < 2.0).all()


def test_declared_layers_and_checks() -> None:
    model = imde.models.create("cspn_resnet50")
    assert [(i.name, i.num_units, i.stride, i.module) for i in model.unit_info] == [
        ("layer3", 256, 4, "gud_up_proj_layer3"), ("layer4", 64, 2, "gud_up_proj_layer4")]
    assert not any(name.startswith(("up_proj_layer", "conv3")) for name, _ in model.named_modules())
    with pytest.raises(ValueError, match=r"\[B, 4, H, W\]"):
        model(torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match="sparse_depth"):
        imde.models.run_model(model, {"image": torch.randn(1, 3, 64, 96)})
