"""Depth metrics (paper Sec. 5.1, Table 6; docs/math.md, "Depth metrics"): one torch implementation.

Per image, on its valid pixels (``min_depth < gt < max_depth``, inside the optional crop), with the
prediction clamped to ``[min_depth, max_depth]`` (``+inf`` becomes ``max_depth``):

- ``delta1.02``, ``delta1.05``, ``delta1.10``, ``delta1``, ``delta2``, ``delta3``: fraction of pixels with
  ``max(gt/p, p/gt) < t`` for ``t`` = 1.02, 1.05, 1.10, 1.25, 1.25², 1.25³;
- ``rms`` = sqrt(mean (gt - p)²); ``mae`` = mean |gt - p| (CSPN's model selection); ``rel`` = mean |gt - p| / gt;
  ``sq_rel`` = mean (gt - p)² / gt;
- ``rms_log`` = sqrt(mean (ln gt - ln p)²); ``log10`` = mean |log10 gt - log10 p|;
- ``silog`` = 100 sqrt(mean e² - (mean e)²) with e = ln p - ln gt (BTS).

A dataset figure is the mean over images (the authors', BTS and monodepth2 protocol); images without a
valid pixel are skipped and counted. :func:`compute_depth_metrics` is the pure per-image function,
:class:`imde.accumulators.DepthMetrics` the streaming, mergeable, all-reducible accumulator.

>>> gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]]])
>>> pred = torch.tensor([[[[1.0, 2.5], [4.0, 7.0]]]])
>>> values, valid = compute_depth_metrics(pred, gt, min_depth=1e-3, max_depth=10.0)
>>> round(values["rms"].item(), 4), round(values["delta1"].item(), 4), valid.tolist()
(0.2887, 0.6667, [True])
"""

from __future__ import annotations

import math

import torch

DELTA_THRESHOLDS: dict[str, float] = {
    "delta1.02": 1.02,
    "delta1.05": 1.05,
    "delta1.10": 1.10,
    "delta1": 1.25,
    "delta2": 1.25**2,
    "delta3": 1.25**3,
}
ERROR_METRICS = ("rms", "mae", "rel", "sq_rel", "rms_log", "log10", "silog")
METRIC_NAMES: tuple[str, ...] = (*DELTA_THRESHOLDS, *ERROR_METRICS)
HIGHER_IS_BETTER = frozenset(DELTA_THRESHOLDS)
_LN10 = math.log(10.0)


def _as_bhw(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        return tensor[:, 0]
    if tensor.dim() == 3:
        return tensor
    raise ValueError(f"{name}: expected shape [B, 1, H, W] or [B, H, W], got {list(tensor.shape)}")


def valid_mask(
    gt: torch.Tensor, *, min_depth: float, max_depth: float, crop: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean ``[B, H, W]``: finite ground truth with ``min_depth < gt < max_depth``, inside ``crop``.

    Args:
        gt: ground truth ``[B, 1, H, W]`` or ``[B, H, W]`` in metres.
        min_depth: exclusive lower cap.
        max_depth: exclusive upper cap.
        crop: optional boolean ``[H, W]`` mask (e.g. ``imde.core.crops.crop_mask(name, H, W)``).
    """
    gt = _as_bhw(gt, "gt")
    valid = torch.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if crop is not None:
        if crop.shape != gt.shape[-2:]:
            raise ValueError(f"crop: expected a mask of shape {list(gt.shape[-2:])}, got {list(crop.shape)}")
        valid = valid & crop.to(device=gt.device, dtype=torch.bool)
    return valid


def compute_depth_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    crop: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-image depth metrics (Sec. 5.1), vectorised over the batch.

    Args:
        pred: predicted depth ``[B, 1, H, W]`` or ``[B, H, W]`` in metres, at the ground truth's resolution.
        gt: ground-truth depth of the same shape; non-finite or non-positive values mean no measurement.
        min_depth: lower cap (valid gt is strictly above; the prediction is clamped to it).
        max_depth: upper cap (valid gt is strictly below; the prediction is clamped to it, ``+inf`` too).
        crop: optional boolean ``[H, W]`` evaluation crop.

    Returns:
        ``(values, has_valid)``: ``values[name]`` is a float64 tensor ``[B]`` for every name of
        :data:`METRIC_NAMES` (NaN for images without a valid pixel), ``has_valid`` a boolean ``[B]``.

    Raises:
        ValueError: mismatched shapes, or caps with ``max_depth <= min_depth``.
    """
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"min_depth={min_depth}, max_depth={max_depth}: expected 0 <= min_depth < max_depth")
    pred, gt = _as_bhw(pred, "pred"), _as_bhw(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {list(pred.shape)} and gt {list(gt.shape)}: expected the same [B, H, W] shape")
    valid = valid_mask(gt, min_depth=min_depth, max_depth=max_depth, crop=crop).flatten(1)
    gt = torch.where(valid, gt.flatten(1).float(), 1.0)
    pred = torch.nan_to_num(pred.flatten(1).float(), nan=float("nan"), posinf=max_depth, neginf=min_depth)
    pred = torch.where(valid, pred.clamp(min_depth, max_depth), 1.0)
    count = valid.sum(dim=1, dtype=torch.float64)
    has_valid = count > 0

    def mean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, x, 0.0).sum(dim=1, dtype=torch.float64) / count

    ratio = torch.maximum(gt / pred, pred / gt)
    diff = gt - pred
    log_err = torch.log(pred) - torch.log(gt)
    values = {name: mean((ratio < t).float()) for name, t in DELTA_THRESHOLDS.items()}
    values["rms"] = mean(diff.square()).sqrt()
    values["mae"] = mean(diff.abs())
    values["rel"] = mean(diff.abs() / gt)
    values["sq_rel"] = mean(diff.square() / gt)
    values["rms_log"] = mean(log_err.square()).sqrt()
    values["log10"] = mean(log_err.abs()) / _LN10
    values["silog"] = 100.0 * (mean(log_err.square()) - mean(log_err).square()).clamp_min(0.0).sqrt()
    return values, has_valid
