"""Depth bins: edges (SID, uniform, log), dataset presets, the :class:`DepthBins` value, digitisation, assignment.

All edge functions return ``N_b + 1`` float64 edges ``e_0 = 0 < e_1 = alpha < ... < e_{N_b} = beta``.
Bin ``d`` (0-based) holds depths in ``(e_d, e_{d+1}]``, so bin 0 is the catch-all ``(0, alpha]`` and the
``N_b - 1`` bins above ``alpha`` follow the chosen spacing (Sec. 5 of the paper; ``docs/math.md``, "Depth bins").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DEPTH_PRESETS: dict[str, tuple[float, float]] = {"nyu": (0.75, 10.0), "kitti": (3.0, 80.0), "rendered": (1.3, 7.0)}
"""``(alpha, beta)`` per dataset: the authors' NYU Depth v2 and KITTI presets, and imde's rendered rooms.

The rendered rooms span 0.5-10 m like NYU, but few of their pixels are nearer than 1.1 m or farther than
7 m, so with NYU's range and 8 SID bins the first bin holds 0.4 % of the pixels and the last 0.8 %
(2,000 training images, ``fixed`` rig): a unit assigned such a bin (Eq. 6) sees it in few batches.
``(1.3, 7.0)`` puts 4.6-21 % of the pixels in every bin (``varied`` rig: 3.6-19 %) and leaves 0.9 % above
``beta`` (docs/rendered.md, "Depth bins").
"""

EDGE_KINDS = ("sid", "uniform", "log")


def _check_range(num_bins: int, alpha: float, beta: float) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins={num_bins!r}: expected an integer >= 2")
    if not (0.0 < float(alpha) < float(beta) < float("inf")):
        raise ValueError(f"alpha={alpha!r}, beta={beta!r}: expected finite 0 < alpha < beta")


def _with_zero(upper: Tensor) -> Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.float64), upper])


def sid_edges(num_bins: int, alpha: float, beta: float) -> Tensor:
    """Space-increasing discretisation (DORN) shifted so that ``e_1 = alpha`` (Sec. 5, ``docs/math.md``).

    ``e_0 = 0`` and ``e_i = (beta + 1 - alpha) ** ((i - 1) / (N_b - 1)) - (1 - alpha)`` for ``i = 1 .. N_b``.

    Args:
        num_bins: number of bins ``N_b`` (at least 2).
        alpha: upper edge of bin 0, metres.
        beta: upper edge of the last bin, metres.

    Returns:
        float64 tensor ``[N_b + 1]``.

    Example:
        >>> sid_edges(2, 0.75, 10.0).tolist()
        [0.0, 0.75, 10.0]
    """
    _check_range(num_bins, alpha, beta)
    shift = 1.0 - float(alpha)
    exponents = torch.arange(num_bins, dtype=torch.float64) / (num_bins - 1)
    upper = (float(beta) + shift) ** exponents - shift
    upper[0], upper[-1] = float(alpha), float(beta)  # exact end points despite rounding
    return _with_zero(upper)


def uniform_edges(num_bins: int, alpha: float, beta: float) -> Tensor:
    """Bin 0 is ``(0, alpha]``, the other ``N_b - 1`` bins split ``(alpha, beta]`` into equal widths.

    Example:
        >>> uniform_edges(3, 1.0, 5.0).tolist()
        [0.0, 1.0, 3.0, 5.0]
    """
    _check_range(num_bins, alpha, beta)
    return _with_zero(torch.linspace(float(alpha), float(beta), num_bins, dtype=torch.float64))


def log_edges(num_bins: int, alpha: float, beta: float) -> Tensor:
    """Bin 0 is ``(0, alpha]``, the other ``N_b - 1`` bins split ``(alpha, beta]`` evenly in ``log(depth)``.

    Example:
        >>> log_edges(3, 1.0, 4.0).tolist()
        [0.0, 1.0, 2.0, 4.0]
    """
    _check_range(num_bins, alpha, beta)
    upper = torch.logspace(
        torch.log10(torch.tensor(float(alpha), dtype=torch.float64)).item(),
        torch.log10(torch.tensor(float(beta), dtype=torch.float64)).item(),
        num_bins,
        dtype=torch.float64,
    )
    upper[0], upper[-1] = float(alpha), float(beta)
    return _with_zero(upper)


_EDGE_FUNCTIONS = {"sid": sid_edges, "uniform": uniform_edges, "log": log_edges}


def preset_range(preset: str | tuple[float, float]) -> tuple[float, float]:
    """``(alpha, beta)`` of a preset name (a key of :data:`DEPTH_PRESETS`) or of an explicit pair.

    Raises:
        ValueError: an unknown name, or something that is not a pair of numbers.

    Example:
        >>> preset_range("rendered")
        (1.3, 7.0)
    """
    if isinstance(preset, str):
        if preset not in DEPTH_PRESETS:
            raise ValueError(f"preset={preset!r}: expected one of {', '.join(DEPTH_PRESETS)} or an (alpha, beta) pair")
        return DEPTH_PRESETS[preset]
    try:
        alpha, beta = (float(v) for v in preset)
    except (TypeError, ValueError) as err:
        raise ValueError(f"preset={preset!r}: expected a preset name or an (alpha, beta) pair") from err
    return alpha, beta


def dataset_edges(preset: str | tuple[float, float], num_bins: int = 64, kind: str = "sid") -> Tensor:
    """Edges for a dataset preset (a key of :data:`DEPTH_PRESETS`) or an explicit ``(alpha, beta)`` pair.

    Example:
        >>> dataset_edges("kitti", 2).tolist()
        [0.0, 3.0, 80.0]
    """
    return DepthBins(preset, num_bins, kind).edges


@dataclass(frozen=True)
class DepthBins:
    """The depth bins of a dissection or a selectivity loss, decided once: range, spacing and bin count.

    A layer with ``K`` units uses ``N_b = min(num_bins, K)`` bins over the same range (Sec. 4.2);
    :meth:`for_units` applies that rule and :attr:`edges` gives the edges (``docs/math.md``, "Depth bins").

    Args:
        preset: a key of :data:`DEPTH_PRESETS` (``"nyu"``, ``"kitti"``, ``"rendered"``) or ``(alpha, beta)``.
        num_bins: requested ``N_b`` (at least 2).
        kind: edge spacing above ``alpha``: ``"sid"`` (the paper), ``"uniform"`` or ``"log"``.

    Raises:
        ValueError: an unknown preset or kind, a bad range, or ``num_bins < 2``, naming the argument.

    Example:
        >>> bins = DepthBins("kitti", num_bins=64)
        >>> bins.for_units(2).edges.tolist()
        [0.0, 3.0, 80.0]
        >>> DepthBins((1.0, 5.0), 3, "uniform").edges.tolist()
        [0.0, 1.0, 3.0, 5.0]
    """

    preset: str | tuple[float, float] = "nyu"
    num_bins: int = 64
    kind: str = "sid"

    def __post_init__(self) -> None:
        alpha, beta = preset_range(self.preset)
        if not isinstance(self.preset, str):
            object.__setattr__(self, "preset", (alpha, beta))
        if self.kind not in _EDGE_FUNCTIONS:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(EDGE_KINDS)}")
        _check_range(self.num_bins, alpha, beta)

    @property
    def alpha(self) -> float:
        """Upper edge of bin 0, metres."""
        return preset_range(self.preset)[0]

    @property
    def beta(self) -> float:
        """Upper edge of the last bin, metres; deeper pixels are invalid."""
        return preset_range(self.preset)[1]

    @property
    def edges(self) -> Tensor:
        """The ``num_bins + 1`` float64 edges."""
        return _EDGE_FUNCTIONS[self.kind](self.num_bins, self.alpha, self.beta)

    def for_units(self, num_units: int) -> DepthBins:
        """The bins of a layer with ``num_units`` units: ``N_b = min(num_bins, K)`` (Sec. 4.2).

        Raises:
            ValueError: fewer than 2 units (selectivity compares at least 2 bins).
        """
        if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 2:
            raise ValueError(f"num_units={num_units!r}: a layer needs at least 2 units for depth selectivity")
        return self if num_units >= self.num_bins else DepthBins(self.preset, num_units, self.kind)


DEFAULT_BINS = DepthBins()
"""64 SID bins of the NYU preset, the paper's setting (the default of the experiments)."""


def check_edges(edges: Tensor, name: str = "edges") -> Tensor:
    """Validate bin edges and return them as a 1-D float64 tensor.

    Raises:
        ValueError: unless ``edges`` is 1-D, finite, has at least 3 entries (2 bins), starts at ``>= 0``
            and is strictly increasing.
    """
    edges = torch.as_tensor(edges)
    if edges.ndim != 1 or edges.numel() < 3:
        raise ValueError(f"{name}: expected a 1-D tensor of at least 3 edges (2 bins), got shape {tuple(edges.shape)}")
    edges = edges.to(torch.float64)
    if not bool(torch.isfinite(edges).all()):
        raise ValueError(f"{name}: expected finite edges, got {edges.tolist()}")
    if edges[0] < 0 or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError(f"{name}: expected strictly increasing edges starting at >= 0, got {edges.tolist()}")
    return edges


def digitize(depth: Tensor, edges: Tensor) -> Tensor:
    """Bin index of every depth value: ``d`` when ``e_d < depth <= e_{d+1}``, ``-1`` when invalid.

    A depth is invalid when it is not finite, ``<= 0`` (no measurement) or ``> e_{N_b}`` (``docs/math.md``,
    "Invalid depth"; unlike the authors' code, which puts it in bin 0).

    Exact for any increasing edges and any dtype: the comparison runs in float64 (``torch.bucketize``).

    Args:
        depth: depth in metres, any shape.
        edges: ``N_b + 1`` increasing edges (see :func:`sid_edges`).

    Returns:
        int64 tensor of the same shape and device as ``depth``.

    Example:
        >>> digitize(torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0]), torch.tensor([0.0, 1.0, 2.0])).tolist()
        [-1, 0, 0, 1, -1]
    """
    edges = check_edges(edges)
    values = depth.reshape(-1).to(torch.float64)  # exact for float32, half precision and integers
    # index = #{edges < v}: bin index - 1 holds (e_{index-1}, e_index]; index 0 means v <= e_0 (and e_0 >= 0
    # covers v <= 0), index N_b + 1 means v > e_{N_b} (+inf too); NaN goes to index 0.
    index = torch.bucketize(values, edges.to(values.device)).masked_fill_(torch.isnan(values), 0)
    label_of_index = torch.arange(-1, edges.numel(), device=values.device)
    label_of_index[-1] = -1
    return label_of_index[index].view(depth.shape)


def assign_bins(num_units: int, num_bins: int) -> Tensor:
    """Assigned bin of every unit, ``d_k = floor(k * N_b / K)`` with ``N_b = min(num_bins, K)`` (Eq. 6).

    Example:
        >>> assign_bins(4, 2).tolist()
        [0, 0, 1, 1]
    """
    for name, value in (("num_units", num_units), ("num_bins", num_bins)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    bins_used = min(num_bins, num_units)
    return torch.div(torch.arange(num_units) * bins_used, num_units, rounding_mode="floor")
