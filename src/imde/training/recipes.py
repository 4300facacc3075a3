"""Each model's original training scheme as a recipe (models-and-data.md, Sec. 5).

A recipe is a nested dict of :class:`~imde.training.config.TrainConfig` values. A YAML config selects
one with ``recipe: <name>`` and overrides any of its values. The recipes follow the authors' code
(AUTH) where it differs from the original papers, with these documented choices:

- every recipe starts from the encoder's ImageNet weights (``model.pretrained: true``; CSPN: all but its
  4-channel ``conv1_1``), loaded through timm. Offline, point ``model.kwargs.pretrained_file`` at a local copy
  of the weights; ``model.pretrained=false`` trains from scratch (not the paper's scheme).

- ``mff``: Adam, lr 1e-4, weight decay 1e-4, ×0.1 every 5 epochs (epochs counted from 0, as Hu et al.),
  20 epochs, batch 16, 228×304 input, assign term on D and MFF.
- ``bts_nyu`` / ``bts_kitti``: AdamW (eps 1e-6), encoder weight decay 1e-2 and decoder 0, lr 1e-4 with
  per-step poly (power 0.9) decay to 1e-5; NYU 30 epochs batch 4, KITTI 20 epochs batch 16.
- ``dav2_nyu`` / ``dav2_kitti``: Depth Anything V2's metric fine-tuning (``metric_depth/train.py``) of the
  released relative model (``model.pretrained: true`` loads it; ``metric=true`` replaces the output ReLU by a
  sigmoid times ``max_depth``, 20 m indoor / 80 m outdoor): AdamW (betas 0.9/0.999, weight decay 0.01), head lr
  5e-5 and the encoder (``pretrained.``) at a tenth (5e-6), per-step poly (power 0.9) decay to 0, the release's
  default 40 epochs and batch 2, 518 x 518 random crops and flips (``dav2`` transform), the release's SiLog
  (lambda 0.5, ``dav2_silog``, depths above 1 mm), assign term on the head's ``head_conv2`` and ``fusion3`` by
  default.
- ``cspn``: SGD momentum 0.9 Nesterov, lr 0.01, weight decay 1e-4, ReduceLROnPlateau (×0.1, patience 3,
  min 1e-6) on the held-out MAE, 40 epochs batch 8, 500 sampled sparse depth points, on the per-frame HDF5
  extraction (``nyu_h5``).
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

# BTS as the authors train it: AdamW, weight decay on the encoder only, poly decay per step down to 1e-5
_BTS_OPTIM: dict[str, Any] = {
    "name": "adamw",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "encoder_weight_decay": 1e-2,
    "eps": 1e-6,
    "schedule": "poly",
    "poly_power": 0.9,
    "min_lr": 1e-5,
}

# Depth Anything V2's metric fine-tuning: AdamW, encoder at a tenth of the head's rate, poly decay per step
_DAV2_OPTIM: dict[str, Any] = {
    "name": "adamw",
    "lr": 5e-5,
    "encoder_lr_scale": 0.1,
    "encoder_prefixes": ["pretrained."],
    "weight_decay": 0.01,
    "schedule": "poly",
    "poly_power": 0.9,
    "min_lr": 0.0,
}

RECIPES: dict[str, dict[str, Any]] = {
    "mff": {
        "model": {"name": "mff_resnet50", "pretrained": True},
        "data": {"name": "nyu_hu_csv", "transform": "mff", "batch_size": 16},
        "loss": {"layers": ["D", "MFF"], "preset": "nyu"},
        "optim": {"name": "adam", "lr": 1e-4, "weight_decay": 1e-4, "schedule": "step", "step_every": 5, "gamma": 0.1},
        "train": {"epochs": 20, "best_metric": "delta1", "best_mode": "max"},
        "eval": {"max_depth": 10.0},
    },
    "bts_nyu": {
        "model": {"name": "bts_densenet161_nyu", "pretrained": True},
        "data": {"name": "nyu_bts", "transform": "bts_nyu", "batch_size": 4},
        "loss": {"layers": ["upconv3", "upconv2"], "preset": "nyu"},
        "optim": dict(_BTS_OPTIM),
        "train": {"epochs": 30, "best_metric": "delta1", "best_mode": "max"},
        "eval": {"max_depth": 10.0},
    },
    "bts_kitti": {
        "model": {"name": "bts_densenet161_kitti", "pretrained": True},
        "data": {"name": "kitti_eigen", "transform": "bts_kitti", "batch_size": 16},
        "loss": {"layers": ["upconv3", "upconv2"], "preset": "kitti"},
        "optim": dict(_BTS_OPTIM),
        "train": {"epochs": 20, "best_metric": "delta1", "best_mode": "max"},
        "eval": {"crop": "garg", "max_depth": 80.0},
    },
    "dav2_nyu": {
        "model": {"name": "depth_anything_v2_small", "pretrained": True, "kwargs": {"metric": True, "max_depth": 20.0}},
        "data": {"name": "nyu_bts", "transform": "dav2", "batch_size": 2},
        "loss": {"layers": ["head_conv2", "fusion3"], "preset": "nyu"},
        "optim": dict(_DAV2_OPTIM),
        "train": {"epochs": 40, "best_metric": "delta1", "best_mode": "max"},
        "eval": {"max_depth": 10.0},
    },
    "dav2_kitti": {
        "model": {"name": "depth_anything_v2_small", "pretrained": True, "kwargs": {"metric": True, "max_depth": 80.0}},
        "data": {"name": "kitti_eigen", "transform": "dav2", "batch_size": 2},
        "loss": {"layers": ["head_conv2", "fusion3"], "preset": "kitti"},
        "optim": dict(_DAV2_OPTIM),
        "train": {"epochs": 40, "best_metric": "delta1", "best_mode": "max"},
        "eval": {"crop": "garg", "max_depth": 80.0},
    },
    "cspn": {
        "model": {"name": "cspn_resnet50", "pretrained": True},
        "data": {"name": "nyu_h5", "transform": "cspn", "transform_kwargs": {"num_samples": 500}, "batch_size": 8},
        "loss": {"layers": ["layer3", "layer4"], "preset": "nyu"},
        "optim": {
            "name": "sgd",
            "lr": 0.01,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 1e-4,
            "schedule": "plateau",
            "gamma": 0.1,
            "patience": 3,
            "min_lr": 1e-6,
        },
        "train": {"epochs": 40, "best_metric": "mae", "best_mode": "min"},
        "eval": {"max_depth": 10.0},
    },
}


def recipe_names() -> list[str]:
    """Names of the built-in recipes."""
    return sorted(RECIPES)


def recipe_defaults(name: str) -> dict[str, Any]:
    """A fresh copy of recipe ``name``'s values (a nested dict of ``TrainConfig`` fields).

    Raises:
        ValueError: unknown recipe (with the closest name and the list).
    """
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"recipe={name!r}: unknown recipe{hint}; expected one of {', '.join(recipe_names())}")
    return {"recipe": name, **copy.deepcopy(RECIPES[name])}
