"""What Fig. 1/5 show of a unit: its feature map and the pixels whose predicted depth falls in its bin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from imde.core.bins import DEFAULT_BINS, DepthBins
from imde.experiments.dissect import LayerDissection, units_to_bins
from imde.experiments.results import as_batch
from imde.models import run_with_features
from imde.utils.device import resolve_device


@dataclass(frozen=True)
class UnitView:
    """One unit of one model on one image.

    Attributes:
        unit: unit index.
        feature_map: the unit's activation ``[h, w]``, bilinearly upsampled to the prediction.
        prediction: the model's predicted depth ``[h, w]``.
        bin_range: ``(e_d, e_{d+1}]`` of the unit's bin in metres (NaN for a dead unit).
    """

    unit: int
    feature_map: torch.Tensor
    prediction: torch.Tensor
    bin_range: tuple[float, float]


def unit_views(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    layer: str,
    units: Sequence[int],
    *,
    dissection: LayerDissection | None = None,
    bins: DepthBins = DEFAULT_BINS,
    index: int = 0,
    device: str | torch.device = "cpu",
) -> list[UnitView]:
    """Feature maps and depth bins of ``units`` of ``layer`` on image ``index`` of ``batch`` (one forward pass).

    ``batch`` is a batch dict or one dataset sample.

    Units stand for their assigned bin (Eq. 6) or, with a ``dissection``, their preferred bin (see
    ``units_to_bins``).
    """
    batch = as_batch(batch)
    dev = resolve_device(device)
    pred, tapped = run_with_features(model.to(dev), batch, [layer], device=dev)
    features = tapped[layer]
    num_units = features.shape[1]
    chosen = torch.as_tensor(list(units), dtype=torch.long)
    if chosen.numel() == 0 or int(chosen.min()) < 0 or int(chosen.max()) >= num_units:
        raise ValueError(f"units={list(units)}: expected unit indices in [0, {num_units}) of layer {layer!r}")
    if not 0 <= index < pred.shape[0]:
        raise ValueError(f"index={index}: the batch has {pred.shape[0]} images")
    edges, unit_bins, _ = units_to_bins(num_units, dissection, bins=bins)
    maps = F.interpolate(features[index:index + 1, chosen.to(dev)].float(), size=tuple(pred.shape[-2:]),
                         mode="bilinear", align_corners=False)[0].cpu()
    prediction = pred[index, 0].detach().float().cpu()
    views = []
    for position, unit in enumerate(chosen.tolist()):  # a handful of units for a figure
        bin_index = int(unit_bins[unit])
        low, high = (float(edges[bin_index]), float(edges[bin_index + 1])) if bin_index >= 0 else (
            float("nan"), float("nan"))
        views.append(UnitView(unit, maps[position], prediction, (low, high)))
    return views
