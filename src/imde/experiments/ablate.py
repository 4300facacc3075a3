"""Successive ablation of units ranked by depth selectivity (Fig. 2; docs/math.md, "Ablation"), one layer or more."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imde.experiments.evaluate import EvalSettings, evaluate_with
from imde.experiments.results import SavedResult, write_json
from imde.hooks import edit_layers
from imde.models import token_transforms


def ablation_counts(num_units: int, step: int | Sequence[int]) -> list[int]:
    """Numbers of ablated units to evaluate: ``0, step, 2 step, ..., K`` or a validated explicit list.

    Example:
        >>> ablation_counts(5, 2)
        [0, 2, 4, 5]
    """
    if isinstance(step, int):
        if step < 1:
            raise ValueError(f"step={step}: expected a positive number of units per step")
        counts = list(range(0, num_units + 1, step))
        return counts if counts[-1] == num_units else [*counts, num_units]
    counts = sorted(set(int(n) for n in step))
    if not counts or counts[0] < 0 or counts[-1] > num_units:
        raise ValueError(f"step={list(step)!r}: expected unit counts between 0 and {num_units}")
    return counts


def zero_units(output: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """``output`` ``[B, K, ...]`` with the channels ``units`` set to exactly 0 (also where they held inf or NaN)."""
    return output.index_fill(1, units.to(output.device, torch.long), 0)


@dataclass
class AblationResult(SavedResult):
    """Accuracy as units are ablated most- or least-selective first (Fig. 2).

    Attributes:
        layers: the ablated layers; their units are ranked together.
        units: number of ablated units at each evaluation.
        most_selective_first: delta1 after ablating the ``units[i]`` most selective units.
        least_selective_first: delta1 after ablating the ``units[i]`` least selective units.
        metrics_most: every metric at each step of the most-selective-first order.
        metrics_least: every metric at each step of the least-selective-first order.
        order: ``(layer, unit)`` pairs sorted from most to least selective.
        files: files written (empty without ``out_dir``).
        replicates_most, replicates_least: with ``settings.bootstrap``, the metric's ``R`` bootstrap replicates at
            each step of either order (paired: the same images with the same weights at every step).
    """

    FILE = "ablation"

    layers: list[str]
    units: list[int]
    most_selective_first: list[float]
    least_selective_first: list[float]
    metrics_most: list[dict[str, float]]
    metrics_least: list[dict[str, float]]
    order: list[tuple[str, int]]
    files: list[Path] = field(default_factory=list)
    replicates_most: list[list[float]] = field(default_factory=list)
    replicates_least: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able curves (``units`` and the two delta1 lists are the demo's ``results.json`` contract)."""
        return {
            "layers": self.layers,
            "units": self.units,
            "most_selective_first": self.most_selective_first,
            "least_selective_first": self.least_selective_first,
            "metrics_most": self.metrics_most,
            "metrics_least": self.metrics_least,
            "order": [[layer, unit] for layer, unit in self.order],
            **({"replicates_most": self.replicates_most, "replicates_least": self.replicates_least}
               if self.replicates_most else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AblationResult:
        """The inverse of :meth:`to_dict`."""
        return cls(list(data["layers"]), list(data["units"]), list(data["most_selective_first"]),
                   list(data["least_selective_first"]), list(data["metrics_most"]), list(data["metrics_least"]),
                   [(str(layer), int(unit)) for layer, unit in data["order"]],
                   replicates_most=[list(r) for r in data.get("replicates_most", [])],
                   replicates_least=[list(r) for r in data.get("replicates_least", [])])


def _check_order_by(order_by: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``order_by`` as ``{layer: 1-D finite CPU selectivities}``, or a ValueError naming the bad layer."""
    if not isinstance(order_by, Mapping) or not order_by:
        raise ValueError("order_by: expected {layer name: per-unit selectivity [K]} for at least one layer, "
                         f"got {type(order_by).__name__}")
    checked = {}
    for layer, selectivity in order_by.items():
        if (not isinstance(selectivity, torch.Tensor) or selectivity.ndim != 1 or selectivity.numel() < 1
                or not torch.isfinite(selectivity).all()):
            shape = tuple(selectivity.shape) if isinstance(selectivity, torch.Tensor) else type(selectivity).__name__
            raise ValueError(f"order_by[{layer!r}]: expected a finite per-unit selectivity [K], got {shape}")
        checked[layer] = selectivity.detach().cpu().double()
    return checked


def run_ablation(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, Any]],
    order_by: Mapping[str, torch.Tensor],
    *,
    step: int | Sequence[int] = 1,
    metric: str = "delta1",
    settings: EvalSettings | None = None,
    out_dir: str | Path | None = None,
) -> AblationResult:
    """Ablate (zero) units successively in both selectivity orders and evaluate after each step.

    The units of every layer in ``order_by`` are ranked together: the paper's Fig. 2 sorts "the 128 units" of
    layers D and MFF (64 each) as one list; with one layer this is the per-layer ablation. Ties keep
    the layers' order, then the unit index. The unablated model (0 units) and the fully ablated one are the
    same in both orders and are evaluated once; every other count costs one evaluation per order.

    Args:
        model: the network (edited through ``imde.hooks.edit_layers`` hooks only).
        loader: evaluation loader.
        order_by: ``{layer: per-unit training-set selectivity [K]}`` (Eq. 2); higher = ablated earlier in the
            first order.
        step: ablate ``step`` more units per evaluation, or an explicit list of unit counts.
        metric: the metric reported in the two curves.
        settings: evaluation protocol (device, crop, depth caps, ``max_batches``).
        out_dir: when given, ``ablation.json`` is written there.
    """
    selectivity = _check_order_by(order_by)
    settings = settings or EvalSettings()
    sizes = {layer: values.numel() for layer, values in selectivity.items()}
    units_of = [(layer, unit) for layer, size in sizes.items() for unit in range(size)]
    scores = torch.cat(list(selectivity.values()))
    counts = ablation_counts(scores.numel(), step)
    order = torch.argsort(scores, descending=True, stable=True)
    reverse = torch.argsort(scores, descending=False, stable=True)

    def zero(layer: str, units: torch.Tensor) -> Any:
        def edit(output: torch.Tensor) -> torch.Tensor:
            if output.ndim < 2 or output.shape[1] != sizes[layer]:
                raise ValueError(f"order_by[{layer!r}]: {sizes[layer]} selectivities, but the layer outputs "
                                 f"{tuple(output.shape)}; expected [B, {sizes[layer]}, ...]")
            return zero_units(output, units)

        return edit

    cache: dict[tuple[int, ...], dict[str, float]] = {}
    replicates: dict[tuple[int, ...], list[float]] = {}
    token_layers = token_transforms(model, list(order_by))  # a Hugging Face ViT's token layers, edited as maps

    def metrics_for(ranked: torch.Tensor) -> dict[str, float]:
        key = tuple(sorted(ranked.tolist()))
        if key not in cache:
            per_layer: dict[str, list[int]] = {}
            for index in key:
                layer, unit = units_of[index]
                per_layer.setdefault(layer, []).append(unit)
            edits = {layer: zero(layer, torch.tensor(units)) for layer, units in per_layer.items()}
            transforms = {layer: transform for layer, transform in token_layers.items() if layer in edits}
            with edit_layers(model, edits, transforms) if edits else nullcontext():
                evaluated = evaluate_with(model, loader, settings)
            cache[key] = dict(evaluated.metrics)
            replicates[key] = evaluated.replicates.get(metric, [])
        return cache[key]

    intact = metrics_for(order[:0])
    if metric not in intact:
        raise ValueError(f"metric={metric!r}: not computed by the evaluation; available: {sorted(intact)}")
    metrics_most = [metrics_for(order[:n]) for n in counts]
    metrics_least = [metrics_for(reverse[:n]) for n in counts]
    result = AblationResult(
        layers=list(sizes),
        units=counts,
        most_selective_first=[m[metric] for m in metrics_most],
        least_selective_first=[m[metric] for m in metrics_least],
        metrics_most=metrics_most,
        metrics_least=metrics_least,
        order=[units_of[i] for i in order.tolist()],
        replicates_most=[replicates[tuple(sorted(order[:n].tolist()))] for n in counts] if settings.bootstrap else [],
        replicates_least=[replicates[tuple(sorted(reverse[:n].tolist()))] for n in counts]
        if settings.bootstrap else [],
    )
    if out_dir is not None:
        result.files = [write_json(out_dir, "ablation.json", result)]
    return result
