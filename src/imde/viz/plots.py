"""The paper's figures as functions returning matplotlib ``Figure`` objects (Fig. 1-8).

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, rendered by Agg), so no
pyplot state or GUI backend is touched; matplotlib is imported only when a figure is made. Depth panels use
``imde.viz.colors.DEPTH_CMAP`` and colour limits shared by every depth panel of a figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from imde.experiments.features import UnitView
from imde.utils.io import atomic_path
from imde.utils.optional import require
from imde.viz.colors import DEPTH_CMAP, ERROR_CMAP, FEATURE_CMAP, depth_limits, display_image

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from imde.experiments.ablate import AblationResult
    from imde.experiments.dissect import LayerDissection
    from imde.experiments.explain import ExplainResult

PANEL_INCHES = 2.2
"""Size of one image panel."""

BAR_COLOR = "#9aa5b1"
ASSIGNED_COLOR = "#d1495b"
PREFERRED_COLOR = "#2e86ab"


def _figure(rows: int, cols: int, *, panel: float = PANEL_INCHES, aspect: float = 1.0) -> tuple[Figure, list[Axes]]:
    """A ``Figure`` with a ``rows x cols`` grid of axes (flattened row-major)."""
    figure = require("matplotlib.figure", extra="viz").Figure
    fig = figure(figsize=(cols * panel, rows * panel * aspect), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, path: str | Path, *, pdf: bool = False, dpi: int = 120) -> list[Path]:
    """Write ``fig`` as PNG at ``path`` (suffix forced to ``.png``) and optionally a PDF beside it, atomically."""
    target = Path(path).with_suffix(".png")
    written = []
    for suffix in (".png", ".pdf") if pdf else (".png",):
        out = target.with_suffix(suffix)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=dpi)
        written.append(out)
    return written


def _map(tensor: torch.Tensor) -> torch.Tensor:
    """A single-image map ``[H, W]`` from ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``, as float on CPU."""
    squeezed = tensor.detach().float().cpu().squeeze()
    if squeezed.ndim != 2:
        raise ValueError(f"map: expected one [H, W] map (leading 1-dims allowed), got {tuple(tensor.shape)}")
    return squeezed


def _depth_panel(ax: Axes, depth: torch.Tensor, limits: tuple[float, float], title: str) -> None:
    shown = depth.clone()
    shown[~(torch.isfinite(shown) & (shown > 0))] = float("nan")
    ax.imshow(shown.numpy(), cmap=DEPTH_CMAP, vmin=limits[0], vmax=limits[1])
    _title(ax, title)


def _title(ax: Axes, title: str) -> None:
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_unit_responses(
    dissection: LayerDissection, units: Sequence[int] | None = None, *, ncols: int = 8, max_units: int = 32
) -> Figure:
    """Fig. 3/4: each unit's mean response over the depth bins as bars, the assigned bin in red, DS in the title.

    Args:
        dissection: one layer's dissection (``LayerDissection``).
        units: which units (default: the first ``max_units``).
        ncols: grid columns.
        max_units: cap when ``units`` is not given.
    """
    chosen = list(units) if units is not None else list(range(min(dissection.num_units, max_units)))
    bad = [k for k in chosen if not 0 <= k < dissection.num_units]
    if not chosen or bad:
        raise ValueError(f"units: expected unit indices in [0, {dissection.num_units}), got {chosen}")
    cols = min(ncols, len(chosen))
    fig, axes = _figure(math.ceil(len(chosen) / cols), cols, panel=1.8, aspect=0.8)
    bins = torch.arange(dissection.num_bins).numpy()
    for ax, unit in zip(axes, chosen, strict=False):
        colors = [BAR_COLOR] * dissection.num_bins
        colors[int(dissection.assigned_bin[unit])] = ASSIGNED_COLOR
        ax.bar(bins, dissection.mean_response[unit].numpy(), width=1.0, color=colors)
        ax.set_title(f"unit {unit}  DS={float(dissection.selectivity[unit]):.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[len(chosen):]:
        ax.set_visible(False)
    fig.suptitle(f"{dissection.layer}: mean response per depth bin (red: assigned bin)", fontsize=9)
    fig.supxlabel("depth bin (near -> far)", fontsize=8)
    return fig


def plot_selectivity_histogram(
    selectivities: Mapping[str, torch.Tensor], random_baseline: float, *, bins: int = 20
) -> Figure:
    """Histogram of per-unit DS for each model (step outlines) against the random baseline (dashed line).

    Args:
        selectivities: ``{model name: DS [K]}`` (e.g. ``LayerDissection.selectivity``).
        random_baseline: the Eq. 3 expectation for the layer's ``N_b``.
        bins: histogram bins over ``[0, 1]``.
    """
    if not selectivities:
        raise ValueError("selectivities: expected at least one {model: DS tensor} entry")
    fig, (ax,) = _figure(1, 1, panel=4.0, aspect=0.7)
    for name, values in selectivities.items():
        finite = values.detach().cpu().double()
        finite = finite[torch.isfinite(finite)]
        ax.hist(finite.numpy(), bins=bins, range=(0.0, 1.0), histtype="step", linewidth=1.5,
                label=f"{name} (mean {float(finite.mean()):.3f})")
    ax.axvline(random_baseline, color="black", linestyle="--", label=f"random baseline {random_baseline:.3f}")
    ax.set_xlabel("depth selectivity (Eq. 2)")
    ax.set_ylabel("units")
    ax.legend(fontsize=7)
    return fig


def plot_feature_maps(image: torch.Tensor, depth: torch.Tensor, views: Mapping[str, UnitView]) -> Figure:
    """Fig. 1/5: one row per model: input, ground-truth depth, the pixels whose *predicted* depth falls in the
    unit's bin, and the unit's feature map.

    Args:
        image: the ImageNet-normalised input ``[C, H, W]``.
        depth: ground truth ``[H, W]`` (or with leading 1-dims).
        views: ``{model name: UnitView}`` (``imde.experiments.features.unit_views``), e.g. baseline and
            interpretable side by side.
    """
    if not views:
        raise ValueError("views: expected at least one {model: UnitView} entry")
    gt = _map(depth)
    limits = depth_limits([gt])
    fig, axes = _figure(len(views), 4)
    for row, (name, view) in enumerate(views.items()):
        ax_img, ax_depth, ax_mask, ax_feat = axes[4 * row: 4 * row + 4]
        ax_img.imshow(display_image(image).numpy())
        _title(ax_img, f"{name}: input")
        _depth_panel(ax_depth, gt, limits, "depth (GT)")
        pred = _map(view.prediction)
        low, high = view.bin_range
        ax_mask.imshow(((pred > low) & (pred <= high)).float().numpy(), cmap=ERROR_CMAP, vmin=0, vmax=1)
        _title(ax_mask, f"predicted depth in ({low:.2f}, {high:.2f}] m")
        ax_feat.imshow(_map(view.feature_map).numpy(), cmap=FEATURE_CMAP)
        _title(ax_feat, f"unit {view.unit}")
    return fig


def plot_ablation(results: AblationResult | Mapping[str, AblationResult], metric: str = "delta1") -> Figure:
    """Fig. 2: accuracy against the number of ablated units, most- (solid) and least-selective-first (dashed).

    Args:
        results: one ``AblationResult`` or ``{model name: AblationResult}``.
        metric: metric to plot (``delta1`` uses the result's curves; others come from its per-step metrics).
    """
    runs = {"": results} if not isinstance(results, Mapping) else dict(results)
    if not runs:
        raise ValueError("results: expected at least one AblationResult")
    fig, (ax,) = _figure(1, 1, panel=4.0, aspect=0.7)
    for index, (name, run) in enumerate(runs.items()):
        most = [m[metric] for m in run.metrics_most]
        least = [m[metric] for m in run.metrics_least]
        color = f"C{index}"
        prefix = f"{name}: " if name else ""
        ax.plot(run.units, most, color=color, linestyle="-", marker="o", markersize=3,
                label=f"{prefix}most selective first")
        ax.plot(run.units, least, color=color, linestyle="--", marker="s", markersize=3,
                label=f"{prefix}least selective first")
    MaxNLocator = require("matplotlib.ticker", extra="viz").MaxNLocator

    first = next(iter(runs.values()))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # unit counts
    ax.set_xlabel(f"ablated units of {' & '.join(first.layers)}")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return fig


def plot_depth_predictions(image: torch.Tensor, depth: torch.Tensor, predictions: Mapping[str, torch.Tensor]) -> Figure:
    """Fig. 6: input, ground truth and each model's prediction side by side, one shared depth colour scale.

    Args:
        image: the ImageNet-normalised input ``[C, H, W]``.
        depth: ground truth ``[H, W]``.
        predictions: ``{model name: predicted depth [h, w]}``.
    """
    if not predictions:
        raise ValueError("predictions: expected at least one {model: depth map} entry")
    gt = _map(depth)
    preds = {name: _map(pred) for name, pred in predictions.items()}
    limits = depth_limits([gt, *preds.values()])
    fig, axes = _figure(1, 2 + len(preds))
    axes[0].imshow(display_image(image).numpy())
    _title(axes[0], "input")
    _depth_panel(axes[1], gt, limits, "ground truth")
    for ax, (name, pred) in zip(axes[2:], preds.items(), strict=True):
        _depth_panel(ax, pred, limits, name)
    return fig


def _bin_bars(ax: Axes, counts: torch.Tensor, highlight: int, title: str) -> None:
    """Bars of ``counts`` per bin, bin ``highlight`` in the assigned-bin colour (-1: none)."""
    colors = [ASSIGNED_COLOR if d == highlight else BAR_COLOR for d in range(counts.numel())]
    ax.bar(torch.arange(counts.numel()).numpy(), counts.numpy(), width=1.0, color=colors)
    ax.set_title(title, fontsize=7)
    ax.tick_params(labelsize=6)


def plot_explain(result: ExplainResult, *, index: int = 0, max_units: int = 4) -> Figure:
    """Fig. 8, one row for the clean and one for the FGSM input: (a) the input, (b) the ground truth, (c) the
    prediction, (d) the error pixels (delta > 1.25), (e) the pixels whose predicted depth is in the most frequent
    error bin ``b``, the histogram of the errors' predicted bins, and (f) the feature maps of ``b``'s units with
    their localisation IoU.

    Args:
        result: an ``ExplainResult``.
        index: which image of the batch.
        max_units: most unit maps shown per row.
    """
    from imde.core.bins import digitize

    cases = {"clean": result.clean, f"FGSM eps={result.epsilon:g}": result.adversarial}
    cols = 6 + max_units
    fig, axes = _figure(2, cols)
    gt = _map(result.depth[index])
    limits = depth_limits([gt, *(_map(case.prediction[index]) for case in cases.values())])
    for row, (name, case) in enumerate(cases.items()):
        ax = axes[row * cols: (row + 1) * cols]
        prediction = _map(case.prediction[index])
        ax[0].imshow(display_image(case.image[index]).numpy())
        _title(ax[0], name)
        _depth_panel(ax[1], gt, limits, "ground truth")
        _depth_panel(ax[2], prediction, limits, "prediction")
        ax[3].imshow(case.errors[index].float().numpy(), cmap=ERROR_CMAP, vmin=0, vmax=1)
        _title(ax[3], f"errors: delta > 1.25 ({100 * case.error_fraction:.1f}%)")
        in_bin = digitize(prediction, result.edges) == case.top_bin
        ax[4].imshow(in_bin.float().numpy(), cmap=ERROR_CMAP, vmin=0, vmax=1)
        _title(ax[4], f"predicted depth in bin {case.top_bin}")
        _bin_bars(ax[5], case.histogram, case.top_bin, "errors per predicted bin")
        shown = case.units[:max_units]
        for position, (slot, unit) in enumerate(zip(ax[6:], shown, strict=False)):
            slot.imshow(case.feature_maps[index, position].numpy(), cmap=FEATURE_CMAP)
            _title(slot, f"unit {unit}  IoU={float(case.localisation[position]):.2f}")
        for slot in ax[6 + len(shown):]:
            slot.set_visible(False)
    fig.suptitle(f"{result.layer}: units of the most frequent error bin ({result.unit_bins} bins)", fontsize=9)
    return fig
