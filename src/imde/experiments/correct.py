"""Correcting a network with its training-set dissection (Sec. 5.2, Fig. 7, Table 3; docs/math.md, "Correction").

At test time each unit's value at a pixel whose ground-truth depth falls in bin ``d`` is replaced by the
unit's training-set mean response ``R[k, d]`` (Eq. 1); the rest of the network then runs on the edited
features and the prediction is evaluated before and after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from imde.accumulators import DepthResponse
from imde.core.bins import digitize
from imde.experiments.dissect import DissectResult
from imde.experiments.evaluate import EvalSettings, TrackedLoader, evaluate_with
from imde.experiments.results import SavedResult, write_json
from imde.hooks import edit_layers
from imde.models import token_transforms


def replace_by_response(
    features: torch.Tensor, depth: torch.Tensor, mean_response: torch.Tensor, edges: torch.Tensor
) -> torch.Tensor:
    """Replace each unit's value at each pixel by its mean response at the pixel's ground-truth bin.

    The depth map is resized to the feature map with nearest-neighbour and binned with ``edges``; pixels with
    invalid depth (bin -1) and bins whose ``mean_response`` is NaN (never seen in training) keep their value.
    One gather from ``R`` with the bin map: no loop over pixels, units or bins.

    Args:
        features: layer output ``[B, K, h, w]``.
        depth: ground truth ``[B, 1, H, W]`` or ``[B, H, W]`` in metres (0 = invalid).
        mean_response: training-set ``R[K, N_b]`` (Eq. 1).
        edges: the ``N_b + 1`` bin edges ``R`` was accumulated with.

    Returns:
        The edited features, same shape, dtype and device as ``features``.
    """
    if features.ndim != 4:
        raise ValueError(f"features: expected [B, K, h, w], got shape {tuple(features.shape)}")
    batch, units, height, width = features.shape
    if mean_response.ndim != 2 or mean_response.shape[0] != units:
        raise ValueError(f"mean_response: expected [{units}, N_b] for {units} units, got {tuple(mean_response.shape)}")
    if edges.numel() != mean_response.shape[1] + 1:
        raise ValueError(f"edges: expected {mean_response.shape[1] + 1} edges for {mean_response.shape[1]} bins, "
                         f"got {edges.numel()}")
    depth4 = depth.unsqueeze(1) if depth.ndim == 3 else depth
    if depth4.ndim != 4 or depth4.shape[0] != batch or depth4.shape[1] != 1:
        raise ValueError(f"depth: expected [{batch}, 1, H, W] or [{batch}, H, W], got {tuple(depth.shape)}")
    small = F.interpolate(depth4.to(features.device, torch.float32), size=(height, width), mode="nearest")[:, 0]
    bins = digitize(small, edges.to(features.device))
    table = mean_response.to(features.device, features.dtype).T  # [N_b, K]
    values = table[bins.clamp(min=0)].permute(0, 3, 1, 2)  # [B, K, h, w]
    keep = (bins >= 0).unsqueeze(1) & ~torch.isnan(values)
    return torch.where(keep, values, features)


def _lookup_tables(
    train_responses: Mapping[str, DepthResponse] | DissectResult, layers: Sequence[str], split: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer: (R, edges)}`` from raw responses or from a dissection's ``split``."""
    if isinstance(train_responses, DissectResult):
        if split not in train_responses.layers:
            raise ValueError(f"split={split!r}: not in the dissection; available: {sorted(train_responses.layers)}")
        source = train_responses.layers[split]
        tables = {name: (item.mean_response, item.edges) for name, item in source.items()}
    else:
        tables = {name: (resp.mean_response(), resp.edges) for name, resp in train_responses.items()}
    missing = [name for name in layers if name not in tables]
    if missing:
        raise ValueError(f"layers: {missing} have no training responses; available: {sorted(tables)}")
    return {name: tables[name] for name in layers}


@dataclass
class CorrectionResult(SavedResult):
    """Metrics before and after the correction of ``layers`` (one row of Table 3).

    Attributes:
        layers: the corrected layers (all edited in the same forward pass).
        before: metrics of the unedited model.
        after: metrics with every unit of ``layers`` replaced by its training mean response.
        files: files written (empty without ``out_dir``).
        replicates: with ``settings.bootstrap``, delta1's bootstrap replicates ``{"before": [R], "after": [R]}``
            (paired: the same images with the same weights).
    """

    FILE = "correction"

    layers: list[str]
    before: dict[str, float]
    after: dict[str, float]
    files: list[Path] = field(default_factory=list)
    replicates: dict[str, list[float]] = field(default_factory=dict)

    def change(self) -> dict[str, float]:
        """``after - before`` for every metric present in both."""
        return {name: self.after[name] - self.before[name] for name in self.before if name in self.after}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"layers", "before", "after", "change"}`` (and ``replicates`` when kept)."""
        out = {"layers": list(self.layers), "before": self.before, "after": self.after, "change": self.change()}
        return {**out, "replicates": self.replicates} if self.replicates else out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CorrectionResult:
        """The inverse of :meth:`to_dict` (``change`` is recomputed)."""
        return cls(list(data["layers"]), dict(data["before"]), dict(data["after"]),
                   replicates={when: list(values) for when, values in (data.get("replicates") or {}).items()})


def run_correction(
    model: torch.nn.Module,
    train_responses: Mapping[str, DepthResponse] | DissectResult,
    test_loader: Iterable[Mapping[str, Any]],
    layers: Sequence[str],
    *,
    split: str = "train",
    settings: EvalSettings | None = None,
    out_dir: str | Path | None = None,
) -> CorrectionResult:
    """Evaluate ``model`` on ``test_loader`` before and after correcting ``layers`` (Sec. 5.2, Table 3).

    Args:
        model: the network (its forward is edited through ``imde.hooks.edit_layers`` hooks only).
        train_responses: training-set responses ``{layer: DepthResponse}`` or a ``DissectResult``.
        test_loader: loader of test batches (their ``depth`` drives the replacement).
        layers: the layers to correct, all at once.
        split: which split of a ``DissectResult`` holds the training responses.
        settings: evaluation protocol (device, crop, depth caps, ``max_batches``).
        out_dir: when given, ``correction.json`` is written there.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("layers: expected at least one layer to correct")
    settings = settings or EvalSettings()
    tables = _lookup_tables(train_responses, layers, split)
    before = evaluate_with(model, test_loader, settings)
    tracked = TrackedLoader(test_loader)

    def make_edit(mean_response: torch.Tensor, edges: torch.Tensor) -> Any:
        def edit(output: torch.Tensor) -> torch.Tensor:
            if tracked.current is None:
                raise RuntimeError("correction hook ran outside the tracked evaluation loop")
            return replace_by_response(output, tracked.current["depth"], mean_response, edges)

        return edit

    edits = {name: make_edit(*tables[name]) for name in layers}
    with edit_layers(model, edits, token_transforms(model, layers)):  # token layers are edited as maps
        after = evaluate_with(model, tracked, settings)
    replicates = {"before": before.replicates["delta1"], "after": after.replicates["delta1"]} if (
        before.replicates) else {}
    result = CorrectionResult(layers=layers, before=dict(before.metrics), after=dict(after.metrics),
                              replicates=replicates)
    if out_dir is not None:
        result.files = [write_json(out_dir, "correction.json", result)]
    return result
