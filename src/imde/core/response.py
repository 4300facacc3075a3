"""Per-batch sums and counts of Eq. 1, without materialising the upsampled activations.

Step 1 of Eq. 1 upsamples each activation map ``A[b, k]`` (``h x w``) bilinearly (``align_corners=False``)
to the depth map's ``H x W``: ``U = W_h A W_w^T`` with sparse interpolation matrices ``W_h [H, h]`` and
``W_w [W, w]`` (two non-zero weights per row). Step 2 sums ``U`` over the pixels of every bin ``d``. Since
both steps are linear in ``A``,

    sum_{Y,X} U[b,k,Y,X] M_d[b,Y,X] = sum_{y,x} A[b,k,y,x] S[b,d,y,x],   S[b,d] = W_h^T M_d[b] W_w,

where ``M_d`` is the mask of bin ``d``: the bin masks "splatted" back through the interpolation weights.

``S`` is sparse in ``d``: a band of a few feature rows of one image only sees the bins of the depth pixels
around it (10-24 of 64 on the benchmark's synthetic depth, more on real scenes that span a wide range).
:func:`response_sums` therefore works band by band (whole feature rows, about ``_TILE_PIXELS`` pixels each).
For each band it ranks the bins present in each image, splats the band's depth pixels against those ranks
with one ``scatter_add_`` (four taps per depth pixel, the taps' weights shared by every image), multiplies the
band's activations by that compact ``S`` with one batched matrix product ``[B, K, pixels] x [B, pixels,
present]`` and scatters the columns back to their bins. Compared with one dense ``S [B, N_b, h*w]``, this does
several times fewer multiply-adds (never more), and every intermediate is a few MB. Those intermediates
are written into buffers shared by the bands of a call (:class:`Scratch`): on CPU a fresh allocation of
that size is fresh pages, and their first-touch page faults cost more than the arithmetic. The loop runs
over bands (``h / rows``, independent of the batch, the pixels' values and ``N_b``); inside a band
everything is one vectorised pass.

Maps that already have the depth's resolution (a head's last convolutions) skip all of this: there ``S`` is the
bins' one-hot and :func:`direct_sums` adds every pixel into its own bin with one ``scatter_add_`` per chunk of
pixels, exact in float64 for every dtype (a band of one such row would still multiply each pixel by every bin
present in it).

Precision: :class:`imde.DepthResponse` (dissection, ``docs/math.md``, "Precision") uses the default
``compute_dtype=torch.float64``: each band's activations are converted to float64 right before its product, so
the result equals upsample-then-sum up to float64 rounding. The training losses pass ``compute_dtype=None``:
the products run in the activations' own dtype (float32 for a float32 network, float64 under ``gradcheck``;
float16 / bfloat16 ones in float32, as their precision would cost ~1e-4 relative), and only the per-band
partial sums are accumulated in float64. In float32 that agrees with the float64 path to about 1e-7 relative
on the benchmark (inside its 1e-6) and halves the cost of the products (no conversion, float32 ``bmm``). The
backward pass (:class:`_BandedSums`) computes each band's gradient in the activations' dtype: each gradient
element sums the few non-zero ``S`` entries of its pixel.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_TILE_PIXELS = 1024  # feature pixels per band (whole rows): ~4 MB of float64 activations at B=8, K=64
_CHUNK_VALUES = 1 << 19  # activations converted to float64 at a time by direct_sums: 4 MB
_LANES = 8  # interleaved copies of the bins in direct_sums (independent chains of additions)


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
    feature_size: tuple[int, int],
    depth_size: tuple[int, int],
    band_rows: int,
    device: torch.device,
    dtype: torch.dtype = torch.float64,
) -> tuple[tuple[int, int, int, int, Tensor, Tensor], ...]:
    """The four bilinear taps of every depth pixel, grouped by bands of ``band_rows`` feature rows (cached).

    Args:
        feature_size: ``(h, w)`` of the activation maps.
        depth_size: ``(H, W)`` of the depth map.
        band_rows: feature rows per band (the last band may be shorter).
        device: where the tensors live.
        dtype: dtype of the weights (the splat of :func:`splat_band` comes out in it).

    Returns:
        One ``(y_start, y_stop, row_start, row_stop, offsets, weights)`` per band: its feature rows
        ``[y_start, y_stop)``, the depth rows ``[row_start, row_stop)`` with a tap in it, and for those depth
        rows int64 ``offsets [4, rows, W]`` (flat feature pixel within the band) and ``weights [4, rows, W]``
        (0 for a tap outside the band, so each tap counts in exactly one band).
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
        weights = weights.reshape(4, -1, out_w).to(dtype)
        bands.append((y_start, y_stop, start, stop, offsets.reshape(4, -1, out_w), weights))
    return tuple(bands)


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


class Scratch:
    """Flat buffers reused from band to band within one call, one per name, grown on demand.

    Every band needs the same few intermediates of a few hundred kB to a few MB. Fresh tensors of that size
    are fresh pages on CPU (glibc maps them anew), and first-touch page faults cost more than the arithmetic
    on them, so a call allocates each intermediate once and every band writes into a view of it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """An uninitialised ``shape`` view of buffer ``name`` (reallocated when too small or of another dtype)."""
        numel = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            buffer = self.buffers[name] = torch.empty(numel, dtype=dtype, device=self.device)
        return buffer[:numel].view(shape)


def band_columns(
    slots: Tensor, num_bins: int, bands: tuple[tuple[int, int, int, int, Tensor, Tensor], ...], width: int
) -> list[tuple[int, Tensor, Tensor]]:
    """The bins present in every band of every image, ranked into columns, for all bands in a few passes.

    Args:
        slots: int64 ``[B, H, W]`` bin labels plus one (0: invalid pixel).
        num_bins: ``N_b``.
        bands: :func:`band_taps` of the geometry.
        width: ``w``, feature pixels per row.

    Returns:
        Per band ``(C, row_start, bin_of_column)``: ``C`` the most bins present in one image's band;
        int64 ``row_start [B, N_b + 1]``, for each slot the start of its column's row in the image's flat splat
        ``[C + 1, pixels]`` (absent bins and invalid pixels share the spare column ``C``, dropped later);
        int64 ``bin_of_column [B, C]`` (``N_b`` for an unused column).
    """
    batch, height = slots.shape[:2]
    device = slots.device
    # presence of each slot in each depth row, cumulated over rows: a band's presence is one difference
    in_rows = torch.zeros(batch, height + 1, num_bins + 1, dtype=torch.bool, device=device)
    in_rows[:, 1:].scatter_(2, slots, True)
    cumulated = in_rows.cumsum(1)
    starts = torch.tensor([band[2] for band in bands], device=device)
    stops = torch.tensor([band[3] for band in bands], device=device)
    present = (cumulated.index_select(1, stops) - cumulated.index_select(1, starts)) > 0  # [B, bands, N_b + 1]
    present[:, :, 0] = False
    most = present.sum(2).amax(0)  # [bands]
    column = torch.where(present, present.cumsum(2) - 1, most.view(1, -1, 1))
    bin_of_column = torch.full((batch, len(bands), int(most.max()) + 1), num_bins, dtype=torch.int64, device=device)
    bin_of_column.scatter_(2, column[:, :, 1:], torch.arange(num_bins, device=device).expand(batch, len(bands), -1))
    pixels = torch.tensor([(band[1] - band[0]) * width for band in bands], device=device)
    column *= pixels.view(1, -1, 1)
    return [(c, column[:, j], bin_of_column[:, j, :c]) for j, c in enumerate(most.tolist())]


def splat_band(
    slots: Tensor,
    row_start: Tensor,
    offsets: Tensor,
    weights: Tensor,
    num_columns: int,
    pixels: int,
    scratch: Scratch | None = None,
    keep: bool = True,
) -> Tensor:
    """Compact ``S`` of one band: the bin masks splatted through the taps, one column per present bin.

    Args:
        slots: int64 ``[B, rows, W]`` bin labels plus one of the depth rows that reach the band.
        row_start: int64 ``[B, N_b + 1]`` flat start of each slot's column row (:func:`band_columns`).
        offsets: int64 ``[4, rows, W]`` flat feature pixel (within the band) of each tap.
        weights: ``[4, rows, W]`` interpolation weight of each tap (0 outside the band), float64 or float32.
        num_columns: ``C`` of the band.
        pixels: feature pixels in the band.
        scratch: buffers shared by the bands of one call (default: fresh ones).
        keep: return a splat of its own (it outlives the next band); ``False`` returns a view of ``scratch``,
            overwritten by the next call.

    Returns:
        ``[B, C, pixels]`` in the weights' dtype: ``splat[b, c, p]`` is the total weight that feature pixel ``p``
        gives to the depth pixels of the bin of column ``c``.
    """
    batch = slots.shape[0]
    scratch = scratch if scratch is not None else Scratch(slots.device)
    flat = slots.reshape(batch, -1)  # a view: the band's rows are contiguous in each image
    starts = torch.gather(row_start, 1, flat, out=scratch.get("rows", flat.shape, torch.int64))
    keys = scratch.get("keys", (batch, *offsets.shape), torch.int64)
    torch.add(starts.view(batch, 1, *slots.shape[1:]), offsets, out=keys)  # [B, 4, rows, W]
    shape = (batch, num_columns + 1, pixels)
    splat = weights.new_empty(shape) if keep else scratch.get("splat", shape, weights.dtype)
    # the taps' weights are the same for every image: an expanded view, not a copy
    splat.view(batch, -1).zero_().scatter_add_(1, keys.view(batch, -1), weights.view(1, -1).expand(batch, -1))
    return splat[:, :num_columns]


def banded_sums(
    activations: Tensor, slots: Tensor, num_bins: int, dtype: torch.dtype, keep: bool = False, pairs: bool = False
) -> tuple[Tensor, list[tuple[int, int, Tensor, Tensor]]]:
    """Per-image (or per image pair) sums of Eq. 1, band by band (module docstring); not differentiable.

    Args:
        activations: ``[B, K, h, w]``.
        slots: int64 ``[B, H, W]`` bin labels plus one (0: invalid pixel).
        num_bins: ``N_b``.
        dtype: dtype of the products.
        keep: also return every band's compact splat (for the backward pass of :class:`_BandedSums`).
        pairs: pair every image's activations with every image's depth: the splat ``S`` depends only on the
            depth image, so one product ``[B K, pixels] x [pixels, B C]`` per band gives all ``B^2`` pairs.

    Returns:
        ``(sums, saved)``: float64 ``sums [B, K, N_b]`` (``pairs``: ``[B, B, K, N_b]``, activation image first,
        depth image second) and the kept ``(y_start, y_stop, splat, bin_of_column)`` of each band.
    """
    batch, units, h, w = activations.shape
    if at_depth_resolution(activations, slots):  # no interpolation: a scatter-add, no bands
        return direct_sums(activations, slots, num_bins, pairs), []
    band_rows = max(1, _TILE_PIXELS // w)
    shape = (batch, units, batch, num_bins + 1) if pairs else (batch, units, num_bins + 1)
    sums = torch.zeros(shape, dtype=torch.float64, device=activations.device)  # column N_b: unused columns
    saved = []
    scratch = Scratch(activations.device)
    bands = band_taps((h, w), tuple(slots.shape[1:]), band_rows, slots.device, dtype)
    for (y_start, y_stop, start, stop, offsets, weights), (num_columns, row_start, bin_of_column) in zip(
        bands, band_columns(slots, num_bins, bands, w), strict=True
    ):
        if num_columns == 0:  # no valid depth pixel reaches this band
            continue
        pixels = (y_stop - y_start) * w
        splat = splat_band(slots[:, start:stop], row_start, offsets, weights, num_columns, pixels, scratch, keep)
        band = activations[:, :, y_start:y_stop].reshape(batch, units, pixels)
        if dtype != activations.dtype:
            band = scratch.get("band", (batch, units, pixels), dtype).copy_(band)
        if pairs:  # [B K, pixels] x [pixels, B C] -> [B, K, B, C]
            partial = torch.mm(band.reshape(batch * units, pixels), splat.reshape(-1, pixels).T.to(dtype))
            partial = partial.view(batch, units, batch, num_columns).to(torch.float64)
            index = bin_of_column.view(1, 1, batch, num_columns).expand(partial.shape)
            sums.scatter_add_(3, index, partial)
        else:
            partial = torch.bmm(band, splat.transpose(1, 2)).to(torch.float64)  # [B, K, C]
            sums.scatter_add_(2, bin_of_column.unsqueeze(1).expand(partial.shape), partial)
        if keep:
            saved.append((y_start, y_stop, splat, bin_of_column))
    if pairs:
        return sums[..., :num_bins].permute(0, 2, 1, 3), saved
    return sums[..., :num_bins], saved


def at_depth_resolution(activations: Tensor, slots: Tensor) -> bool:
    """Whether ``[B, K, h, w]`` maps already have the ``[B, H, W]`` depth's size (then :func:`direct_sums` applies)."""
    return tuple(activations.shape[2:]) == tuple(slots.shape[1:])


@functools.lru_cache(maxsize=16)
def lane_offsets(pixels: int, num_bins: int, device: torch.device) -> Tensor:
    """int64 ``[pixels]``: where pixel ``p``'s copy of the bins starts in :func:`direct_sums` (cached per geometry)."""
    return (torch.arange(pixels, device=device) % _LANES) * (num_bins + 1)


def direct_sums(activations: Tensor, slots: Tensor, num_bins: int, pairs: bool = False) -> Tensor:
    """Eq. 1's sums of maps that already have the depth's resolution: step 1 is the identity, step 2 a scatter-add.

    The bands' products would multiply every pixel by one splat column per present bin (``S`` is the bins'
    one-hot there); adding each pixel's value into its own bin costs one addition instead. The activations are
    converted to float64 a range of pixels at a time (about ``_CHUNK_VALUES`` values of all images and units) and
    added in place, so the sums are exact up to float64 rounding whatever the activations' dtype. Consecutive
    pixels add into different copies of the bins (:func:`lane_offsets`), summed at the end: on smooth depth a
    run of pixels of one bin would otherwise make each addition wait for the one before (3x slower on CPU).

    Args:
        activations: ``[B, K, H, W]``.
        slots: int64 ``[B, H, W]`` bin labels plus one (0: invalid pixel).
        num_bins: ``N_b``.
        pairs: every image's activations binned by every image's depth, as in :func:`banded_sums`.

    Returns:
        float64 ``[B, K, N_b]`` (``pairs``: ``[B, B, K, N_b]``, activation image first).
    """
    batch, units = activations.shape[:2]
    values = activations.reshape(batch, units, -1)
    partners = batch if pairs else 1
    # each pixel adds into one of _LANES copies of the bins (pixel index mod _LANES), summed at the end: runs of
    # pixels of one bin (smooth depth) would otherwise chain every addition on the one before it
    flat_slots = slots.reshape(batch, -1) + lane_offsets(values.shape[2], num_bins, slots.device)
    width = _LANES * (num_bins + 1)
    sums = torch.zeros(batch, units, partners, width, dtype=torch.float64, device=activations.device)
    chunk = max(1, _CHUNK_VALUES // (batch * units))
    scratch = Scratch(activations.device)
    for start in range(0, values.shape[2], chunk):  # a few chunks per batch, independent of the pixels' values
        part = values[:, :, start : start + chunk]
        exact = scratch.get("values", part.shape, torch.float64).copy_(part)
        index = flat_slots[:, start : start + chunk]
        if pairs:  # image i's values into the bins of every depth image j
            shape = (batch, units, batch, part.shape[2])
            sums.scatter_add_(3, index.view(1, 1, batch, -1).expand(shape), exact.unsqueeze(2).expand(shape))
        else:  # a 3-D scatter: the common case, faster than the same through a partner dimension of 1
            sums.view(batch, units, width).scatter_add_(2, index.view(batch, 1, -1).expand(part.shape), exact)
    sums = sums.view(batch, units, partners, _LANES, num_bins + 1).sum(3)[..., 1:]  # slot 0: invalid pixels
    return sums.permute(0, 2, 1, 3) if pairs else sums[:, :, 0]


def response_sums(
    activations: Tensor,
    bins: Tensor,
    num_bins: int,
    abs_first: bool = False,
    compute_dtype: torch.dtype | None = torch.float64,
    per_image: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-bin sums of the upsampled activations and per-bin pixel counts of one batch (Eq. 1, steps 1-2).

    Equal (up to float64 rounding) to upsampling every map to the depth resolution with
    ``F.interpolate(mode="bilinear", align_corners=False)`` and summing over the pixels of each bin, but
    without materialising the upsampled maps (see the module docstring). Differentiable with respect to
    ``activations`` (the batch totals; the ``per_image`` sums are not).

    Args:
        activations: ``[B, K, h, w]``.
        bins: int64 ``[B, H, W]`` (or ``[B, 1, H, W]``) labels from :func:`imde.core.bins.digitize`, ``-1``
            for invalid pixels.
        num_bins: ``N_b``.
        abs_first: take ``|A|`` before upsampling (the authors' training convention).
        compute_dtype: dtype of the products (float64: exact, the default; ``None``: the activations' own
            dtype, at least float32, for training losses; see the module docstring). Sums are accumulated in
            float64 either way.
        per_image: return every image's own sums and counts (the bootstrap's per-image terms) instead of the
            batch totals; same cost.

    Returns:
        ``(sums [K, N_b]`` float64, ``counts [N_b]`` int64); with ``per_image``, ``[B, K, N_b]`` and ``[B, N_b]``.

    Example:
        >>> sums, counts = response_sums(torch.ones(2, 1, 2, 2), torch.tensor([[[0, 1]], [[1, 1]]]), 2, per_image=True)
        >>> sums.tolist(), counts.tolist()
        ([[[1.0, 1.0]], [[0.0, 2.0]]], [[1, 1], [0, 2]])
    """
    feats, slots, dtype = _prepare(activations, bins, num_bins, abs_first, compute_dtype)
    if per_image:
        return banded_sums(feats.detach(), slots, num_bins, dtype)[0], image_counts(slots, num_bins)
    counts = torch.bincount(slots.view(-1), minlength=num_bins + 1)[1:]  # the denominator of Eq. 1
    return _BandedSums.apply(feats, slots, num_bins, dtype), counts


def response_pair_sums(
    activations: Tensor, bins: Tensor, num_bins: int, compute_dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """Eq. 1's sums for every (activation image ``i``, depth image ``j``) pair of a batch, and per-image counts.

    ``pair_sums[i, j]`` is what :func:`response_sums` would give for image ``i``'s activations binned by image
    ``j``'s depth (both of the batch's geometry); the diagonal is every image's own sums. The permutation null
    of :class:`imde.DepthResponse` assembles its replicates from these. Costs ``B`` times the plain sums' products
    (one ``[B K, pixels] x [pixels, B C]`` product per band instead of ``B`` products ``[K, pixels] x [pixels, C]``).

    Returns:
        ``(pair_sums [B, B, K, N_b]`` float64, ``counts [B, N_b]`` int64 of each depth image).

    Example:
        >>> pairs, counts = response_pair_sums(torch.tensor([[[[1.0]]], [[[3.0]]]]), torch.tensor([[[0]], [[1]]]), 2)
        >>> pairs[:, :, 0].tolist()  # activation 1 with depth 0 lands in bin 0, with depth 1 in bin 1
        [[[1.0, 0.0], [0.0, 1.0]], [[3.0, 0.0], [0.0, 3.0]]]
    """
    feats, slots, dtype = _prepare(activations, bins, num_bins, False, compute_dtype)
    return banded_sums(feats.detach(), slots, num_bins, dtype, pairs=True)[0], image_counts(slots, num_bins)


def image_counts(slots: Tensor, num_bins: int) -> Tensor:
    """int64 ``[B, N_b]`` valid pixels of each bin in each image (``slots``: bin labels plus one)."""
    batch = slots.shape[0]
    offset = torch.arange(batch, device=slots.device).view(-1, 1) * (num_bins + 1)
    flat = (slots.reshape(batch, -1) + offset).view(-1)
    return torch.bincount(flat, minlength=batch * (num_bins + 1)).view(batch, num_bins + 1)[:, 1:]


def _prepare(
    activations: Tensor, bins: Tensor, num_bins: int, abs_first: bool, compute_dtype: torch.dtype | None
) -> tuple[Tensor, Tensor, torch.dtype]:
    if activations.ndim != 4:
        raise ValueError(f"activations: expected [B, K, h, w], got shape {tuple(activations.shape)}")
    bins = check_bins(bins, num_bins, activations.shape[0])
    feats = activations.abs() if abs_first else activations
    dtype = torch.promote_types(feats.dtype, torch.float32) if compute_dtype is None else compute_dtype
    return feats, bins + 1, dtype  # slots: 0 an invalid pixel, d + 1 bin d


class _BandedSums(torch.autograd.Function):
    """``sums[k, d] = sum_{b,y,x} A[b,k,y,x] S[b,d,y,x]``, band by band (module docstring), with its gradient.

    A custom function so that the backward pass writes each band's gradient straight into one gradient
    tensor (autograd's own graph of slices, float64 copies and products would allocate and concatenate a
    full-size gradient per band). ``dsums/dA[b,k,y,x] = sum_d grad[k, d] S[b,d,y,x]``: one small batched
    product per band against the saved compact ``S``, in the activations' dtype (each gradient element sums
    the ~3 non-zero ``S`` entries of its pixel, so float32 loses nothing measurable: ~1e-7 relative). Maps at
    the depth's resolution (:func:`direct_sums`) take their bin's gradient, one gather.
    """

    @staticmethod
    def forward(ctx, activations: Tensor, slots: Tensor, num_bins: int, dtype: torch.dtype) -> Tensor:  # noqa: D102
        sums, saved = banded_sums(activations, slots, num_bins, dtype, keep=ctx.needs_input_grad[0])
        if ctx.needs_input_grad[0]:
            ctx.shape, ctx.dtype, ctx.saved_bands = activations.shape, activations.dtype, saved
            ctx.direct_slots = slots if at_depth_resolution(activations, slots) else None
        return sums.sum(0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sums: Tensor) -> tuple[Tensor, None, None, None]:  # noqa: D102 (see the class)
        batch, units, h, w = ctx.shape
        if ctx.direct_slots is not None:  # direct_sums: each pixel's gradient is its bin's (0 for slot 0, invalid)
            table = torch.cat([grad_sums.new_zeros(units, 1), grad_sums], 1).to(ctx.dtype)  # [K, N_b + 1]
            index = ctx.direct_slots.view(batch, 1, -1).expand(batch, units, -1)
            # gather along the bins: [B, K, H*W] laid out as the activations (an advanced index would give
            # [K, B, H, W] and a transposed copy into .grad, 3x slower)
            return torch.gather(table.expand(batch, -1, -1), 2, index).view(ctx.shape), None, None, None
        grad = torch.empty(ctx.shape, dtype=ctx.dtype, device=grad_sums.device)
        padded = torch.cat([grad_sums, grad_sums.new_zeros(units, 1)], 1).to(ctx.dtype)  # column N_b: padding
        covered = 0
        for y_start, y_stop, splat, bin_of_column in ctx.saved_bands:
            grad[:, :, covered:y_start] = 0  # rows that no valid depth pixel reaches
            grad_partial = padded[:, bin_of_column].transpose(0, 1)  # [B, K, C]
            band = grad[:, :, y_start:y_stop].view(batch, units, (y_stop - y_start) * w)
            torch.bmm(grad_partial, splat.to(ctx.dtype), out=band)  # written in place: no band-sized temporary
            covered = y_stop
        grad[:, :, covered:] = 0
        return grad, None, None, None
