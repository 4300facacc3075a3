"""Training checkpoints: everything needed to continue a run exactly, loadable with ``weights_only=True``.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts): ``model`` (state dict of the
unwrapped model), ``model_name``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (completed epochs),
``step`` (optimiser steps), ``best`` (metric, mode, value, epoch), ``history`` (per-epoch summaries),
``rng`` (torch, CUDA, numpy and python generator states as tensors/lists; under DDP one per process, as
``{"ranks": [...]}``) and ``config`` (the resolved
:class:`~imde.training.config.TrainConfig` as a dict). Files are written atomically.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imde.hooks import unwrap_model
from imde.utils.config import diff_dicts
from imde.utils.io import atomic_torch_save, read_torch_file

log = logging.getLogger(__name__)

FORMAT = "imde.train/1"
RESUMABLE_KEYS = frozenset(
    {"run_dir", "device", "train.epochs", "train.max_steps", "train.progress", "train.log_every", "data.num_workers"}
)
"""Config keys that may change between a run and its resumption (where and how long, not what is trained)."""


def rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and python random states as ``weights_only``-loadable data."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state` (CUDA states only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda", []))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def gathered_rng_state() -> dict[str, Any]:
    """:func:`rng_state` of this process, or under ``torch.distributed`` ``{"ranks": [state of rank 0, ...]}``
    (a collective: every process must call it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return rng_state()
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, rng_state())
    return {"ranks": states}


def rank_rng_state(saved: Mapping[str, Any], rank: int, world_size: int) -> Mapping[str, Any]:
    """The state :func:`set_rng_state` should restore in process ``rank`` from a checkpoint's ``rng``.

    A checkpoint written by as many processes gives each its own; one written by another number of processes
    (or by one) gives every process its first state, and the processes then draw the same augmentations.
    """
    if "ranks" not in saved:
        return saved
    states = saved["ranks"]
    if len(states) != world_size:
        log.warning("the checkpoint holds the random states of %d processes, not %d: every process resumes "
                    "from the first one", len(states), world_size)
        return states[0]
    return states[rank]


def save_checkpoint(path: str | os.PathLike[str], **content: Any) -> Path:
    """Write a training checkpoint atomically.

    Args:
        path: destination file (``run_dir/checkpoints/last.pt`` or ``best.pt``).
        **content: the entries listed in the module docstring; ``model`` may be a (wrapped) module, whose
            unwrapped state dict is stored.
    """
    state = dict(content)
    if isinstance(state.get("model"), nn.Module):
        state["model"] = unwrap_model(state["model"]).state_dict()
    state["format"] = FORMAT
    return atomic_torch_save(state, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``, on CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an imde training checkpoint.
    """
    state = read_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r}: not an imde training checkpoint (expected format {FORMAT!r})")
    return state


def check_resume(state: Mapping[str, Any], config: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise unless the checkpoint ``state`` was written by a run with the same config.

    Keys in :data:`RESUMABLE_KEYS` may differ (more epochs, another device).

    Raises:
        ValueError: another model (``model.name``), or other differing keys (listed with both values).
    """
    saved = state.get("config", {})
    if state.get("model_name") != config["model"]["name"]:
        raise ValueError(
            f"checkpoint {str(path)!r} is from model {state.get('model_name')!r}, but the config trains "
            f"model.name={config['model']['name']!r}"
        )
    differing = [key for key in diff_dicts(saved, config) if key not in RESUMABLE_KEYS]
    if differing:
        lines = "; ".join(f"{key}: {_lookup(saved, key)!r} -> {_lookup(config, key)!r}" for key in differing)
        raise ValueError(
            f"cannot resume from {str(path)!r}: the run was trained with another config; differing keys: {lines} "
            f"(use another run_dir, or the run's own config.yaml)"
        )


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return "<missing>"
        node = node[part]
    return node


def load_model_state(model: nn.Module, state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Load the checkpoint's weights strictly into ``model`` (unwrapped).

    Raises:
        ValueError: the weights do not fit the model (another architecture), naming a few missing/unexpected keys.
    """
    name = type(unwrap_model(model)).__name__
    try:
        result = unwrap_model(model).load_state_dict(state["model"], strict=False)
    except RuntimeError as exc:  # tensor shape mismatches
        raise ValueError(f"checkpoint {str(path)!r} does not fit {name}: {exc}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit {name}: "
            f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]})"
        )
