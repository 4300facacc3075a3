"""The selectivity losses used to train interpretable depth networks: L_assign (Eq. 5-6) and L_reg (Eq. 4).

Per training batch and per layer (``docs/math.md``, "Assigning depth to units"):

1. the layer uses ``N_b = min(num_bins, K)`` bins over the same ``(alpha, beta)`` (Sec. 4.2);
2. ``R`` is Eq. 1 on this batch alone (bilinear upsampling to the depth map), differentiable
   (:func:`imde.core.response.response_sums`);
3. ``DS_k`` is Eq. 5 with the assigned bin ``d_k`` of Eq. 6 (``AssignLoss``) or Eq. 2 with the batch's
   max bin (``SelectivityRegLoss``), on ``|R|``;
4. the loss is ``-lam * sum over layers of the mean over units of DS_k``.

Conventions, and the switches that give the authors' code:

- ``abs_mode="paper"``: ``|R|`` is the absolute value of the batch mean; ``"authors"``: the mean of ``|A|``
  (``|.|`` taken before upsampling). Identical for non-negative (ReLU) layers.
- ``absent_bins="skip"`` (the paper; ``docs/math.md``, "Absent bins"): the mean of the other bins runs over
  the bins *observed in the batch* only, and a unit whose assigned bin has no valid pixel in the batch is left
  out of its layer's mean. ``"authors"``: the mean of the others runs over all ``N_b - 1`` other bins with
  empty bins as a zero response, and a unit whose assigned bin is empty gets ``DS = 0`` but still counts
  (mean over ``K``).
- ``eps`` (default 0, the paper) is added to the denominator of DS: ``(R_d - R_o) / (R_d + R_o + eps)``.
  Eq. 5 is scale-free, so nothing stops a unit's response from shrinking towards 0 while its DS stays high,
  and its gradient with respect to ``R_o`` grows as ``1 / (R_d + R_o)`` on the way; with ``eps > 0`` a
  fading unit scores lower (``DS -> 0`` as its response vanishes) and is pushed to respond more on its bin
  (``dDS/dR_d = (2 R_o + eps) / (R_d + R_o + eps)^2 > 0``). Dissection (Eq. 2) never uses it.
- NaN or inf features are an error (:class:`imde.errors.NonFiniteFeaturesError`, naming the layer and the
  number of bad values), as in :class:`imde.DepthResponse`: silently dropping a unit would bias the loss.
- A layer with no unit left (e.g. a batch whose valid depth falls in fewer than 2 bins with ``"skip"``)
  contributes 0 (with a zero gradient) rather than failing the training step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imde.core.bins import EDGE_KINDS, DepthBins, assign_bins, digitize
from imde.core.response import response_sums
from imde.core.selectivity import selectivity_from_abs
from imde.errors import NonFiniteFeaturesError

ABSENT_BIN_MODES = ("skip", "authors")
ABS_MODES = ("paper", "authors")


def _check_finite(name: str, feat: Tensor) -> None:
    """Refuse NaN / inf features: one sum is finite unless some element is not (or a finite sum overflows)."""
    detached = feat.detach()
    if bool(torch.isfinite(detached.sum())):
        return
    bad = int((~torch.isfinite(detached)).sum())
    if bad:
        raise NonFiniteFeaturesError(
            f"features[{name!r}] {tuple(feat.shape)}: {bad} of {feat.numel()} values are NaN or inf"
        )


class _SelectivityLoss(nn.Module):
    """Shared body of :class:`AssignLoss` and :class:`SelectivityRegLoss` (no trainable parameters)."""

    uses_assignment: bool = True

    def __init__(
        self,
        num_bins: int = 64,
        alpha: float = 0.75,
        beta: float = 10.0,
        lam: float = 0.1,
        absent_bins: str = "skip",
        abs_mode: str = "paper",
        edges_kind: str = "sid",
        eps: float = 0.0,
        bins: DepthBins | None = None,
    ) -> None:
        super().__init__()
        if not eps >= 0:
            raise ValueError(f"eps={eps}: expected a non-negative number (0 is the paper's Eq. 5)")
        if absent_bins not in ABSENT_BIN_MODES:
            raise ValueError(f"absent_bins={absent_bins!r}: expected one of {', '.join(ABSENT_BIN_MODES)}")
        if abs_mode not in ABS_MODES:
            raise ValueError(f"abs_mode={abs_mode!r}: expected one of {', '.join(ABS_MODES)}")
        if edges_kind not in EDGE_KINDS:
            raise ValueError(f"edges_kind={edges_kind!r}: expected one of {', '.join(EDGE_KINDS)}")
        if bins is None:
            bins = DepthBins((alpha, beta), num_bins, edges_kind)  # validates num_bins, alpha, beta early
        elif not isinstance(bins, DepthBins):
            raise ValueError(f"bins={bins!r}: expected a DepthBins (or leave it out and give num_bins, alpha, beta)")
        self.bins = bins
        num_bins, alpha, beta, edges_kind = bins.num_bins, bins.alpha, bins.beta, bins.kind
        self.num_bins, self.alpha, self.beta, self.lam = num_bins, float(alpha), float(beta), float(lam)
        self.absent_bins, self.abs_mode, self.edges_kind = absent_bins, abs_mode, edges_kind
        self.eps = float(eps)
        self.last_breakdown: dict[str, float] = {}

    def extra_repr(self) -> str:
        return (
            f"num_bins={self.num_bins}, alpha={self.alpha}, beta={self.beta}, lam={self.lam}, "
            f"absent_bins={self.absent_bins!r}, abs_mode={self.abs_mode!r}, edges_kind={self.edges_kind!r}, "
            f"eps={self.eps}"
        )

    def _check(self, features: dict[str, Tensor], depth: Tensor) -> Tensor:
        if not isinstance(features, dict) or not features:
            raise ValueError(
                f"features: expected a non-empty dict {{layer name: Tensor[B, K, h, w]}}, got {type(features).__name__}"
            )
        if not isinstance(depth, Tensor) or not (depth.ndim == 3 or (depth.ndim == 4 and depth.shape[1] == 1)):
            shape = tuple(depth.shape) if isinstance(depth, Tensor) else type(depth).__name__
            raise ValueError(f"depth: expected [B, H, W] or [B, 1, H, W], got {shape}")
        depth = depth.reshape(depth.shape[0], *depth.shape[-2:])
        for name, feat in features.items():
            if not isinstance(feat, Tensor) or feat.ndim != 4:
                shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
                raise ValueError(f"features[{name!r}]: expected a Tensor [B, K, h, w], got {shape}")
            if feat.shape[0] != depth.shape[0]:
                raise ValueError(
                    f"features[{name!r}] has batch size {feat.shape[0]} but depth has {depth.shape[0]} "
                    f"(features {tuple(feat.shape)}, depth {tuple(depth.shape)})"
                )
            if not feat.is_floating_point():
                raise ValueError(f"features[{name!r}]: expected a floating tensor, got {feat.dtype}")
            _check_finite(name, feat)
        return depth

    def _mean_selectivity(self, sums: Tensor, counts: Tensor) -> Tensor:
        """Mean ``DS`` over the units of one layer from its batch sums ``[K, N_b]`` and counts (a scalar)."""
        units, num_bins = sums.shape
        observed = counts > 0
        abs_response = (sums / counts.clamp_min(1)).abs()
        assigned = assign_bins(units, num_bins).to(sums.device) if self.uses_assignment else None
        authors = self.absent_bins == "authors"
        selectivity = selectivity_from_abs(abs_response, observed.new_ones(()) if authors else observed, assigned,
                                           self.eps)
        if assigned is not None:
            counted = observed[assigned]
            if authors:  # absent assigned bin: DS := 0, still divided by K
                return (selectivity * counted).sum() / units
        else:
            counted = observed.new_full((units,), True)
        if authors:
            return selectivity.mean()
        counted = counted & (observed.sum() >= 2)
        return (selectivity * counted).sum() / counted.sum().clamp_min(1)

    def layer_selectivity(self, features: dict[str, Tensor], depth: Tensor) -> dict[str, Tensor]:
        """Differentiable per-layer mean selectivity ``{name: scalar float64 tensor}`` on this batch.

        Layers with the same number of bins and feature size share one pass of
        :func:`~imde.core.response.response_sums` (their channels are concatenated).
        """
        depth = self._check(features, depth)
        groups: dict[tuple[int, ...], list[str]] = {}
        for name, feat in features.items():
            if feat.shape[1] < 2:
                raise ValueError(f"features[{name!r}] has {feat.shape[1]} unit(s): selectivity needs at least 2")
            groups.setdefault((self.bins.for_units(feat.shape[1]).num_bins, *feat.shape[2:]), []).append(name)
        result: dict[str, Tensor] = {}
        for (num_bins, *_), names in groups.items():
            bins = digitize(depth, self.bins.for_units(num_bins).edges)
            feats = [features[name] for name in names]
            stacked = feats[0] if len(feats) == 1 else torch.cat(feats, dim=1)
            sums, counts = response_sums(
                stacked, bins, num_bins, abs_first=self.abs_mode == "authors", compute_dtype=None
            )
            for name, layer_sums in zip(names, sums.split([f.shape[1] for f in feats]), strict=True):
                result[name] = self._mean_selectivity(layer_sums, counts)
        return {name: result[name] for name in features}

    def forward(self, features: dict[str, Tensor], depth: Tensor) -> Tensor:
        """``-lam * sum over layers of the mean selectivity``, in the dtype of the first layer's features.

        Also sets ``last_breakdown`` to the detached per-layer mean selectivity, for logging.
        """
        per_layer = self.layer_selectivity(features, depth)
        self.last_breakdown = {name: float(value.detach()) for name, value in per_layer.items()}
        total = sum(per_layer.values())
        return (-self.lam * total).to(next(iter(features.values())).dtype)

    def breakdown(self, features: dict[str, Tensor], depth: Tensor) -> dict[str, float]:
        """Per-layer mean selectivity on this batch as plain floats (no graph kept), for logging."""
        detached = {name: feat.detach() for name, feat in features.items()} if isinstance(features, dict) else features
        return {name: float(value) for name, value in self.layer_selectivity(detached, depth).items()}


class AssignLoss(_SelectivityLoss):
    """``L_assign`` (Eq. 5): pushes unit ``k`` to respond most to its assigned depth bin ``d_k`` (Eq. 6).

    Args:
        num_bins: requested ``N_b`` (a layer with ``K < num_bins`` units uses ``K`` bins).
        alpha: upper edge of bin 0 (metres), NYU 0.75, KITTI 3.
        beta: upper edge of the last bin (metres), NYU 10, KITTI 80.
        lam: ``lambda`` of Eq. 5.
        absent_bins: ``"skip"`` (the paper, ``docs/math.md``) or ``"authors"``; see the module docstring.
        abs_mode: ``"paper"`` (``|mean A|``) or ``"authors"`` (``mean |A|``).
        edges_kind: ``"sid"``, ``"uniform"`` or ``"log"``.
        eps: added to the denominator of DS (0: the paper); see the module docstring.
        bins: the depth bins as one value (:class:`~imde.core.bins.DepthBins`); when given, it replaces
            ``num_bins``, ``alpha``, ``beta`` and ``edges_kind``.

    Example:
        >>> loss_fn = AssignLoss(num_bins=2, alpha=1.0, beta=2.0)
        >>> feats = {"D": torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])}  # unit 0 on the near pixel
        >>> round(float(loss_fn(feats, torch.tensor([[[0.5, 1.5]]]))), 6)  # DS = 1 for both units
        -0.1
    """

    uses_assignment = True


class SelectivityRegLoss(_SelectivityLoss):
    """``L_reg`` (Eq. 4): the naive regulariser, Eq. 2's selectivity with the batch's max bin of every unit.

    Takes the same arguments as :class:`AssignLoss`.
    """

    uses_assignment = False
