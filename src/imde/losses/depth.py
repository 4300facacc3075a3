"""The depth networks' original training losses: Hu et al. (MFF), the scale-invariant log loss (BTS, Depth Anything
V2 metric), CSPN's masked L1/L2, and the scale-and-shift-invariant loss of relative (disparity) models.

Every loss is called as ``loss_fn(pred, depth) -> scalar`` with ``pred`` and ``depth`` of the same shape,
``[B, 1, H, W]`` or ``[B, H, W]``, in metres. :func:`imde.losses.create` builds one from the name a model
declares in ``model.default_loss``.

>>> import torch
>>> loss = MaskedLpLoss(1)
>>> float(loss(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[2.0, 0.0]]])))
1.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imde.core.affine import fit_scale_shift

HU_OFFSET = 0.5  # ln(|x| + 0.5) in Hu et al.'s loss
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def _as_4d(pred: torch.Tensor, depth: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != depth.shape or pred.ndim not in (3, 4) or (pred.ndim == 4 and pred.shape[1] != 1):
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and depth {tuple(depth.shape)} must have the same shape, "
                         f"[B, 1, H, W] or [B, H, W] (resize the ground truth to the prediction first)")
    if pred.ndim == 3:
        pred, depth = pred.unsqueeze(1), depth.unsqueeze(1)
    return pred, depth.to(pred.dtype)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask``; 0 (still attached to the graph of ``like``) when the mask is empty."""
    if not mask.any():
        return like.sum() * 0.0
    return values[mask].mean()


def sobel_gradients(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel x / y gradients of ``[B, 1, H, W]`` depth with zero padding (cross-correlation, as in Hu et al.)."""
    kernels = torch.tensor((SOBEL_X, SOBEL_Y), dtype=depth.dtype, device=depth.device).unsqueeze(1)
    grads = F.conv2d(depth, kernels, padding=1)
    return grads[:, 0:1], grads[:, 1:2]


class HuLoss(nn.Module):
    """Hu et al.'s loss (WACV 2019, Eq. 2-5): depth, gradient and surface-normal terms, all weights 1.

    ``L = mean ln(|d - g| + 0.5) + mean ln(|dx_d - dx_g| + 0.5) + mean ln(|dy_d - dy_g| + 0.5)
    + mean |1 - cos(n_d, n_g)|`` with ``n = (-dx, -dy, 1)`` and Sobel gradients. The normals' norms are >= 1,
    so no epsilon is needed.

    Args:
        mask_invalid: ``False`` (the original): every pixel counts, including zeros in the ground truth.
            ``True``: the depth term averages over pixels with a positive finite ground truth, and the gradient
            and normal terms over pixels whose whole 3x3 neighbourhood is valid.
    """

    def __init__(self, mask_invalid: bool = False) -> None:
        super().__init__()
        self.mask_invalid = mask_invalid

    def forward(self, pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        pred, depth = _as_4d(pred, depth, "HuLoss")
        valid = torch.isfinite(depth) & (depth > 0)
        depth = torch.where(valid, depth, torch.zeros_like(depth))
        if self.mask_invalid:
            inner = -F.max_pool2d(-valid.to(pred.dtype), 3, stride=1, padding=1) > 0.5
        else:
            valid = inner = torch.ones_like(valid)
        pred_dx, pred_dy = sobel_gradients(pred)
        gt_dx, gt_dy = sobel_gradients(depth)
        ones = torch.ones_like(pred)
        pred_normal = torch.cat([-pred_dx, -pred_dy, ones], dim=1)
        gt_normal = torch.cat([-gt_dx, -gt_dy, ones], dim=1)
        cosine = (pred_normal * gt_normal).sum(1, keepdim=True) / (pred_normal.norm(dim=1, keepdim=True)
                                                                   * gt_normal.norm(dim=1, keepdim=True))
        loss_depth = _masked_mean(torch.log((pred - depth).abs() + HU_OFFSET), valid, pred)
        loss_dx = _masked_mean(torch.log((pred_dx - gt_dx).abs() + HU_OFFSET), inner, pred)
        loss_dy = _masked_mean(torch.log((pred_dy - gt_dy).abs() + HU_OFFSET), inner, pred)
        loss_normal = _masked_mean((1 - cosine).abs(), inner, pred)
        return loss_depth + loss_dx + loss_dy + loss_normal


class SilogLoss(nn.Module):
    """BTS's scale-invariant log loss: ``scale * sqrt(mean e^2 - variance_focus * (mean e)^2)``, ``e = ln p - ln g``.

    Averaged over pixels with ``g > min_depth`` (0.1 m on NYU, 1 m on KITTI) and ``p > 0``. The square root is
    taken of a value clamped at 1e-12, so a perfect prediction has a finite (zero) gradient.

    Args:
        min_depth: Ground-truth depths at or below this are ignored.
        variance_focus: Weight of the squared mean (0.85 in BTS).
        scale: Overall factor (10 in BTS).
    """

    def __init__(self, min_depth: float = 0.1, variance_focus: float = 0.85, scale: float = 10.0) -> None:
        super().__init__()
        if not 0 <= variance_focus <= 1:
            raise ValueError(f"SilogLoss: variance_focus={variance_focus} must be in [0, 1]")
        self.min_depth, self.variance_focus, self.scale = min_depth, variance_focus, scale

    def forward(self, pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        pred, depth = _as_4d(pred, depth, "SilogLoss")
        mask = torch.isfinite(depth) & (depth > self.min_depth) & (pred > 0)
        if not mask.any():
            return pred.sum() * 0.0
        err = torch.log(pred[mask]) - torch.log(depth[mask])
        variance = (err**2).mean() - self.variance_focus * err.mean() ** 2
        return self.scale * torch.sqrt(variance.clamp_min(1e-12))


class MaskedLpLoss(nn.Module):
    """CSPN's masked loss: mean ``|p - g|`` (``power=1``) or ``(p - g)^2`` (``power=2``) over pixels with ``g > min``.

    Args:
        power: 1 (L1, CSPN's default) or 2 (L2).
        min_depth: Ground-truth depths at or below this (1e-4 m in CSPN) are ignored.
    """

    def __init__(self, power: int = 1, min_depth: float = 1e-4) -> None:
        super().__init__()
        if power not in (1, 2):
            raise ValueError(f"MaskedLpLoss: power={power}; expected 1 (L1) or 2 (L2)")
        self.power, self.min_depth = power, min_depth

    def forward(self, pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        pred, depth = _as_4d(pred, depth, "MaskedLpLoss")
        mask = torch.isfinite(depth) & (depth > self.min_depth)
        return _masked_mean((pred - depth).abs() ** self.power, mask, pred)


class ScaleShiftInvariantLoss(nn.Module):
    """Loss of relative models: mean squared error in disparity after the per-image least-squares scale and shift.

    The prediction ``p`` is an affine-invariant disparity; the target is ``1 / g`` over pixels with
    ``min_depth < g <= max_depth``. Each image's ``s, t`` come from :func:`imde.core.affine.fit_scale_shift` and the
    loss is the masked mean of ``(s p + t - 1 / g)^2`` (MiDaS's scale-and-shift-invariant MSE, without its
    gradient-matching term). The fit is differentiated through, so the loss is invariant to ``p -> a p + b``.

    Args:
        min_depth: Ground-truth depths at or below this are ignored.
        max_depth: Ground-truth depths above this are ignored.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float = float("inf")) -> None:
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"ScaleShiftInvariantLoss: expected 0 < min_depth < max_depth, got {min_depth}, "
                             f"{max_depth}")
        self.min_depth, self.max_depth = min_depth, max_depth

    def forward(self, pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        pred, depth = _as_4d(pred, depth, "ScaleShiftInvariantLoss")
        mask = torch.isfinite(depth) & (depth > self.min_depth) & (depth <= self.max_depth)
        target = 1.0 / torch.where(mask, depth, torch.ones_like(depth))
        scale, shift = fit_scale_shift(pred, target, mask)
        aligned = scale.view(-1, 1, 1, 1) * pred + shift.view(-1, 1, 1, 1)
        return _masked_mean((aligned - target) ** 2, mask, pred)
