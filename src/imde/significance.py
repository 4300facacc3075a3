"""Uncertainty of dissection and evaluation numbers: bootstrap intervals, permutation p-values, paired differences.

From a :class:`imde.DepthResponse` created with ``bootstrap=R`` and/or ``permutations=P``:

- every unit's DS (Eq. 2, or Eq. 5's form with ``assigned``) and the layer mean get bias-corrected percentile
  intervals (:func:`imde.core.inference.bias_corrected_interval`) from the ``R`` Poisson-bootstrap replicates
  (images resampled; the units and bins fixed);
- every unit gets a one-sided permutation p-value against the null "this unit's response does not depend on
  *its own image's* depth": the DS of the real pairing compared with the ``P`` replicates in which every image's
  activations are binned by another image's depth (``(1 + #{null >= observed}) / (1 + P)``), and the
  Benjamini-Hochberg q-value across the layer's units;
- the preferred bin's stability: the fraction of bootstrap replicates whose preferred bin is the unit's.

:func:`compare_selectivity` and :func:`compare_metrics` give intervals of differences between two models
measured on the same images with the same seed (the same Poisson weights, so the replicates are paired).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from imde.core.inference import bh_qvalues, bias_corrected_interval, check_level, permutation_p_values
from imde.core.metrics import METRIC_NAMES
from imde.core.selectivity import depth_selectivity, preferred_bins, selectivity_from_abs

if TYPE_CHECKING:
    from imde.accumulators import DepthMetrics, DepthResponse

_CHUNK_ELEMENTS = 1 << 22  # replicate entries scored at a time (32 MB of float64)
FDR_LEVEL = 0.05


def replicate_selectivity(sums: Tensor, counts: Tensor, assigned: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Eq. 2 (or Eq. 5's form) DS and preferred bin of every unit in every replicate of Eq. 1's sums.

    Args:
        sums: ``[R, K, N_b]`` replicate sums.
        counts: ``[R, N_b]`` or ``[N_b]`` replicate pixel counts (bins with count 0 are not observed).
        assigned: optional int64 ``[K]`` assigned bins.

    Returns:
        float64 ``(ds [R, K], preferred [R, K])``; DS is NaN where a replicate observes fewer than 2 bins or
        (with ``assigned``) not the assigned bin, the preferred bin is -1 for a dead unit.

    Example:
        >>> ds, pref = replicate_selectivity(torch.tensor([[[3.0, 1.0, 1.0]]]), torch.tensor([1.0, 1.0, 1.0]))
        >>> ds.tolist(), pref.tolist()
        ([[0.5]], [[0]])
    """
    reps, units, num_bins = sums.shape
    counts = counts.to(torch.float64).expand(reps, num_bins)
    ds = torch.empty(reps, units, dtype=torch.float64)
    preferred = torch.empty(reps, units, dtype=torch.int64)
    step = max(1, _CHUNK_ELEMENTS // max(units * num_bins, 1))
    for start in range(0, reps, step):  # chunks of replicates bound the float64 temporaries
        chunk_counts = counts[start : start + step].to(sums.device)
        observed = (chunk_counts > 0).unsqueeze(1).expand(-1, units, -1)
        response = (sums[start : start + step].to(torch.float64) / chunk_counts.clamp_min(1).unsqueeze(1)).abs()
        response = torch.where(observed, response, 0.0)
        flat, flat_observed = response.reshape(-1, num_bins), observed.reshape(-1, num_bins)
        flat_assigned = None if assigned is None else assigned.to(sums.device).repeat(response.shape[0])
        chunk = selectivity_from_abs(flat, flat_observed, flat_assigned).view(-1, units)
        too_few = observed.sum(-1) < 2
        if flat_assigned is not None:
            too_few |= ~flat_observed.gather(1, flat_assigned.view(-1, 1)).view(-1, units)
        ds[start : start + step] = chunk.masked_fill(too_few, float("nan")).cpu()
        best = torch.where(observed, response, -1.0).argmax(-1)
        preferred[start : start + step] = best.masked_fill(response.amax(-1) == 0, -1).cpu()
    return ds, preferred


@dataclass(frozen=True)
class Significance:
    """Selectivity of a layer's units with its uncertainty (:meth:`imde.DepthResponse.significance`).

    Attributes:
        selectivity: float64 ``[K]`` DS of every unit (Eq. 2, or Eq. 5's form with an assignment).
        ci_low, ci_high: ``[K]`` bias-corrected percentile bootstrap interval at ``level`` (NaN without bootstrap).
        p_value: ``[K]`` permutation p-value (NaN without permutations).
        q_value: ``[K]`` Benjamini-Hochberg q-value across the layer's units.
        layer_selectivity: mean DS over the units (the layer's number in Tables 1, 4, 7).
        layer_ci: its interval.
        preferred_bin: int64 ``[K]`` bin of largest ``|R|`` (-1: dead unit).
        preferred_stability: ``[K]`` fraction of bootstrap replicates with the same preferred bin.
        level: confidence level of the intervals.
        bootstrap, permutations: the replicate counts behind them.
        replicates: float64 ``[R, K]`` bootstrap DS of every unit (layers of one pass pool replicate by replicate).
    """

    selectivity: Tensor
    ci_low: Tensor
    ci_high: Tensor
    p_value: Tensor
    q_value: Tensor
    layer_selectivity: float
    layer_ci: tuple[float, float]
    preferred_bin: Tensor
    preferred_stability: Tensor
    level: float
    bootstrap: int
    permutations: int
    replicates: Tensor | None = field(default=None, repr=False, compare=False)

    def significant(self, fdr: float = FDR_LEVEL) -> Tensor:
        """bool ``[K]``: units selective at false-discovery rate ``fdr`` (``q < fdr``; none without permutations)."""
        return torch.nan_to_num(self.q_value, nan=1.0) < fdr

    @property
    def num_significant(self) -> int:
        """Number of units with ``q < 0.05``."""
        return int(self.significant().sum())

    def summary(self) -> dict[str, Any]:
        """Layer-level numbers (JSON-able)."""
        return {
            "selectivity": self.layer_selectivity,
            "selectivity_ci": list(self.layer_ci),
            "level": self.level,
            "num_significant": self.num_significant if self.permutations else None,
            "fdr": FDR_LEVEL,
            "bootstrap": self.bootstrap,
            "permutations": self.permutations,
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`summary` plus the per-unit lists (NaN written as ``None``)."""
        def listed(tensor: Tensor) -> list[float | None]:
            return [None if value != value else value for value in tensor.tolist()]

        return {**self.summary(), "units": {
            "ci_low": listed(self.ci_low), "ci_high": listed(self.ci_high), "p_value": listed(self.p_value),
            "q_value": listed(self.q_value), "preferred_stability": listed(self.preferred_stability)}}


def selectivity_significance(
    response: DepthResponse, assigned: Tensor | None = None, level: float = 0.95
) -> Significance:
    """Per-unit and layer DS of ``response`` with bootstrap intervals, permutation p-values and BH q-values.

    Intervals need ``bootstrap > 0`` and p-values ``permutations > 0``; what was not accumulated is NaN.

    Args:
        response: the accumulated layer.
        assigned: optional int64 ``[K]`` assigned bins (Eq. 5's form of DS) instead of the free maximum.
        level: confidence level of the intervals.
    """
    level = check_level(level)
    mean = response.mean_response().cpu()
    if assigned is not None:
        assigned = torch.as_tensor(assigned).long()
    selectivity = depth_selectivity(mean, assigned=assigned)
    preferred = preferred_bins(mean)
    units = selectivity.numel()
    nan = torch.full((units,), float("nan"), dtype=torch.float64)
    layer = float(selectivity.nanmean())
    ci_low, ci_high, stability, layer_ci = nan, nan.clone(), nan.clone(), (float("nan"), float("nan"))
    boot = None
    if response.bootstrap:
        boot, boot_preferred = replicate_selectivity(response.boot_sums, response.boot_counts, assigned)
        ci_low, ci_high = bias_corrected_interval(boot, selectivity, level)
        low, high = bias_corrected_interval(boot.nanmean(1), layer, level)
        layer_ci = (float(low), float(high))
        stability = (boot_preferred == preferred).to(torch.float64).mean(0)
    p_value = nan.clone()
    if response.permutations:
        null, _ = replicate_selectivity(response.null_sums, response.counts, assigned)
        p_value = permutation_p_values(selectivity, null)
    return Significance(selectivity, ci_low, ci_high, p_value, bh_qvalues(p_value), layer, layer_ci, preferred,
                        stability, level, response.bootstrap, response.permutations, boot)


@dataclass(frozen=True)
class Difference:
    """A paired difference ``a - b`` with its bias-corrected percentile bootstrap interval."""

    estimate: float
    ci_low: float
    ci_high: float
    level: float

    def to_dict(self) -> dict[str, float]:
        """JSON-able."""
        return {"estimate": self.estimate, "ci_low": self.ci_low, "ci_high": self.ci_high, "level": self.level}


def _check_paired(a: DepthResponse | DepthMetrics, b: DepthResponse | DepthMetrics, what: str) -> None:
    if not a.bootstrap or not b.bootstrap:
        raise ValueError(f"{what}: both accumulators need bootstrap replicates (got bootstrap={a.bootstrap}, "
                         f"{b.bootstrap})")
    if (a.bootstrap, a.seed) != (b.bootstrap, b.seed):
        raise ValueError(
            f"{what}: not paired: (bootstrap, seed) ({a.bootstrap}, {a.seed}) vs ({b.bootstrap}, {b.seed})"
        )
    if (a.num_images, a.key_checksum) != (b.num_images, b.key_checksum):
        raise ValueError(f"{what}: not paired: the two accumulators saw different images ({a.num_images} vs "
                         f"{b.num_images} images, or different keys); measure both on the same images")


def _difference(estimate: float, replicates: Tensor, level: float) -> Difference:
    low, high = bias_corrected_interval(replicates, estimate, level)
    return Difference(float(estimate), float(low), float(high), level)


def compare_selectivity(
    resp_a: DepthResponse,
    resp_b: DepthResponse,
    level: float = 0.95,
    assigned_a: Tensor | None = None,
    assigned_b: Tensor | None = None,
) -> Difference:
    """Layer mean DS of ``resp_a`` minus that of ``resp_b``, with a paired bootstrap interval.

    Both must have been accumulated on the same images (same keys) with the same ``bootstrap`` and ``seed``:
    every image then has the same Poisson weight in replicate ``r`` of both, and the interval is that of the
    difference of the replicates (it is narrower than either interval when the two layers vary together).

    Raises:
        ValueError: replicates missing or not paired (other seed, count, images or keys).
    """
    level = check_level(level)
    _check_paired(resp_a, resp_b, "compare_selectivity")
    estimates, replicates = [], []
    for resp, assigned in ((resp_a, assigned_a), (resp_b, assigned_b)):
        assigned = None if assigned is None else torch.as_tensor(assigned).long()
        estimates.append(float(depth_selectivity(resp.mean_response().cpu(), assigned=assigned).nanmean()))
        replicates.append(replicate_selectivity(resp.boot_sums, resp.boot_counts, assigned)[0].nanmean(1))
    return _difference(estimates[0] - estimates[1], replicates[0] - replicates[1], level)


def metric_intervals(metrics: DepthMetrics, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Bootstrap interval of every dataset metric (``metrics`` created with ``bootstrap > 0``)."""
    level = check_level(level)
    values = metrics.compute()
    estimate = torch.tensor([values[name] for name in METRIC_NAMES], dtype=torch.float64)
    low, high = bias_corrected_interval(metrics.replicates(), estimate, level)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(METRIC_NAMES)}


def compare_metrics(a: DepthMetrics, b: DepthMetrics, level: float = 0.95) -> dict[str, Difference]:
    """Every metric of ``a`` minus ``b`` (two models on the same images, same seed) with paired intervals."""
    level = check_level(level)
    _check_paired(a, b, "compare_metrics")
    values_a, values_b = a.compute(), b.compute()
    diff = a.replicates() - b.replicates()
    return {
        name: _difference(values_a[name] - values_b[name], diff[:, i], level) for i, name in enumerate(METRIC_NAMES)
    }
