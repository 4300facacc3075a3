"""Slow, straightforward reference implementations of the core math: per image, per bin, per unit loops.

They follow the way the authors' public code computes things (upsample each batch's features, then
select the pixels of every bin in turn) and serve two purposes: the exactness tests compare the fast,
vectorised ``imde.core`` code against them, and ``benchmarks/bench_core.py`` times them. Keep ONE copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def loop_digitize(depth: Tensor, edges: Tensor) -> Tensor:
    """Bin labels by one comparison pass per bin; -1 for invalid (non-finite, <= 0, > last edge)."""
    labels = torch.full(depth.shape, -1, dtype=torch.int64)
    values = depth.to(torch.float64)
    for d in range(edges.numel() - 1):
        labels[(values > edges[d]) & (values <= edges[d + 1])] = d
    return labels


def loop_response_sums(
    activations: Tensor, bins: Tensor, num_bins: int, abs_first: bool = False
) -> tuple[Tensor, Tensor]:
    """Eq. 1 steps 1-2: upsample each image's maps to the depth size, then sum the pixels of each bin.

    Upsampling runs in the activations' dtype (as the authors do), accumulation in float64.
    """
    bins = bins.reshape(bins.shape[0], *bins.shape[-2:])
    out_size = tuple(bins.shape[-2:])
    sums = torch.zeros(activations.shape[1], num_bins, dtype=torch.float64)
    counts = torch.zeros(num_bins, dtype=torch.int64)
    feats = activations.abs() if abs_first else activations
    for b in range(activations.shape[0]):
        up = F.interpolate(feats[b : b + 1], size=out_size, mode="bilinear", align_corners=False)[0]
        for d in range(num_bins):
            ys, xs = torch.where(bins[b] == d)
            if len(ys) == 0:
                continue
            counts[d] += len(ys)
            sums[:, d] = sums[:, d] + up[:, ys, xs].to(torch.float64).sum(-1)
    return sums, counts


def loop_selectivity(mean_response: Tensor, assigned: Tensor | None = None, empty_bins: str = "skip") -> Tensor:
    """Eq. 2 (or Eq. 5 with ``assigned``) unit by unit with plain Python arithmetic."""
    result = []
    for k, row in enumerate(mean_response.tolist()):
        if empty_bins == "zero":
            row = [0.0 if v != v else v for v in row]
        values = {d: abs(v) for d, v in enumerate(row) if v == v}  # v == v drops NaN
        if assigned is None:
            top_bin = max(values, key=lambda d: values[d])
        else:
            top_bin = int(assigned[k])
            if top_bin not in values:
                result.append(float("nan"))
                continue
        others = [v for d, v in values.items() if d != top_bin]
        mean_others = sum(others) / len(others)
        top = values[top_bin]
        result.append(0.0 if top + mean_others == 0 else (top - mean_others) / (top + mean_others))
    return torch.tensor(result, dtype=torch.float64)


def loop_layer_selectivity(
    feat: Tensor,
    bins: Tensor,
    num_bins: int,
    assigned: Tensor | None,
    absent_bins: str = "skip",
    abs_mode: str = "paper",
) -> Tensor:
    """Differentiable per-batch layer selectivity from :func:`loop_response_sums`, unit by unit (as train.py).

    ``assigned=None`` gives Eq. 4's per-batch max bin. ``absent_bins="skip"``: observed bins only, units with
    an absent assigned bin left out; ``"authors"``: empty bins count as 0 and every unit is in the mean.
    """
    sums, counts = loop_response_sums(feat, bins, num_bins, abs_first=abs_mode == "authors")
    abs_response = (sums / counts.clamp_min(1)).abs()  # [K, N_b]
    observed = (counts > 0).tolist()
    use = [True] * num_bins if absent_bins == "authors" else observed
    scores = []
    for k in range(feat.shape[1]):
        if assigned is None:
            candidates = [d for d in range(num_bins) if use[d]]
            top_bin = max(candidates, key=lambda d: float(abs_response[k, d].detach()))
        else:
            top_bin = int(assigned[k])
            if not observed[top_bin]:
                if absent_bins == "authors":
                    scores.append(abs_response.new_zeros(()))
                continue
        others = [abs_response[k, d] for d in range(num_bins) if use[d] and d != top_bin]
        if not others:
            continue
        mean_others = torch.stack(others).mean()
        top = abs_response[k, top_bin]
        denom = top + mean_others
        scores.append((top - mean_others) / denom if float(denom.detach()) > 0 else denom * 0)
    if not scores:
        return feat.sum() * 0
    if absent_bins == "authors":
        return torch.stack(scores).sum() / feat.shape[1]
    return torch.stack(scores).mean()
