"""Every training loss by name: the depth networks' own (``depth``) and the selectivity terms (Eq. 4-6).

``create(name, **kwargs)`` builds any of them. The depth losses are called as ``loss_fn(pred, depth)``;
the selectivity losses as ``loss_fn(features, depth)`` with ``features = {layer name: Tensor[B, K, h, w]}``.

>>> import torch
>>> create("cspn_l1")(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[2.0, 0.0]]])).item()
1.0
>>> type(create("assign", num_bins=8)).__name__
'AssignLoss'
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from imde.losses.depth import HuLoss as HuLoss
from imde.losses.depth import MaskedLpLoss as MaskedLpLoss
from imde.losses.depth import ScaleShiftInvariantLoss as ScaleShiftInvariantLoss
from imde.losses.depth import SilogLoss as SilogLoss
from imde.losses.depth import sobel_gradients as sobel_gradients
from imde.losses.selectivity import AssignLoss as AssignLoss
from imde.losses.selectivity import SelectivityRegLoss as SelectivityRegLoss

DEPTH_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "hu": lambda **kw: HuLoss(**kw),
    "bts_silog": lambda **kw: SilogLoss(**{"min_depth": 0.1, **kw}),
    "bts_silog_kitti": lambda **kw: SilogLoss(**{"min_depth": 1.0, **kw}),
    "cspn_l1": lambda **kw: MaskedLpLoss(1, **kw),
    "cspn_l2": lambda **kw: MaskedLpLoss(2, **kw),
    "dav2_silog": lambda **kw: SilogLoss(**{"min_depth": 1e-3, "variance_focus": 0.5, "scale": 1.0, **kw}),
    "ssi": lambda **kw: ScaleShiftInvariantLoss(**kw),
}
"""The networks' original losses (``model.default_loss``): Hu et al. (MFF), BTS's SILog (NYU g > 0.1, KITTI
g > 1), CSPN's masked L1 / L2, Depth Anything V2's metric SiLog (lambda 0.5, no factor, g > 1e-3) and the
scale-and-shift-invariant disparity loss of relative models (``ssi``)."""

SELECTIVITY_LOSSES: dict[str, Callable[..., nn.Module]] = {"assign": AssignLoss, "reg": SelectivityRegLoss}
"""The interpretability terms: ``assign`` is L_assign (Eq. 5-6), ``reg`` the naive L_reg (Eq. 4)."""

_LOSSES = {**DEPTH_LOSSES, **SELECTIVITY_LOSSES}


def list_losses() -> list[str]:
    """Names understood by :func:`create`."""
    return sorted(_LOSSES)


def create(name: str, **kwargs: object) -> nn.Module:
    """Build a loss by name; ``kwargs`` go to its class (e.g. ``mask_invalid=True`` for ``hu``, ``lam=0.1``).

    Raises:
        ValueError: when ``name`` is unknown, listing the known names.
    """
    if name not in _LOSSES:
        raise ValueError(f"loss name={name!r} is unknown; expected one of {', '.join(list_losses())}")
    return _LOSSES[name](**kwargs)


__all__ = [
    "DEPTH_LOSSES",
    "SELECTIVITY_LOSSES",
    "AssignLoss",
    "HuLoss",
    "MaskedLpLoss",
    "ScaleShiftInvariantLoss",
    "SelectivityRegLoss",
    "SilogLoss",
    "create",
    "list_losses",
    "sobel_gradients",
]
