"""CSPN: unpooling, the propagation against a per-pixel loop, the sparse reset quirk, input checks."""

from __future__ import annotations

import pytest
import torch

import imde.models
from imde.models.cspn import cspn_propagate, unpool

# the original's wiring: channel n weighs the neighbour at this offset, read at that neighbour's position
NEIGHBOURS = [(1, 1), (1, 0), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, 0), (-1, -1)]


def _reference(guidance: torch.Tensor, blur: torch.Tensor, sparse: torch.Tensor, steps: int) -> torch.Tensor:
    height, width = blur.shape[-2:]
    inside = [[[(n, y + dy, x + dx) for n, (dy, dx) in enumerate(NEIGHBOURS)
                if 0 <= y + dy < height and 0 <= x + dx < width] for x in range(width)] for y in range(height)]
    depth = blur.clone()
    for _ in range(steps):
        new = torch.zeros_like(depth)
        for y in range(height):
            for x in range(width):
                gates = {(n, qy, qx): guidance[0, n, qy, qx] for n, qy, qx in inside[y][x]}
                norm = sum(g.abs() for g in gates.values())
                total = (1 - sum(gates.values()) / norm) * blur[0, 0, y, x]
                for (_, qy, qx), gate in gates.items():
                    total = total + gate / norm * depth[0, 0, qy, qx]
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


def test_propagation_equals_the_original_pad_and_shift_formulation() -> None:
    # the original code zero-pads each affinity map and the depth map by (left, right, top, bottom) below, sums
    # the 8 products in the padded frame, and crops its border (the propagation written as the authors do)
    pads = [(0, 2, 0, 2), (1, 1, 0, 2), (2, 0, 0, 2), (0, 2, 1, 1),
            (2, 0, 1, 1), (0, 2, 2, 0), (1, 1, 2, 0), (2, 0, 2, 0)]
    torch.manual_seed(0)
    guidance = torch.randn(2, 8, 9, 11, dtype=torch.float64)
    blur = torch.rand(2, 1, 9, 11, dtype=torch.float64) * 5 + 1
    sparse = (torch.rand_like(blur) < 0.1) * 3.0
    gates = torch.stack([torch.nn.functional.pad(guidance[:, n:n + 1], pad) for n, pad in enumerate(pads)])
    gates = gates / gates.abs().sum(0)
    centre = 1 - gates.sum(0)[..., 1:-1, 1:-1]
    depth = blur
    for _ in range(4):
        shifted = torch.stack([torch.nn.functional.pad(depth, pad) for pad in pads])
        depth = (gates * shifted).sum(0)[..., 1:-1, 1:-1] + centre * blur
        depth = torch.where(sparse != 0, blur, depth)
    assert torch.allclose(cspn_propagate(guidance, blur, sparse, steps=4), depth, rtol=1e-12, atol=1e-12)


def test_propagation_of_a_constant_with_positive_affinities_stays_constant() -> None:
    guidance = torch.rand(1, 8, 7, 7) + 0.1
    blur = torch.full((1, 1, 7, 7), 2.0)
    out = cspn_propagate(guidance, blur, torch.zeros_like(blur), steps=2)
    # positive weights sum to 1 over the neighbours inside the image (outside ones have no affinity), so the
    # centre keeps 0 and every pixel, border included, averages the constant
    assert torch.allclose(out, blur, atol=1e-5)


def test_propagation_direction_by_hand() -> None:
    # a 1x2 image: pixel (0, 0) has only its right neighbour (channel 3, read at (0, 1)), pixel (0, 1) only its
    # left neighbour (channel 4, read at (0, 0)); the affinities at the pixels themselves do not matter
    guidance = torch.zeros(1, 8, 1, 2)
    guidance[0, 3, 0, 1], guidance[0, 4, 0, 0] = 2.0, -1.0
    guidance[0, 3, 0, 0], guidance[0, 4, 0, 1] = 100.0, 100.0
    blur = torch.tensor([[[[1.0, 3.0]]]])
    out = cspn_propagate(guidance, blur, torch.zeros_like(blur), steps=1)
    # (0, 0): w = 2 / 2 = 1 -> 1 * 3 + 0 * 1; (0, 1): w = -1 / 1 -> -1 * 1 + (1 - (-1)) * 3
    assert out.flatten().tolist() == [3.0, 5.0]


def test_declared_layers_and_checks() -> None:
    model = imde.models.create("cspn_resnet50")
    assert [(i.name, i.num_units, i.stride, i.module) for i in model.unit_info] == [
        ("layer3", 256, 4, "gud_up_proj_layer3"), ("layer4", 64, 2, "gud_up_proj_layer4")]
    assert not any(name.startswith(("up_proj_layer", "conv3")) for name, _ in model.named_modules())
    with pytest.raises(ValueError, match=r"\[B, 4, H, W\]"):
        model(torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match="sparse_depth"):
        imde.models.run_model(model, {"image": torch.randn(1, 3, 64, 96)})
