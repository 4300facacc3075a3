"""Per-batch sums and counts of Eq. 1, without materialising the upsampled activations.

Step 1 of Eq. 1 upsamples each activation map ``A[b, k]`` (``h x w``) bilinearly (``align_corners=False``)
to the depth map's ``H x W``: ``U = W_h A W_w^T`` with sparse interpolation matrices ``W_h [H, h]`` and
``W_w [W, w]`` (two non-zero weights per row). Step 2 sums ``U`` over the pixels of every bin ``d``. Since
both steps are linear in ``A``,

    sum_{Y,X} U[b,k,Y,X] M_d[b,Y,X] = sum_{y,x} A[b,k,y,x] S[b,d,y,x],   S[b,d] = W_h^T M_d[b] W_w,

where ``M_d`` is the mask of bin ``d``. ``S`` is "splatted" from the bin labels with one weighted
``bincount`` (four taps per depth pixel) and the sums are one batched matrix product over ``(y, x)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def interp_taps(in_size: int, out_size: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights of 1-D linear interpolation, as ``F.interpolate(align_corners=False)``.

    Output position ``i`` reads ``w0[i] * x[i0[i]] + (1 - w0[i]) * x[i0[i] + step[i]]``.

    Returns:
        ``(i0, i1, w1)``: int64 ``[out_size]`` lower and upper source indices and the float64 weight of the
        upper one (the lower one has ``1 - w1``).
    """
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(in_size - 1)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = (src - i0).clamp(0.0, 1.0)
    return i0, i1, w1


def splat_bins(bins: Tensor, num_bins: int, feature_size: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """``S[b, d, y, x]``: the bin masks of ``bins`` pulled back through bilinear upsampling.

    Args:
        bins: int64 ``[B, H, W]`` bin labels, ``-1`` for invalid pixels.
        num_bins: ``N_b``.
        feature_size: ``(h, w)`` of the activation maps.
        dtype: floating dtype of the result.

    Returns:
        ``[B, N_b, h * w]``: ``S[b, d]`` is the total interpolation weight that feature pixel ``(y, x)``
        gives to the depth pixels of bin ``d`` (Eq. 1, steps 1-2 combined).
    """
    batch, out_h, out_w = bins.shape
    h, w = feature_size
    y0, y1, wy1 = interp_taps(h, out_h, bins.device)
    x0, x1, wx1 = interp_taps(w, out_w, bins.device)
    # the four taps (y_i, x_j) of every depth pixel: flat feature offset and weight, [4, 1, H, W]
    offsets = (torch.stack([y0, y1]) * w).view(2, 1, out_h, 1) + torch.stack([x0, x1]).view(1, 2, 1, out_w)
    tap_weights = torch.stack([1.0 - wy1, wy1]).view(2, 1, out_h, 1) * torch.stack([1.0 - wx1, wx1]).view(
        1, 2, 1, out_w
    )
    valid = bins >= 0
    base = (torch.arange(batch, device=bins.device).view(batch, 1, 1) * num_bins + bins.clamp_min(0)) * (h * w)
    keys = base.unsqueeze(0) + offsets.view(4, 1, out_h, out_w)  # [4, B, H, W] flat index into S
    weights = tap_weights.view(4, 1, out_h, out_w).to(dtype) * valid.unsqueeze(0)
    size = batch * num_bins * h * w
    if bins.is_cpu:  # the fastest scatter on CPU; weighted bincount has no deterministic CUDA kernel
        splat = torch.bincount(keys.flatten(), weights.flatten(), minlength=size).to(dtype)
    else:
        splat = torch.zeros(size, dtype=dtype, device=bins.device).index_add_(0, keys.flatten(), weights.flatten())
    return splat.view(batch, num_bins, h * w)


def bin_counts(bins: Tensor, num_bins: int) -> Tensor:
    """int64 ``[N_b]`` number of valid pixels of each bin (the denominator of Eq. 1)."""
    return torch.bincount(bins.flatten() + 1, minlength=num_bins + 1)[1 : num_bins + 1]  # slot 0: invalid (-1)


def check_bins(bins: Tensor, num_bins: int, batch: int) -> Tensor:
    """Return ``bins`` as ``[B, H, W]`` int64, accepting ``[B, 1, H, W]``; raise ``ValueError`` otherwise."""
    if bins.ndim == 4 and bins.shape[1] == 1:
        bins = bins[:, 0]
    if bins.ndim != 3 or bins.shape[0] != batch:
        raise ValueError(f"bins/depth: expected shape [{batch}, H, W] or [{batch}, 1, H, W], got {tuple(bins.shape)}")
    if bins.dtype != torch.int64:
        raise ValueError(f"bins: expected int64 labels from digitize(), got dtype {bins.dtype}")
    if bins.numel() and int(bins.max()) >= num_bins:
        raise ValueError(f"bins: label {int(bins.max())} out of range for num_bins={num_bins}")
    return bins


def response_sums(
    activations: Tensor,
    bins: Tensor,
    num_bins: int,
    abs_first: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Per-bin sums of the upsampled activations and per-bin pixel counts of one batch (Eq. 1, steps 1-2).

    Exactly equal (up to rounding) to upsampling every map to the depth resolution with
    ``F.interpolate(mode="bilinear", align_corners=False)`` and summing over the pixels of each bin, but
    without materialising the upsampled maps. Differentiable with respect to ``activations``.

    Args:
        activations: ``[B, K, h, w]``.
        bins: int64 ``[B, H, W]`` (or ``[B, 1, H, W]``) labels from :func:`imde.core.bins.digitize`, ``-1``
            for invalid pixels.
        num_bins: ``N_b``.
        abs_first: take ``|A|`` before upsampling (the authors' training convention).
        dtype: accumulation dtype (float64 by default, as ``spec.md`` requires).

    Returns:
        ``(sums [K, N_b]`` in ``dtype``, ``counts [N_b]`` int64).
    """
    if activations.ndim != 4:
        raise ValueError(f"activations: expected [B, K, h, w], got shape {tuple(activations.shape)}")
    batch, units, h, w = activations.shape
    bins = check_bins(bins, num_bins, batch)
    feats = activations.abs() if abs_first else activations
    counts = bin_counts(bins, num_bins)
    if (h, w) == tuple(bins.shape[1:]):  # no upsampling: a plain segment sum over pixels
        rows = feats.permute(0, 2, 3, 1).reshape(-1, units).to(dtype)
        slots = (bins.flatten() + 1).clamp_min(0)  # slot 0 collects the invalid pixels
        sums = torch.zeros(num_bins + 1, units, dtype=dtype, device=feats.device).index_add(0, slots, rows)
        return sums[1:].T, counts
    splat = splat_bins(bins, num_bins, (h, w), dtype)
    # one batched matrix product [B, K, hw] x [B, hw, N_b], summed over the batch
    sums = torch.bmm(feats.reshape(batch, units, h * w).to(dtype), splat.transpose(1, 2)).sum(0)
    return sums, counts
