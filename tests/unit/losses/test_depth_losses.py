"""The original losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

import imde.losses
from imde.losses import HuLoss, MaskedLpLoss, SilogLoss, sobel_gradients

LN_HALF = math.log(0.5)


def test_hu_loss_single_pixel_has_no_gradient_term() -> None:
    # On a 1x1 image the Sobel filters only see zero padding: all gradients are 0 and normals are (0, 0, 1).
    loss = HuLoss()(torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 1.0))
    assert loss.item() == pytest.approx(math.log(1.5) + 2 * LN_HALF)


def test_hu_loss_two_pixels_by_hand() -> None:
    # 1x2 image [a, b] with zero padding: dx = [-2b, 2a], dy = [0, 0].
    pred = torch.tensor([[[[1.0, 1.0]]]])
    depth = torch.tensor([[[[1.0, 0.0]]]])  # the 0 (invalid) pixel is included, as in the original
    dx, dy = sobel_gradients(depth)
    assert dx.flatten().tolist() == [0.0, 2.0] and dy.abs().sum() == 0
    depth_term = (LN_HALF + math.log(1.5)) / 2
    dx_term = (math.log(2.5) + LN_HALF) / 2  # |-2 - 0| and |2 - 2|
    dy_term = LN_HALF
    normal_term = (1 - 1 / math.sqrt(5)) / 2  # n_pred=(2,0,1) vs n_gt=(0,0,1); then identical normals
    assert HuLoss()(pred, depth).item() == pytest.approx(depth_term + dx_term + dy_term + normal_term, rel=1e-6)


def test_hu_loss_mask_invalid() -> None:
    pred = torch.tensor([[[[1.0, 1.0]]]])
    depth = torch.tensor([[[[1.0, 0.0]]]])
    # Only the first pixel is valid; no pixel has a fully valid 3x3 neighbourhood, so only the depth term is left.
    assert HuLoss(mask_invalid=True)(pred, depth).item() == pytest.approx(LN_HALF)


def test_hu_loss_shapes_and_no_nan_with_zeros() -> None:
    pred = torch.rand(2, 1, 6, 7, requires_grad=True)
    depth = torch.rand(2, 1, 6, 7) * 5
    depth[:, :, :2] = 0
    for mask_invalid in (False, True):
        loss = HuLoss(mask_invalid)(pred, depth)
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert HuLoss()(pred[:, 0], depth[:, 0]).item() == pytest.approx(HuLoss()(pred, depth).item())
    # A perfect prediction reaches the minimum 3 ln(0.5).
    assert HuLoss()(depth, depth).item() == pytest.approx(3 * LN_HALF)


def test_silog_by_hand_and_mask() -> None:
    pred = torch.tensor([[[2.0, 1.0, 5.0]]])
    depth = torch.tensor([[[1.0, 1.0, 0.05]]])  # the last pixel is below NYU's 0.1 m threshold
    ln2 = math.log(2.0)
    expected = 10 * math.sqrt(ln2**2 / 2 - 0.85 * (ln2 / 2) ** 2)
    assert SilogLoss()(pred, depth).item() == pytest.approx(expected, rel=1e-6)
    assert imde.losses.create("bts_silog")(pred, depth).item() == pytest.approx(expected, rel=1e-6)
    # KITTI keeps only depth > 1 m: here only the first pixel after raising it.
    kitti = imde.losses.create("bts_silog_kitti")
    depth_k = torch.tensor([[[1.5, 1.0, 0.5]]])
    e = math.log(2.0 / 1.5)
    assert kitti(pred, depth_k).item() == pytest.approx(10 * math.sqrt(e**2 - 0.85 * e**2), rel=1e-6)


def test_silog_is_scale_invariant_with_full_variance_focus() -> None:
    pred, depth = torch.rand(1, 1, 4, 4) + 0.5, torch.rand(1, 1, 4, 4) + 0.5
    loss = SilogLoss(variance_focus=1.0)
    assert loss(pred * 3, depth).item() == pytest.approx(loss(pred, depth).item(), abs=1e-4)


def test_silog_finite_gradients_on_perfect_and_empty() -> None:
    depth = torch.rand(1, 1, 3, 3) + 1
    pred = depth.clone().requires_grad_(True)
    loss = SilogLoss()(pred, depth)
    (grad,) = torch.autograd.grad(loss, pred)
    assert loss.item() == pytest.approx(0.0, abs=1e-4) and torch.isfinite(grad).all()
    empty = SilogLoss()(pred, torch.zeros_like(depth))
    assert empty.item() == 0.0 and empty.requires_grad


def test_cspn_masked_l1_l2_by_hand() -> None:
    pred = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    depth = torch.tensor([[[2.0, 0.0, 1.0, float("nan")]]])
    assert imde.losses.create("cspn_l1")(pred, depth).item() == pytest.approx((1 + 2) / 2)
    assert imde.losses.create("cspn_l2")(pred, depth).item() == pytest.approx((1 + 4) / 2)
    assert MaskedLpLoss()(pred, torch.zeros_like(pred)).item() == 0.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        HuLoss()(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="loss name='l3'"):
        imde.losses.create("l3")
    with pytest.raises(ValueError, match="power=3"):
        MaskedLpLoss(power=3)
