"""Successive ablation of a layer's units ordered by depth selectivity (Fig. 2; spec "Ablation")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imde.experiments._evaluate import EvalSettings, evaluate_metrics
from imde.experiments._results import write_json
from imde.probe import edit_layers


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
    """``output`` ``[B, K, ...]`` with the channels ``units`` set to 0 (one masked multiply)."""
    keep = torch.ones(output.shape[1], dtype=output.dtype, device=output.device)
    keep[units.to(output.device)] = 0
    return output * keep.view(1, -1, *([1] * (output.ndim - 2)))


@dataclass
class AblationResult:
    """Accuracy as units are ablated most- or least-selective first (Fig. 2).

    Attributes:
        layer: the ablated layer.
        units: number of ablated units at each evaluation.
        most_selective_first: delta1 after ablating the ``units[i]`` most selective units.
        least_selective_first: delta1 after ablating the ``units[i]`` least selective units.
        metrics_most: every metric at each step of the most-selective-first order.
        metrics_least: every metric at each step of the least-selective-first order.
        order: unit indices sorted from most to least selective.
        files: files written (empty without ``out_dir``).
    """

    layer: str
    units: list[int]
    most_selective_first: list[float]
    least_selective_first: list[float]
    metrics_most: list[dict[str, float]]
    metrics_least: list[dict[str, float]]
    order: list[int]
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able curves (``units`` and the two delta1 lists are the demo's ``results.json`` contract)."""
        return {
            "layer": self.layer,
            "units": self.units,
            "most_selective_first": self.most_selective_first,
            "least_selective_first": self.least_selective_first,
            "metrics_most": self.metrics_most,
            "metrics_least": self.metrics_least,
            "order": self.order,
        }


def run_ablation(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, Any]],
    layer: str,
    order_by: torch.Tensor,
    *,
    step: int | Sequence[int] = 1,
    metric: str = "delta1",
    settings: EvalSettings | None = None,
    out_dir: str | Path | None = None,
) -> AblationResult:
    """Ablate (zero) ``layer``'s units successively in both selectivity orders and evaluate after each step.

    The unablated model (0 units) and the fully ablated one (K units) are the same in both orders and are
    evaluated once; every other count costs one evaluation per order.

    Args:
        model: the network (edited through ``imde.probe.edit_layers`` hooks only).
        loader: evaluation loader.
        layer: the layer to ablate.
        order_by: per-unit training-set selectivity ``[K]`` (Eq. 2); higher = ablated earlier in the first order.
        step: ablate ``step`` more units per evaluation, or an explicit list of unit counts.
        metric: the metric reported in the two curves.
        settings: evaluation protocol (device, crop, depth caps, ``max_batches``).
        out_dir: when given, ``ablation.json`` is written there.
    """
    if order_by.ndim != 1 or order_by.numel() < 1 or not torch.isfinite(order_by).all():
        raise ValueError(f"order_by: expected a finite per-unit selectivity [K], got shape {tuple(order_by.shape)}")
    settings = settings or EvalSettings()
    num_units = order_by.numel()
    counts = ablation_counts(num_units, step)
    order = torch.argsort(order_by.detach().cpu(), descending=True, stable=True)
    reverse = torch.argsort(order_by.detach().cpu(), descending=False, stable=True)

    def ablate(units: torch.Tensor) -> Any:
        def edit(output: torch.Tensor) -> torch.Tensor:
            if output.ndim < 2 or output.shape[1] != num_units:
                raise ValueError(f"order_by: {num_units} selectivities, but layer {layer!r} outputs "
                                 f"{tuple(output.shape)}; expected [B, {num_units}, ...]")
            return zero_units(output, units)

        return edit

    def evaluate_without(units: torch.Tensor) -> dict[str, float]:
        with edit_layers(model, {layer: ablate(units)}):
            return evaluate_metrics(model, loader, settings)

    cache: dict[tuple[int, ...], dict[str, float]] = {}

    def metrics_for(units: torch.Tensor) -> dict[str, float]:
        key = tuple(sorted(units.tolist()))
        if key not in cache:
            cache[key] = evaluate_without(units) if key else evaluate_metrics(model, loader, settings)
        return cache[key]

    intact = metrics_for(order[:0])
    if metric not in intact:
        raise ValueError(f"metric={metric!r}: not computed by the evaluation; available: {sorted(intact)}")
    metrics_most = [metrics_for(order[:n]) for n in counts]
    metrics_least = [metrics_for(reverse[:n]) for n in counts]
    result = AblationResult(
        layer=layer,
        units=counts,
        most_selective_first=[m[metric] for m in metrics_most],
        least_selective_first=[m[metric] for m in metrics_least],
        metrics_most=metrics_most,
        metrics_least=metrics_least,
        order=order.tolist(),
    )
    if out_dir is not None:
        result.files = [write_json(out_dir, "ablation.json", result)]
    return result
