"""Per-image least-squares scale and shift: the alignment of affine-invariant (relative) predictions.

Relative depth networks (Depth Anything V2, DPT, MiDaS) predict disparity up to an unknown scale ``s`` and shift
``t`` per image. The zero-shot protocol fits ``s, t = argmin sum_i m_i (s p_i + t - d_i)^2`` over the valid pixels
``m`` of each image, with ``d = 1 / depth`` the ground-truth disparity, and measures the aligned prediction. The
fit is the closed form of the 2x2 normal equations, vectorised over the batch.

>>> import torch
>>> pred = torch.tensor([[[[1.0, 2.0, 3.0]]]])
>>> scale, shift = fit_scale_shift(pred, 2 * pred + 1, torch.ones_like(pred, dtype=torch.bool))
>>> round(float(scale), 4), round(float(shift), 4)
(2.0, 1.0)
"""

from __future__ import annotations

import torch

ZERO_SHOT_PROTOCOL = "zero-shot: per-image least-squares scale and shift in disparity, metrics in depth"
"""The name every result of a relative model carries."""


def fit_scale_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``scale, shift`` (each ``[B]``) minimising ``sum mask * (scale * pred + shift - target)^2``.

    Args:
        pred: Predictions ``[B, ...]``.
        target: Targets of the same shape (non-finite values must be masked out).
        mask: Valid pixels (bool, same shape). An image with fewer than two distinct valid predictions gets
            ``scale = 0`` and ``shift`` = the mean target (the best constant).
        eps: Smallest determinant treated as non-singular.

    Raises:
        ValueError: when the shapes differ.
    """
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(f"fit_scale_shift: pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
                         f"{tuple(mask.shape)} must have the same shape [B, ...]")
    weight = mask.reshape(mask.shape[0], -1).to(pred.dtype)
    p = torch.where(mask, pred, torch.zeros_like(pred)).reshape(pred.shape[0], -1)  # NaN outside the mask: dropped
    d = torch.where(mask, target, torch.zeros_like(target)).reshape(target.shape[0], -1).to(pred.dtype)
    a00, a01, a11 = (p * p).sum(1), p.sum(1), weight.sum(1)
    b0, b1 = (p * d).sum(1), d.sum(1)
    det = a00 * a11 - a01 * a01
    ok = det.abs() > eps * (a00 * a11).clamp_min(eps)
    safe = torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    shift = torch.where(ok, (a00 * b1 - a01 * b0) / safe, b1 / a11.clamp_min(1))
    return scale, shift


def align_disparity(pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor,
                    min_depth: float = 1e-3) -> torch.Tensor:
    """Aligned predicted depth ``1 / (s p + t)`` of a relative (disparity) prediction, for the metrics in depth.

    Args:
        pred: Predicted disparity ``[B, 1, H, W]`` (affine-invariant).
        depth: Ground-truth depth in metres, same shape.
        valid: Pixels used for the fit (and later for the metrics).
        min_depth: Ground-truth depths are clamped at this before inversion. The aligned disparity is clamped
            at a thousandth of the smallest valid target disparity, so the aligned depth stays finite and
            positive (at most 1000 times the largest valid depth).

    Returns:
        Depth in metres, same shape; finite and positive everywhere.
    """
    target = 1.0 / depth.clamp_min(min_depth)
    scale, shift = fit_scale_shift(pred, target, valid)
    view = (-1,) + (1,) * (pred.ndim - 1)
    aligned = scale.view(view) * pred + shift.view(view)
    floor = torch.where(valid, target, torch.full_like(target, float("inf"))).flatten(1).amin(1)
    floor = torch.where(torch.isfinite(floor), floor, torch.ones_like(floor)).view(view) * 1e-3
    return 1.0 / torch.maximum(aligned, floor)
