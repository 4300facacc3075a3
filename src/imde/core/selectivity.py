"""Depth selectivity of units (Eq. 2, and Eq. 5's form with an assigned bin) and its random baseline (Eq. 3)."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import Tensor

EMPTY_BIN_MODES = ("skip", "zero")


def selectivity_from_abs(
    abs_response: Tensor, observed: Tensor, assigned: Tensor | None = None, eps: float = 0.0
) -> Tensor:
    """Differentiable core of Eq. 2 / Eq. 5 on a finite, non-negative ``|R|``.

    ``DS_k = (top_k - mean_others_k) / (top_k + mean_others_k + eps)`` where ``top_k`` is the largest observed
    ``|R[k, d]|`` (Eq. 2) or ``|R[k, d_k]|`` for an assignment (Eq. 5), and ``mean_others_k`` averages the
    other observed bins. A unit whose ``top + mean_others`` is 0 (a dead unit) gets 0. ``eps = 0`` is the
    paper's formula; the training losses may use ``eps > 0`` (see :class:`imde.losses.selectivity.AssignLoss`).

    Args:
        abs_response: ``[K, N_b]`` finite ``|R|`` (any value where not observed; it is ignored).
        observed: bool, broadcastable to ``[K, N_b]``: the bins that take part. Every unit needs at
            least 2 observed bins for a meaningful result (the callers check it).
        assigned: optional int64 ``[K]`` assigned bins ``d_k``.
        eps: non-negative constant added to the denominator, in the units of ``|R|``.

    Returns:
        ``[K]`` in the dtype of ``abs_response`` (``[0, 1]`` for Eq. 2, ``[-1, 1]`` for Eq. 5).
    """
    observed = observed.expand_as(abs_response)
    masked = torch.where(observed, abs_response, torch.zeros_like(abs_response))
    num_observed = observed.sum(-1)
    top = masked.max(-1).values if assigned is None else masked.gather(1, assigned.view(-1, 1)).squeeze(1)
    others = (masked.sum(-1) - top) / (num_observed - 1).clamp_min(1)
    if assigned is None:  # mean of the others <= max; rounding in the subtraction must not make DS < 0
        others = torch.minimum(others, top)
    denom = top + others + eps
    alive = denom > 0
    return torch.where(alive, (top - others) / torch.where(alive, denom, torch.ones_like(denom)), torch.zeros_like(top))


def _check_response(mean_response: Tensor) -> Tensor:
    if not isinstance(mean_response, Tensor) or mean_response.ndim != 2:
        shape = tuple(mean_response.shape) if isinstance(mean_response, Tensor) else type(mean_response).__name__
        raise ValueError(f"mean_response: expected a [K, N_b] tensor, got {shape}")
    if torch.isinf(mean_response).any():
        raise ValueError("mean_response: contains inf; expected finite responses, NaN for empty bins")
    return mean_response.to(torch.float64)


def depth_selectivity(mean_response: Tensor, assigned: Tensor | None = None, empty_bins: str = "skip") -> Tensor:
    """Depth selectivity of every unit from its mean response per bin (Eq. 2; Eq. 5's form with ``assigned``).

    Works on ``|R|``. With ``empty_bins="skip"`` (the paper; ``docs/math.md``, "Empty bins") bins whose response is NaN
    (never observed) are left out of both the max and the mean of the others; ``"zero"`` counts them as a
    zero response (the authors' code). A dead unit (``|R| = 0`` in every observed bin) gets 0.

    Args:
        mean_response: ``[K, N_b]`` mean response ``R`` (Eq. 1), NaN for empty bins.
        assigned: optional int64 ``[K]`` assigned bin of every unit (Eq. 6); its ``|R|`` replaces the max.
            A unit whose assigned bin is not observed gets NaN with ``"skip"`` and 0 with ``"zero"`` (the
            authors' training convention).
        empty_bins: ``"skip"`` or ``"zero"``.

    Returns:
        float64 ``[K]``.

    Raises:
        ValueError: on a non-2-D input, an unknown ``empty_bins``, a bad ``assigned``, or fewer than 2
            observed bins.

    Example:
        >>> depth_selectivity(torch.tensor([[3.0, 1.0, 1.0], [1.0, 1.0, float("nan")]])).tolist()
        [0.5, 0.0]
    """
    response = _check_response(mean_response)
    if empty_bins not in EMPTY_BIN_MODES:
        raise ValueError(f"empty_bins={empty_bins!r}: expected one of {', '.join(EMPTY_BIN_MODES)}")
    units, num_bins = response.shape
    observed = ~torch.isnan(response)
    if empty_bins == "zero":
        observed = torch.ones_like(observed)
    fewest = int(observed.sum(-1).min()) if units else num_bins
    if fewest < 2:
        raise ValueError(
            f"mean_response {tuple(response.shape)}: selectivity needs at least 2 observed (non-NaN) bins per unit, "
            f"found a unit with {fewest}"
        )
    abs_response = torch.nan_to_num(response.abs(), nan=0.0)
    if assigned is None:
        return selectivity_from_abs(abs_response, observed)
    assigned = torch.as_tensor(assigned, device=response.device)
    if assigned.shape != (units,) or assigned.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"assigned: expected an integer tensor of shape [{units}], got {tuple(assigned.shape)}")
    if units and (int(assigned.min()) < 0 or int(assigned.max()) >= num_bins):
        raise ValueError(f"assigned: bins must lie in [0, {num_bins - 1}], got {assigned.tolist()}")
    assigned = assigned.long()
    result = selectivity_from_abs(abs_response, observed, assigned)
    absent = ~observed.gather(1, assigned.view(-1, 1)).squeeze(1)
    return result.masked_fill(absent, float("nan"))


def dead_units(mean_response: Tensor) -> Tensor:
    """Bool ``[K]``: units whose ``|R|`` is 0 in every observed (non-NaN) bin; their selectivity is 0.

    Example:
        >>> dead_units(torch.tensor([[0.0, 0.0], [0.0, 2.0]])).tolist()
        [True, False]
    """
    response = _check_response(mean_response)
    return torch.nan_to_num(response.abs(), nan=0.0).amax(-1) == 0


def preferred_bins(mean_response: Tensor) -> Tensor:
    """int64 ``[K]``: the observed bin of largest ``|R|`` of every unit (the ``max`` of Eq. 2); -1 for dead units.

    Example:
        >>> preferred_bins(torch.tensor([[1.0, -3.0, float("nan")], [0.0, 0.0, 0.0]])).tolist()
        [1, -1]
    """
    response = _check_response(mean_response)
    abs_response = torch.nan_to_num(response.abs(), nan=-1.0)
    best = abs_response.argmax(-1)
    return best.masked_fill(dead_units(response), -1)


@cache
def random_baseline(num_bins: int) -> float:
    """Exact expectation of Eq. 2's ``DS`` for ``N_b`` i.i.d. uniform responses (Eq. 3 at finite ``N_b``).

    Given the max ``m``, the other ``n = N_b - 1`` responses are i.i.d. ``U[0, m]``, so
    ``DS = (1 - Y) / (1 + Y)`` with ``Y`` the mean of ``n`` i.i.d. ``U[0, 1]``, whatever ``m``. With
    ``1 / (n + S) = int_0^inf exp(-t (n + S)) dt`` and ``E[exp(-t S)] = ((1 - e^-t) / t)^n`` for the
    Irwin-Hall sum ``S = n Y``:

        E[DS] = 2 E[n / (n + S)] - 1,   E[n / (n + S)] = int_0^inf f(u / n)^n du,   f(t) = (e^-t - e^-2t) / t,

    computed with Gauss-Legendre quadrature (deterministic, about 1e-12 accurate). Tends to 1/3 as
    ``N_b`` grows (Eq. 3); ``N_b = 2`` gives ``2 ln 2 - 1``.

    Example:
        >>> round(random_baseline(2), 9)  # 2 ln 2 - 1
        0.386294361
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins={num_bins!r}: expected an integer >= 2")
    n = num_bins - 1
    nodes, weights = np.polynomial.legendre.leggauss(200)
    total = 0.0
    # the integrand decays like exp(-u) (n = 1) to exp(-1.5 u) (large n): [0, 80] in pieces is plenty
    for lo, hi in ((0.0, 2.0), (2.0, 8.0), (8.0, 24.0), (24.0, 80.0)):
        u = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
        t = u / n
        log_f = -t + np.log(-np.expm1(-t)) - np.log(t)
        total += 0.5 * (hi - lo) * float(np.sum(weights * np.exp(n * log_f)))
    return 2.0 * total - 1.0
