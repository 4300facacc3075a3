"""DepthResponse: the streaming, mergeable, all-reducible accumulator of Eq. 1 (a unit's mean response per bin).

The state is two sums, each reduced by addition across batches, processes or shards: ``sums[K, N_b]``
(float64, the numerator of Eq. 1) and ``counts[N_b]`` (int64, the denominator), plus bookkeeping
counters. Accumulating a dataset in any batching or order, or split across processes and summed, gives
the same ``mean_response()`` up to float64 rounding.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from imde.core.bins import check_edges, digitize
from imde.core.response import response_sums
from imde.utils.io import atomic_torch_save, read_torch_file

_COUNTERS = ("num_updates", "num_empty_batches", "num_images", "num_empty_images")


class DepthResponse:
    """Accumulates the per-unit, per-bin sums and per-bin pixel counts of Eq. 1 over a dataset.

    Args:
        num_units: ``K``, the layer's channel count.
        edges: ``N_b + 1`` increasing bin edges (:func:`imde.sid_edges`, :func:`imde.dataset_edges`).
        device: where the state lives (default CPU); :meth:`to` moves it.

    Attributes:
        sums: float64 ``[K, N_b]`` sum of the upsampled signed activations over the valid pixels of each bin.
        counts: int64 ``[N_b]`` number of valid pixels of each bin.
        num_updates: number of :meth:`update` calls (batches).
        num_empty_batches: batches whose depth had no valid pixel (they add nothing; not an error).
        num_images: images seen; ``num_empty_images``: images without any valid pixel.

    Example:
        >>> from imde.core.bins import sid_edges
        >>> acc = DepthResponse(2, sid_edges(2, 1.0, 2.0))
        >>> acc.update(torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]]), torch.tensor([[[0.5, 1.5]]]))
        >>> acc.mean_response().tolist()
        [[1.0, 3.0], [2.0, 2.0]]
    """

    def __init__(self, num_units: int, edges: Tensor, device: torch.device | str | None = None) -> None:
        if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 1:
            raise ValueError(f"num_units={num_units!r}: expected a positive integer")
        self.num_units = num_units
        self.edges = check_edges(edges).to(device or "cpu")
        self.num_bins = self.edges.numel() - 1
        self.reset()

    @property
    def device(self) -> torch.device:
        """Device of the accumulated state."""
        return self.edges.device

    def reset(self) -> None:
        """Zero the sums, counts and counters."""
        self.sums = torch.zeros(self.num_units, self.num_bins, dtype=torch.float64, device=self.device)
        self.counts = torch.zeros(self.num_bins, dtype=torch.int64, device=self.device)
        for name in _COUNTERS:
            setattr(self, name, 0)

    def _check_update(self, activations: Tensor, depth: Tensor) -> Tensor:
        if not isinstance(activations, Tensor) or activations.ndim != 4:
            shape = tuple(activations.shape) if isinstance(activations, Tensor) else type(activations).__name__
            raise ValueError(f"activations: expected [B, K, h, w], got {shape}")
        if activations.shape[1] != self.num_units:
            raise ValueError(
                f"activations have {activations.shape[1]} units (shape {tuple(activations.shape)}) but this "
                f"DepthResponse accumulates {self.num_units} units"
            )
        if not isinstance(depth, Tensor) or not (depth.ndim == 3 or (depth.ndim == 4 and depth.shape[1] == 1)):
            shape = tuple(depth.shape) if isinstance(depth, Tensor) else type(depth).__name__
            raise ValueError(f"depth: expected [B, H, W] or [B, 1, H, W], got {shape}")
        if depth.shape[0] != activations.shape[0]:
            raise ValueError(
                f"batch size mismatch: activations {tuple(activations.shape)} vs depth {tuple(depth.shape)}"
            )
        # the sum is finite unless an element is NaN/inf (or a finite sum overflows: then check element-wise);
        # one streaming reduction instead of a full-size boolean map
        if not bool(torch.isfinite(activations.sum())) and not bool(torch.isfinite(activations).all()):
            raise ValueError(f"activations {tuple(activations.shape)}: contain NaN or inf")
        return depth.reshape(depth.shape[0], *depth.shape[-2:])

    @torch.no_grad()
    def update(self, activations: Tensor, depth: Tensor) -> None:
        """Add one batch (Eq. 1, steps 1-2): upsample, bin the depth with ``edges``, sum and count per bin.

        Args:
            activations: ``[B, K, h, w]`` (any float dtype, any device; moved to the state's device).
            depth: ``[B, H, W]`` or ``[B, 1, H, W]`` metres; invalid pixels (``<= 0``, non-finite,
                ``> edges[-1]``) are ignored.
        """
        depth = self._check_update(activations, depth).to(self.device)
        bins = digitize(depth, self.edges)
        valid_per_image = (bins >= 0).flatten(1).sum(1)
        self.num_updates += 1
        self.num_images += bins.shape[0]
        self.num_empty_images += int((valid_per_image == 0).sum())
        if int(valid_per_image.sum()) == 0:
            self.num_empty_batches += 1
            return
        sums, counts = response_sums(activations.detach().to(self.device), bins, self.num_bins)
        self.sums += sums
        self.counts += counts

    def mean_response(self) -> Tensor:
        """float64 ``[K, N_b]`` mean response ``R`` of Eq. 1; NaN in bins that were never observed."""
        counts = self.counts.to(torch.float64)
        return torch.where(counts > 0, self.sums / counts.clamp_min(1), torch.full_like(self.sums, float("nan")))

    compute = mean_response

    def _check_compatible(self, other: DepthResponse) -> None:
        if not isinstance(other, DepthResponse):
            raise ValueError(f"other: expected a DepthResponse, got {type(other).__name__}")
        if other.num_units != self.num_units:
            raise ValueError(f"cannot merge: other has {other.num_units} units, this one {self.num_units}")
        if other.edges.shape != self.edges.shape or not torch.equal(other.edges.cpu(), self.edges.cpu()):
            raise ValueError(f"cannot merge: different edges {other.edges.tolist()} vs {self.edges.tolist()}")

    def merge(self, other: DepthResponse) -> DepthResponse:
        """Add another accumulator's state (same units and edges) into this one; returns ``self``."""
        self._check_compatible(other)
        self.sums += other.sums.to(self.device)
        self.counts += other.counts.to(self.device)
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def all_reduce(self) -> DepthResponse:
        """Sum the state over all ``torch.distributed`` processes (in place); a no-op when not initialised."""
        if not (dist.is_available() and dist.is_initialized()):
            return self
        counters = torch.tensor([getattr(self, name) for name in _COUNTERS], dtype=torch.int64, device=self.device)
        for tensor in (self.sums, self.counts, counters):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        for name, value in zip(_COUNTERS, counters.tolist(), strict=True):
            setattr(self, name, int(value))
        return self

    def to(self, device: torch.device | str) -> DepthResponse:
        """Move the state to ``device`` (in place); returns ``self``."""
        self.edges, self.sums, self.counts = (t.to(device) for t in (self.edges, self.sums, self.counts))
        return self

    def state_dict(self) -> dict[str, Tensor | int]:
        """The full state as tensors and ints (CPU copies), loadable with :meth:`load_state_dict`."""
        state: dict[str, Tensor | int] = {"num_units": self.num_units, "edges": self.edges.cpu()}
        state.update(sums=self.sums.cpu(), counts=self.counts.cpu())
        state.update({name: getattr(self, name) for name in _COUNTERS})
        return state

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        """Replace the state with ``state`` (from :meth:`state_dict`), checking units and edges."""
        missing = {"num_units", "edges", "sums", "counts", *_COUNTERS} - set(state)
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        self._check_compatible(DepthResponse(int(state["num_units"]), torch.as_tensor(state["edges"])))
        sums, counts = torch.as_tensor(state["sums"]), torch.as_tensor(state["counts"])
        if sums.shape != self.sums.shape or counts.shape != self.counts.shape:
            raise ValueError(
                f"state: sums {tuple(sums.shape)} / counts {tuple(counts.shape)} do not match "
                f"[{self.num_units}, {self.num_bins}] / [{self.num_bins}]"
            )
        self.sums = sums.to(self.device, torch.float64)
        self.counts = counts.to(self.device, torch.int64)
        for name in _COUNTERS:
            setattr(self, name, int(state[name]))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state to ``path`` atomically (``torch.save`` of :meth:`state_dict`)."""
        return atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str | None = None) -> DepthResponse:
        """Read an accumulator written by :meth:`save` (``torch.load(weights_only=True)``)."""
        state = read_torch_file(path, "DepthResponse state file")
        if not isinstance(state, dict) or "num_units" not in state or "edges" not in state:
            raise ValueError(f"{path}: not a DepthResponse state (expected a dict with num_units, edges, sums, counts)")
        acc = cls(int(state["num_units"]), state["edges"], device=device)
        acc.load_state_dict(state)
        return acc

    def __repr__(self) -> str:
        return (
            f"DepthResponse(num_units={self.num_units}, num_bins={self.num_bins}, images={self.num_images}, "
            f"empty_images={self.num_empty_images}, device={self.device})"
        )
