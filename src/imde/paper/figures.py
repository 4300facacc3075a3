"""The study's figures (Fig. 2, 3/4, 5, 6) drawn from the saved step results with :mod:`imde.viz.plots`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from imde.experiments.results import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from imde.experiments.ablate import AblationResult
    from imde.experiments.dissect import LayerDissection

#: Test image shown in the feature-map and prediction figures.
FIGURE_IMAGE = 0


def pick_units(assign: LayerDissection, other: LayerDissection, depth: torch.Tensor) -> tuple[int, int, int]:
    """Units to show side by side (Fig. 5): the bin covering most valid pixels of ``depth``, the interpretable
    model's unit assigned to it, and the other model's most selective unit preferring it (else its most
    selective unit).

    Returns:
        ``(bin, unit of the interpretable model, unit of the other model)``.
    """
    from imde.core.bins import digitize

    bins = digitize(depth.reshape(-1), assign.edges.to(depth.dtype))
    counts = torch.bincount(bins[bins >= 0], minlength=assign.num_bins)
    top = int(counts.argmax())
    unit = int((assign.assigned_bin == top).nonzero()[0])
    ds = other.selectivity.clone()
    ds[other.preferred_bin != top] = -1.0
    if float(ds.max()) < 0:
        ds = other.selectivity
    return top, unit, int(ds.argmax())


def _forward(model: torch.nn.Module, batch: dict[str, Any], layer: str, device: str) -> tuple[torch.Tensor, ...]:
    from imde.models import run_with_features
    from imde.utils.device import resolve_device

    dev = resolve_device(device)
    pred, features = run_with_features(model.to(dev), batch, [layer], device=dev)
    return pred[0, 0].cpu(), features[layer][0].cpu()


def make_figures(
    out: Path,
    layers: list[str],
    dissections: dict[str, dict[str, LayerDissection]],
    ablations: dict[str, AblationResult],
    models: dict[str, torch.nn.Module],
    batch: dict[str, Any],
    device: str,
) -> list[Path]:
    """Draw and save every figure of a study into ``out``; return the files written.

    Args:
        out: the figures folder.
        layers: the dissected layers (the first one is shown in Fig. 5 and 6).
        dissections: ``{variant: {layer: test-split dissection}}`` of every variant (``baseline``, ``assign``...).
        ablations: ``{variant: ablation result}``.
        models: ``{variant: trained model}``.
        batch: one test image as a batch (Fig. 5, 6).
        device: where the models run.
    """
    from imde.viz.plots import (
        UnitView,
        plot_ablation,
        plot_depth_predictions,
        plot_feature_maps,
        plot_selectivity_histogram,
        plot_unit_responses,
        save_figure,
    )

    files: list[Path] = []
    files += save_figure(plot_ablation(ablations), out / "fig2_ablation.png")
    for layer in layers:
        per_variant = {v: dissections[v][layer] for v in dissections}
        rand = per_variant["assign"].random_baseline
        hist = plot_selectivity_histogram({v: d.selectivity for v, d in per_variant.items()}, rand)
        files += save_figure(hist, out / f"dissect_hist_{safe_name(layer)}.png")
        for variant, dissection in per_variant.items():
            grid = plot_unit_responses(dissection)
            files += save_figure(grid, out / f"fig3_dissect_units_{variant}_{safe_name(layer)}.png")
    image, depth = batch["image"][0], batch["depth"][0, 0]
    layer = layers[0]
    outputs = {v: _forward(model, batch, layer, device) for v, model in models.items()}
    files += save_figure(plot_depth_predictions(image, depth, {v: pred for v, (pred, _) in outputs.items()}),
                         out / "fig6_predictions.png")
    top, unit_assign, unit_base = pick_units(dissections["assign"][layer], dissections["baseline"][layer], depth)
    edges = dissections["assign"][layer].edges
    bin_range = (float(edges[top]), float(edges[top + 1]))
    views = {
        "interpretable": UnitView(unit_assign, outputs["assign"][1][unit_assign], outputs["assign"][0], bin_range),
        "baseline": UnitView(unit_base, outputs["baseline"][1][unit_base], outputs["baseline"][0], bin_range),
    }
    files += save_figure(plot_feature_maps(image, depth, views), out / f"fig5_feature_maps_{safe_name(layer)}.png")
    return files
