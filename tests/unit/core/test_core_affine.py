"""Per-image least-squares scale and shift (the zero-shot alignment), the SSI loss and the zero-shot evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import imde.losses
from imde.core.affine import ZERO_SHOT_PROTOCOL, align_disparity, fit_scale_shift
from imde.experiments.evaluate import evaluate


def test_fit_matches_numpy_lstsq_per_image() -> None:
    torch.manual_seed(0)
    pred, target = torch.rand(3, 1, 6, 7, dtype=torch.float64), torch.rand(3, 1, 6, 7, dtype=torch.float64)
    mask = torch.rand(3, 1, 6, 7) > 0.3
    scale, shift = fit_scale_shift(pred, target, mask)
    for i in range(3):
        p, d = pred[i][mask[i]].numpy(), target[i][mask[i]].numpy()
        (s, t), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), d, rcond=None)
        assert float(scale[i]) == pytest.approx(s, rel=1e-9) and float(shift[i]) == pytest.approx(t, rel=1e-9)


def test_non_finite_predictions_outside_the_mask_do_not_reach_the_fit() -> None:
    torch.manual_seed(0)
    pred, target = torch.rand(2, 1, 4, 5), torch.rand(2, 1, 4, 5)
    mask = torch.rand(2, 1, 4, 5) > 0.3
    spoiled = torch.where(mask, pred, torch.full_like(pred, float("nan")))
    spoiled[~mask & (torch.rand(2, 1, 4, 5) > 0.5)] = float("inf")
    assert all(torch.equal(a, b) for a, b in zip(fit_scale_shift(spoiled, target, mask),
                                                  fit_scale_shift(pred, target, mask), strict=True))


def test_fit_of_a_constant_prediction_is_the_mean_target() -> None:
    pred = torch.ones(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    scale, shift = fit_scale_shift(pred, target, mask)
    assert float(scale) == 0.0 and float(shift) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same shape"):
        fit_scale_shift(pred, target[..., :1], mask)


def test_ssi_loss_is_zero_for_an_affine_disparity_and_invariant() -> None:
    torch.manual_seed(1)
    depth = torch.rand(2, 1, 5, 6) * 9 + 1
    depth[0, 0, 0, 0] = 0.0  # invalid
    loss = imde.losses.create("ssi")
    exact = 3.0 / depth.clamp_min(1e-3) + 0.2
    assert float(loss(exact, depth)) == pytest.approx(0.0, abs=1e-9)
    pred = torch.rand(2, 1, 5, 6, requires_grad=True)
    value = loss(pred, depth)
    assert float(loss(4.0 * pred.detach() - 1.5, depth)) == pytest.approx(float(value.detach()), rel=1e-4)
    value.backward()
    assert pred.grad is not None and pred.grad[0, 0, 0, 0] == 0 and pred.grad.abs().sum() > 0


def test_dav2_silog_by_hand() -> None:
    pred = torch.tensor([[[[2.0, 4.0]]]])
    depth = torch.tensor([[[[1.0, 1.0]]]])
    err = torch.log(torch.tensor([2.0, 4.0]))
    expected = torch.sqrt((err**2).mean() - 0.5 * err.mean() ** 2)
    assert float(imde.losses.create("dav2_silog")(pred, depth)) == pytest.approx(float(expected), rel=1e-6)


class _Relative(nn.Module):
    """A relative model: predicts ``a / depth + b`` (depth smuggled in as the image's first channel)."""

    prediction = "disparity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.3 / x[:, :1] + 2.0


def test_zero_shot_evaluation_recovers_an_affine_disparity() -> None:
    torch.manual_seed(2)
    depth = torch.rand(2, 1, 8, 8) * 8 + 1
    batches = [{"image": depth.expand(2, 3, 8, 8).clone(), "depth": depth}]
    result = evaluate(_Relative(), batches, device="cpu", max_depth=10.0, progress=False)
    assert result.alignment == "scale_shift_disparity" and ZERO_SHOT_PROTOCOL in result.protocol
    assert result.metrics["rel"] == pytest.approx(0.0, abs=1e-3) and result.metrics["delta1"] == 1.0
    plain = evaluate(_Relative(), batches, device="cpu", max_depth=10.0, progress=False, alignment="none")
    assert plain.metrics["rel"] > 0.1 and "zero-shot" not in plain.protocol
    with pytest.raises(ValueError, match="alignment='median'"):
        evaluate(_Relative(), batches, device="cpu", progress=False, alignment="median")


def test_aligned_depth_stays_finite_and_positive() -> None:
    depth = torch.tensor([[[[1.0, 2.0, 4.0]]]])
    pred = torch.tensor([[[[-5.0, 0.0, 5.0]]]])  # the fit goes negative somewhere
    aligned = align_disparity(pred, depth, depth > 0)
    assert torch.isfinite(aligned).all() and (aligned > 0).all() and aligned.max() <= 1000 * 4.0 + 1e-3
