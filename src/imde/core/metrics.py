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
:class:`DepthMetrics` the streaming, mergeable, all-reducible accumulator.

>>> gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]]])
>>> pred = torch.tensor([[[[1.0, 2.5], [4.0, 7.0]]]])
>>> values, valid = compute_depth_metrics(pred, gt, min_depth=1e-3, max_depth=10.0)
>>> round(values["rms"].item(), 4), round(values["delta1"].item(), 4), valid.tolist()
(0.2887, 0.6667, [True])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

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


@dataclass
class DepthMetrics:
    """Streaming accumulator of :func:`compute_depth_metrics`: per-metric sums over images and counts.

    Memory is independent of the number of images; two accumulators over disjoint data :meth:`merge`
    into the accumulator of the union, and :meth:`all_reduce` sums across ``torch.distributed`` processes.

    Attributes:
        min_depth: lower cap.
        max_depth: upper cap.
        crop: name of the evaluation crop (``imde.core.crops.crop_mask`` names: none, eigen_nyu, eigen_kitti, garg).
    """

    min_depth: float = 1e-3
    max_depth: float = 10.0
    crop: str = "none"

    def __post_init__(self) -> None:
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(
                f"min_depth={self.min_depth}, max_depth={self.max_depth}: expected 0 <= min_depth < max_depth"
            )
        if self.crop != "none":
            from imde.core.crops import crop_mask

            crop_mask(self.crop, 1, 1)  # validates the name now rather than at the first batch
        self._crop_cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        # state: per-metric sums over images with a valid pixel, then num_images, then num_skipped
        self.state = torch.zeros(len(METRIC_NAMES) + 2, dtype=torch.float64)

    def _crop_for(self, height: int, width: int, device: torch.device) -> torch.Tensor | None:
        if self.crop == "none":
            return None
        key = (height, width, str(device))
        if key not in self._crop_cache:
            from imde.core.crops import crop_mask

            self._crop_cache[key] = crop_mask(self.crop, height, width, device=device)
        return self._crop_cache[key]

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Add a batch (pred at gt's resolution); returns its per-image values (see :func:`compute_depth_metrics`)."""
        crop = self._crop_for(gt.shape[-2], gt.shape[-1], gt.device)
        values, has_valid = compute_depth_metrics(
            pred, gt, min_depth=self.min_depth, max_depth=self.max_depth, crop=crop
        )
        stacked = torch.stack([values[name] for name in METRIC_NAMES], dim=1)  # [B, M]
        sums = torch.where(has_valid[:, None], stacked, 0.0).sum(dim=0)
        num_valid = has_valid.sum()
        batch_state = torch.cat([sums, num_valid[None].double(), (has_valid.numel() - num_valid)[None].double()])
        self.state = self.state.to(batch_state.device) + batch_state
        return values

    @property
    def num_images(self) -> int:
        """Images with at least one valid pixel."""
        return int(self.state[-2].item())

    @property
    def num_skipped(self) -> int:
        """Images without a valid pixel (left out of the means)."""
        return int(self.state[-1].item())

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images with a valid pixel (NaN when there is none)."""
        state = self.state.cpu()
        count = state[-2].item()
        if count == 0:
            return {name: float("nan") for name in METRIC_NAMES}
        return {name: state[i].item() / count for i, name in enumerate(METRIC_NAMES)}

    def merge(self, other: DepthMetrics) -> DepthMetrics:
        """Add ``other``'s images to this accumulator (same caps and crop required); returns ``self``."""
        if (other.min_depth, other.max_depth, other.crop) != (self.min_depth, self.max_depth, self.crop):
            raise ValueError(
                f"merge: protocols differ ({other.min_depth}, {other.max_depth}, {other.crop!r}) vs "
                f"({self.min_depth}, {self.max_depth}, {self.crop!r})"
            )
        self.state = self.state + other.state.to(self.state.device)
        return self

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> DepthMetrics:
        """Sum the state over all processes of ``torch.distributed`` (no-op when not initialised); returns ``self``."""
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend(group) == "nccl":
                self.state = self.state.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(self.state, op=dist.ReduceOp.SUM, group=group)
        return self
