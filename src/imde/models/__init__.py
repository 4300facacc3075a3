"""Depth networks (MFF, BTS, CSPN, Depth Anything V2, DPT and CPU-sized families), their layer declarations,
checkpoint loading, and the helpers for Hugging Face depth models.

>>> import imde.models
>>> model = imde.models.create("mff_tiny")
>>> [info.name for info in model.unit_info]
['D', 'MFF', 'Rconv0', 'Rconv1']
"""

from __future__ import annotations

from imde.models import bts as bts
from imde.models import cspn as cspn
from imde.models import dpt as dpt
from imde.models import mff as mff
from imde.models._output import DEPTH_KEYS as DEPTH_KEYS
from imde.models._output import depth_from_output as depth_from_output
from imde.models._registry import create as create
from imde.models._registry import list_models as list_models
from imde.models._registry import model_options as model_options
from imde.models._registry import register_model as register_model
from imde.models._run import run_model as run_model
from imde.models._run import run_with_features as run_with_features
from imde.models._units import UnitInfo as UnitInfo
from imde.models.hf import hf_patch_layout as hf_patch_layout
from imde.models.hf import hf_token_transforms as hf_token_transforms
from imde.models.hf import token_transforms as token_transforms
from imde.models.released import LoadReport as LoadReport
from imde.models.released import adapt_state_dict as adapt_state_dict
from imde.models.released import load_checkpoint as load_checkpoint

list = list_models  # noqa: A001 - the public name is imde.models.list()

__all__ = [
    "DEPTH_KEYS",
    "LoadReport",
    "UnitInfo",
    "adapt_state_dict",
    "create",
    "depth_from_output",
    "hf_patch_layout",
    "hf_token_transforms",
    "list",
    "list_models",
    "load_checkpoint",
    "model_options",
    "register_model",
    "run_model",
    "run_with_features",
    "token_transforms",
]
