"""Pure statistics on replicates: bootstrap intervals, permutation p-values, Benjamini-Hochberg q-values, verdicts.

>>> [round(q, 4) for q in bh_qvalues(torch.tensor([0.01, 0.04, 0.03, 0.5], dtype=torch.float64)).tolist()]
[0.04, 0.0533, 0.0533, 0.5]
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_level(level: float) -> float:
    """Return ``level`` if it is a confidence level in ``(0, 1)``; raise ``ValueError`` otherwise."""
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r}: expected a confidence level in (0, 1), e.g. 0.95")
    return float(level)


def bias_corrected_interval(replicates: Tensor, estimate: Tensor | float, level: float = 0.95) -> tuple[Tensor, Tensor]:
    """Bias-corrected percentile bootstrap interval (Efron's BC) along the first dimension of ``replicates``.

    A statistic built on a maximum, like Eq. 2's DS, is biased upwards on a finite sample, and its bootstrap
    replicates are biased upwards again around the estimate: the plain percentile interval then sits too high.
    BC measures that shift, ``z0 = Phi^-1(fraction of replicates below the estimate)`` (ties count half), and
    reads the replicates at ``Phi(2 z0 -+ z_{(1+level)/2})`` instead of ``(1 -+ level) / 2``; with ``z0 = 0`` (no
    bias) it is the percentile interval. NaN replicates are left out; an entry without any gets NaN bounds.

    Args:
        replicates: ``[R, ...]`` bootstrap replicates.
        estimate: ``[...]`` (or a float) the statistic on the data itself.
        level: confidence level.

    Example:
        >>> low, high = bias_corrected_interval(torch.arange(1.0, 100.0), 50.0, 0.9)  # no bias: percentiles
        >>> round(low.item(), 6), round(high.item(), 6)
        (5.9, 94.1)
        >>> low, high = bias_corrected_interval(torch.arange(1.0, 100.0), 30.0, 0.9)  # replicates run high
        >>> round(low.item(), 1), round(high.item(), 1)
        (1.3, 71.6)
    """
    level = check_level(level)
    values = replicates.to(torch.float64)
    estimate = torch.as_tensor(estimate, dtype=torch.float64, device=values.device).expand(values.shape[1:])
    finite = ~torch.isnan(values)
    count = finite.sum(0)
    below = ((values < estimate) & finite).sum(0) + 0.5 * ((values == estimate) & finite).sum(0)
    safe = count.clamp_min(1).to(torch.float64)
    fraction = (below / safe).clamp(0.5 / safe, 1.0 - 0.5 / safe)
    z0 = torch.special.ndtri(fraction)
    z = torch.special.ndtri(torch.tensor((1.0 + level) / 2.0, dtype=torch.float64))
    ordered = torch.where(finite, values, float("inf")).sort(0).values  # NaNs last
    bounds = []
    for quantile in (torch.special.ndtr(2 * z0 - z), torch.special.ndtr(2 * z0 + z)):
        position = quantile * (count - 1).clamp_min(0)
        below_index = position.floor().long()
        above_index = (below_index + 1).clamp_max((count - 1).clamp_min(0))
        weight = position - below_index
        low = ordered.gather(0, below_index.unsqueeze(0)).squeeze(0)
        high = ordered.gather(0, above_index.unsqueeze(0)).squeeze(0)
        value = low + weight * (high - low)
        bounds.append(value.masked_fill(count == 0, float("nan")))
    return bounds[0], bounds[1]


def permutation_p_values(observed: Tensor, null: Tensor) -> Tensor:
    """One-sided permutation p-values ``(1 + #{null >= observed}) / (1 + P)`` along the first dimension of ``null``.

    The ``+1`` counts the observed statistic as one of the permutations, so a p-value is never 0 and the test
    is exact (valid at every level) when the null replicates are exchangeable with the observation. NaN null
    replicates count as not at least as large; a NaN observation gives NaN.

    Args:
        observed: ``[...]`` statistic of the real pairing.
        null: ``[P, ...]`` the same statistic under ``P`` null replicates.

    Example:
        >>> permutation_p_values(torch.tensor([0.9, 0.1]), torch.tensor([[0.5, 0.5], [0.95, 0.2], [0.1, 0.0]])).tolist()
        [0.5, 0.75]
    """
    observed = observed.to(torch.float64)
    exceed = (null.to(torch.float64) >= observed.unsqueeze(0)).sum(0)
    p = (1.0 + exceed.to(torch.float64)) / (1.0 + null.shape[0])
    return p.masked_fill(torch.isnan(observed), float("nan"))


def bh_qvalues(p_values: Tensor) -> Tensor:
    """Benjamini-Hochberg q-values (false-discovery-rate adjusted p-values) of a family of tests.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` over the ``m`` non-NaN p-values sorted increasingly; the units
    with ``q < alpha`` are the BH discoveries at FDR ``alpha``. NaN p-values stay NaN and are not counted in ``m``.

    Example:
        >>> bh_qvalues(torch.tensor([0.02, float("nan"), 0.01], dtype=torch.float64)).tolist()
        [0.02, nan, 0.02]
    """
    p = p_values.to(torch.float64)
    finite = ~torch.isnan(p)
    values = p[finite]
    m = values.numel()
    q = torch.full_like(p, float("nan"))
    if m == 0:
        return q
    order = values.argsort()
    ranked = values[order] * m / torch.arange(1, m + 1, dtype=torch.float64, device=p.device)
    monotone = ranked.flip(0).cummin(0).values.flip(0).clamp_max(1.0)
    adjusted = torch.empty_like(values)
    adjusted[order] = monotone
    q[finite] = adjusted
    return q


#: Two-sided 95 % quantiles of Student's t with 1-30 degrees of freedom (standard tables, 3 decimals).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean of a few independent runs (e.g. seeds) and its 95 % Student-t interval ``mean -+ t s / sqrt(n)``.

    Beyond 30 degrees of freedom ``t ~ 1.96 + 2.5 / df`` (within 0.002 of the exact quantile). One run: no interval.

    Example:
        >>> [round(x, 4) for x in mean_interval([1.0, 2.0, 3.0])]  # t(2) = 4.303, s / sqrt(3) = 0.5774
        [2.0, -0.4843, 4.4843]
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval: expected at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan"), float("nan")
    df = n - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.5 / df
    half = t * (sum((v - mean) ** 2 for v in values) / df) ** 0.5 / n**0.5
    return mean, mean - half, mean + half


def verdict(low: float, high: float, threshold: float, higher_holds: bool = True) -> str:
    """``"holds"`` when the whole interval is on the claimed side of ``threshold``, ``"fails"`` when it is on the
    other side, ``"inconclusive"`` when it straddles it (or is NaN).

    Args:
        low: lower bound of the interval.
        high: upper bound.
        threshold: the claim's threshold.
        higher_holds: the claim is "value > threshold" (``False``: "value < threshold").

    Example:
        >>> verdict(0.40, 0.45, 1 / 3), verdict(0.30, 0.35, 1 / 3), verdict(0.1, 0.2, 0.3, higher_holds=False)
        ('holds', 'inconclusive', 'holds')
    """
    if low != low or high != high:  # NaN
        return "inconclusive"
    above, below = low > threshold, high < threshold
    if above or below:
        return "holds" if above == higher_holds else "fails"
    return "inconclusive"
