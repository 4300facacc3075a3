"""The declared layers of a registered model feed LayerTap and the paper's AssignLoss, end to end on CPU."""

from __future__ import annotations

import torch

import imde.losses
import imde.models
from imde.hooks import LayerTap
from imde.losses.selectivity import AssignLoss


def test_tiny_mff_trains_with_original_plus_assign_loss() -> None:
    model = imde.models.create("mff_tiny").train()
    image = torch.randn(2, 3, 64, 80)
    depth = torch.rand(2, 1, 32, 40) * 9 + 0.8
    depth[:, :, :4] = 0  # invalid pixels
    base = imde.losses.create(model.default_loss)
    assign = AssignLoss(num_bins=64, alpha=0.75, beta=10.0, lam=0.1)
    with LayerTap(model, ["D", "MFF"]) as tap:
        pred = imde.models.run_model(model, {"image": image, "depth": depth})
        loss = base(pred, depth) + assign(tap.features, depth)
    loss.backward()
    assert tap.features["D"].shape == (2, 16, 32, 40) and torch.isfinite(loss)
    grad = model.E.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.D.up4.conv1.weight.grad.abs().sum() > 0
