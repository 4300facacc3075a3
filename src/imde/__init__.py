"""imde: interpretable monocular depth estimation.

Implements "Towards Interpretable Deep Networks for Monocular Depth Estimation" (You et al., ICCV 2021):
dissection of hidden units by depth (Eq. 1), depth selectivity (Eq. 2) and its random baseline (Eq. 3),
and the selectivity losses used to train interpretable depth networks (Eq. 4-6).

The names below need only torch and numpy. Models, datasets, experiments, training and the report live in
the subpackages (``imde.models``, ``imde.data``, ``imde.experiments``, ``imde.training``, ``imde.paper``).
"""

from __future__ import annotations

from imde.accumulators import DepthResponse as DepthResponse
from imde.accumulators import update_responses as update_responses
from imde.core.bins import DEPTH_PRESETS as DEPTH_PRESETS
from imde.core.bins import DepthBins as DepthBins
from imde.core.bins import assign_bins as assign_bins
from imde.core.bins import dataset_edges as dataset_edges
from imde.core.bins import digitize as digitize
from imde.core.bins import log_edges as log_edges
from imde.core.bins import sid_edges as sid_edges
from imde.core.bins import uniform_edges as uniform_edges
from imde.core.selectivity import dead_units as dead_units
from imde.core.selectivity import depth_selectivity as depth_selectivity
from imde.core.selectivity import preferred_bins as preferred_bins
from imde.core.selectivity import random_baseline as random_baseline
from imde.hooks import LayerTap as LayerTap
from imde.hooks import edit_layers as edit_layers
from imde.losses.selectivity import AssignLoss as AssignLoss
from imde.losses.selectivity import SelectivityRegLoss as SelectivityRegLoss
from imde.significance import compare_selectivity as compare_selectivity
from imde.tokens import tokens_to_map as tokens_to_map

__version__ = "0.1.0"

__all__ = [
    "DEPTH_PRESETS",
    "AssignLoss",
    "DepthBins",
    "DepthResponse",
    "LayerTap",
    "SelectivityRegLoss",
    "__version__",
    "assign_bins",
    "compare_selectivity",
    "dataset_edges",
    "dead_units",
    "depth_selectivity",
    "digitize",
    "edit_layers",
    "log_edges",
    "preferred_bins",
    "random_baseline",
    "sid_edges",
    "tokens_to_map",
    "uniform_edges",
    "update_responses",
]
