"""imde: interpretable monocular depth estimation.

Implements "Towards Interpretable Deep Networks for Monocular Depth Estimation" (You et al., ICCV 2021):
dissection of hidden units by depth (Eq. 1), depth selectivity (Eq. 2) and its random baseline (Eq. 3),
and the selectivity losses used to train interpretable depth networks (Eq. 4-6).

Public names are resolved lazily so that ``import imde`` stays cheap (no matplotlib, no timm) until used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "sid_edges": "imde.core.bins",
    "uniform_edges": "imde.core.bins",
    "log_edges": "imde.core.bins",
    "dataset_edges": "imde.core.bins",
    "DEPTH_PRESETS": "imde.core.bins",
    "digitize": "imde.core.bins",
    "assign_bins": "imde.core.bins",
    "depth_selectivity": "imde.core.selectivity",
    "dead_units": "imde.core.selectivity",
    "preferred_bins": "imde.core.selectivity",
    "random_baseline": "imde.core.selectivity",
    "AssignLoss": "imde.core.losses",
    "SelectivityRegLoss": "imde.core.losses",
    "DepthResponse": "imde.stats",
    "LayerTap": "imde.probe",
    "edit_layers": "imde.probe",
}

_SUBMODULES = {"core", "models", "data", "losses", "metrics", "evaluate", "training", "experiments", "viz", "cli"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"imde.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'imde' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from imde.core.bins import DEPTH_PRESETS as DEPTH_PRESETS
    from imde.core.bins import assign_bins as assign_bins
    from imde.core.bins import dataset_edges as dataset_edges
    from imde.core.bins import digitize as digitize
    from imde.core.bins import log_edges as log_edges
    from imde.core.bins import sid_edges as sid_edges
    from imde.core.bins import uniform_edges as uniform_edges
    from imde.core.losses import AssignLoss as AssignLoss
    from imde.core.losses import SelectivityRegLoss as SelectivityRegLoss
    from imde.core.selectivity import dead_units as dead_units
    from imde.core.selectivity import depth_selectivity as depth_selectivity
    from imde.core.selectivity import preferred_bins as preferred_bins
    from imde.core.selectivity import random_baseline as random_baseline
    from imde.probe import LayerTap as LayerTap
    from imde.probe import edit_layers as edit_layers
    from imde.stats import DepthResponse as DepthResponse
