"""Per-batch sums and counts of Eq. 1, without materialising the upsampled activations.

Step 1 of Eq. 1 upsamples each activation map ``A[b, k]`` (``h x w``) bilinearly (``align_corners=False``)
to the depth map's ``H x W``: ``U = W_h A W_w^T`` with sparse interpolation matrices ``W_h [H, h]`` and
``W_w [W, w]`` (two non-zero weights per row). Step 2 sums ``U`` over the pixels of every bin ``d``. Since
both steps are linear in ``A``,

    sum_{Y,X} U[b,k,Y,X] M_d[b,Y,X] = sum_{y,x} A[b,k,y,x] S[b,d,y,x],   S[b,d] = W_h^T M_d[b] W_w,

where ``M_d`` is the mask of bin ``d``: the bin masks "splatted" back through the interpolation weights.

``S`` is sparse in ``d``: a band of a few feature rows of one image only sees the bins of the depth pixels
around it (7-10 of 64 on average on smooth NYU-like depth, about 25 at most). :func:`response_sums`
therefore works band by band (whole feature rows, about ``_TILE_PIXELS`` pixels each). For each band it
ranks the bins present in each image, splats the band's depth pixels against those ranks with one weighted
``bincount`` (four taps per depth pixel), multiplies the band's activations by that compact ``S`` with one
batched matrix product ``[B, K, pixels] x [B, pixels, present]`` and adds the columns back to their bins.
Compared with one dense ``S [B, N_b, h*w]``, this does about 2.5x fewer multiply-adds (never more), and
every intermediate is a few MB and stays in cache (fresh buffers of tens of MB cost more in page faults than
the arithmetic). The loop runs over bands (``h / rows``, independent of the batch, the pixels' values and
``N_b``); inside a band everything is one vectorised pass.

Exactness: the products and sums are float64 (each band's activations are converted to float64 right
before its product), so the result equals upsample-then-sum up to float64 rounding. Measured alternative,
not used: float32 products summed in float32 over chunks of at most 2048 pixels and in float64 across
chunks halved the time of the product (22 ms instead of 43 ms for the dense ``S`` at B=8, K=64, one
thread) but agreed with float64 only to 2.5e-7 relative per entry on ReLU activations (worse where signed
activations cancel): inside the benchmark's 1e-6 but not the float64 accumulation ``spec.md`` requires.
The backward pass (:class:`_BandedSums`) computes each band's gradient in the activations' dtype: each
gradient element sums the few non-zero ``S`` entries of its pixel.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_TILE_PIXELS = 1024  # feature pixels per band (whole rows): ~4 MB of float64 activations at B=8, K=64


def interp_taps(in_size: int, out_size: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights of 1-D linear interpolation, as ``F.interpolate(align_corners=False)``.

    Output position ``i`` reads ``(1 - w1[i]) * x[i0[i]] + w1[i] * x[i1[i]]``.

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


@functools.lru_cache(maxsize=16)
def band_taps(
    feature_size: tuple[int, int], depth_size: tuple[int, int], band_rows: int, device: torch.device
) -> tuple[tuple[int, int, int, int, Tensor, Tensor], ...]:
    """The four bilinear taps of every depth pixel, grouped by bands of ``band_rows`` feature rows (cached).

    Args:
        feature_size: ``(h, w)`` of the activation maps.
        depth_size: ``(H, W)`` of the depth map.
        band_rows: feature rows per band (the last band may be shorter).
        device: where the tensors live.

    Returns:
        One ``(y_start, y_stop, row_start, row_stop, offsets, weights)`` per band: its feature rows
        ``[y_start, y_stop)``, the depth rows ``[row_start, row_stop)`` with a tap in it, and for those depth
        rows int64 ``offsets [4, rows, W]`` (flat feature pixel within the band) and float64
        ``weights [4, rows, W]`` (0 for a tap outside the band, so each tap counts in exactly one band).
    """
    (h, w), (out_h, out_w) = feature_size, depth_size
    y0, y1, wy1 = interp_taps(h, out_h, device)
    x0, x1, wx1 = interp_taps(w, out_w, device)
    rows, row_weights = torch.stack([y0, y1]), torch.stack([1.0 - wy1, wy1])  # [2, H]
    cols = torch.stack([x0, x1]).view(1, 2, 1, out_w)
    col_weights = torch.stack([1.0 - wx1, wx1]).view(1, 2, 1, out_w)
    bands = []
    for y_start in range(0, h, band_rows):  # once per geometry (then cached)
        y_stop = min(y_start + band_rows, h)
        inside = (rows >= y_start) & (rows < y_stop)  # [2, H]; source rows are monotonic in the depth row
        reach = inside.any(0).nonzero().flatten()
        if reach.numel() == 0:  # downsampling can skip feature rows entirely
            continue
        start, stop = int(reach[0]), int(reach[-1]) + 1
        local_rows = (rows[:, start:stop] - y_start).clamp(0, y_stop - y_start - 1)
        offsets = (local_rows * w).view(2, 1, -1, 1) + cols
        weights = (row_weights[:, start:stop] * inside[:, start:stop]).view(2, 1, -1, 1) * col_weights
        bands.append((y_start, y_stop, start, stop, offsets.reshape(4, -1, out_w), weights.reshape(4, -1, out_w)))
    return tuple(bands)


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


def splat_band(labels: Tensor, num_bins: int, offsets: Tensor, weights: Tensor, pixels: int) -> tuple[Tensor, Tensor]:
    """Compact ``S`` of one band: the bin masks of ``labels`` splatted through the taps, over present bins only.

    Args:
        labels: int64 ``[B, rows, W]`` bin labels of the depth rows that reach the band, ``-1`` invalid.
        num_bins: ``N_b``.
        offsets: int64 ``[4, rows, W]`` flat feature pixel (within the band) of each tap.
        weights: float64 ``[4, rows, W]`` interpolation weight of each tap (0 outside the band).
        pixels: feature pixels in the band.

    Returns:
        ``(splat, bin_of_column)``: float64 ``[B, C, pixels]`` with ``C`` the largest number of bins present
        in one image's band, ``splat[b, c, p]`` the total weight that feature pixel ``p`` gives to the depth
        pixels of bin ``bin_of_column[b, c]`` (int64 ``[B, C]``; ``N_b`` for an unused column, all-zero).
    """
    batch = labels.shape[0]
    slots = labels + 1 + torch.arange(batch, device=labels.device).view(batch, 1, 1) * (num_bins + 1)
    present = torch.bincount(slots.flatten(), minlength=batch * (num_bins + 1)).view(batch, -1)[:, 1:] > 0
    num_columns = int(present.sum(1).max())
    local = torch.where(present, present.cumsum(1) - 1, num_columns)  # [B, N_b]; column C: absent bins
    bin_of_column = torch.full((batch, num_columns + 1), num_bins, dtype=torch.int64, device=labels.device)
    bin_of_column.scatter_(1, local, torch.arange(num_bins, device=labels.device).expand(batch, -1))
    bin_of_column[:, num_columns] = num_bins
    # column of every label, -1 first (it goes to the spare column C too), flat over [B, C + 1]
    column = torch.cat([local.new_full((batch, 1), num_columns), local], 1)
    column += torch.arange(batch, device=labels.device).view(batch, 1) * (num_columns + 1)
    keys = (column.flatten()[slots] * pixels).unsqueeze(0) + offsets.unsqueeze(1)  # [4, B, rows, W]
    tap_weights = weights.unsqueeze(1).expand(keys.shape).flatten()
    size = batch * (num_columns + 1) * pixels
    if labels.is_cpu:  # the fastest scatter on CPU; weighted bincount has no deterministic CUDA kernel
        splat = torch.bincount(keys.flatten(), tap_weights, minlength=size)
    else:
        splat = torch.zeros(size, dtype=weights.dtype, device=labels.device).index_add_(0, keys.flatten(), tap_weights)
    return splat.view(batch, num_columns + 1, pixels)[:, :num_columns], bin_of_column[:, :num_columns]


def response_sums(activations: Tensor, bins: Tensor, num_bins: int, abs_first: bool = False) -> tuple[Tensor, Tensor]:
    """Per-bin sums of the upsampled activations and per-bin pixel counts of one batch (Eq. 1, steps 1-2).

    Equal (up to float64 rounding) to upsampling every map to the depth resolution with
    ``F.interpolate(mode="bilinear", align_corners=False)`` and summing over the pixels of each bin, but
    without materialising the upsampled maps (see the module docstring). Differentiable with respect to
    ``activations``.

    Args:
        activations: ``[B, K, h, w]``.
        bins: int64 ``[B, H, W]`` (or ``[B, 1, H, W]``) labels from :func:`imde.core.bins.digitize`, ``-1``
            for invalid pixels.
        num_bins: ``N_b``.
        abs_first: take ``|A|`` before upsampling (the authors' training convention).

    Returns:
        ``(sums [K, N_b]`` float64, ``counts [N_b]`` int64).
    """
    if activations.ndim != 4:
        raise ValueError(f"activations: expected [B, K, h, w], got shape {tuple(activations.shape)}")
    batch, units, h, w = activations.shape
    bins = check_bins(bins, num_bins, batch)
    feats = activations.abs() if abs_first else activations
    return _BandedSums.apply(feats, bins, num_bins), bin_counts(bins, num_bins)


class _BandedSums(torch.autograd.Function):
    """``sums[k, d] = sum_{b,y,x} A[b,k,y,x] S[b,d,y,x]``, band by band (module docstring), with its gradient.

    A custom function so that the backward pass writes each band's gradient straight into one gradient
    tensor (autograd's own graph of slices, float64 copies and products would allocate and concatenate a
    full-size gradient per band). ``dsums/dA[b,k,y,x] = sum_d grad[k, d] S[b,d,y,x]``: one small batched
    product per band against the saved compact ``S``, in the activations' dtype (each gradient element sums
    the ~3 non-zero ``S`` entries of its pixel, so float32 loses nothing measurable: ~1e-7 relative).
    """

    @staticmethod
    def forward(ctx, activations: Tensor, bins: Tensor, num_bins: int) -> Tensor:  # noqa: D102 (see the class)
        batch, units, h, w = activations.shape
        band_rows = max(1, _TILE_PIXELS // w)
        sums = torch.zeros(units, num_bins + 1, dtype=torch.float64, device=activations.device)  # N_b: unused
        saved = []
        for y_start, y_stop, start, stop, offsets, weights in band_taps(
            (h, w), tuple(bins.shape[1:]), band_rows, bins.device
        ):
            pixels = (y_stop - y_start) * w
            splat, bin_of_column = splat_band(bins[:, start:stop], num_bins, offsets, weights, pixels)
            if splat.shape[1] == 0:  # no valid depth pixel reaches this band
                continue
            band = activations[:, :, y_start:y_stop].reshape(batch, units, pixels).to(torch.float64)
            partial = torch.bmm(band, splat.transpose(1, 2))  # [B, K, C]
            sums.index_add_(1, bin_of_column.flatten(), partial.transpose(0, 1).reshape(units, -1))
            saved.append((y_start, y_stop, splat, bin_of_column))
        if ctx.needs_input_grad[0]:
            ctx.shape, ctx.dtype, ctx.saved_bands = activations.shape, activations.dtype, saved
        return sums[:, :num_bins]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sums: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102 (see the class)
        batch, units, h, w = ctx.shape
        grad = torch.empty(ctx.shape, dtype=ctx.dtype, device=grad_sums.device)
        padded = torch.cat([grad_sums, grad_sums.new_zeros(units, 1)], 1).to(ctx.dtype)  # column N_b: padding
        covered = 0
        for y_start, y_stop, splat, bin_of_column in ctx.saved_bands:
            grad[:, :, covered:y_start] = 0  # rows that no valid depth pixel reaches
            grad_partial = padded[:, bin_of_column].transpose(0, 1)  # [B, K, C]
            grad_band = torch.bmm(grad_partial, splat.to(ctx.dtype))  # [B, K, pixels]
            grad[:, :, y_start:y_stop] = grad_band.view(batch, units, y_stop - y_start, w)
            covered = y_stop
        grad[:, :, covered:] = 0
        return grad, None, None
