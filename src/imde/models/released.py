"""Load the weights released with the original projects (Hu et al.'s MFF, BTS, CSPN) and imde's own checkpoints.

The files are read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code. The loader unwraps
``{"model": ...}`` / ``{"state_dict": ...}``, strips DataParallel's ``module.`` prefix, drops CSPN's
``post_process_layer.*`` (built inside the original forward), maps key names where an original layout differs from
the timm modules used here, fills the ``num_batches_tracked`` entries that PyTorch 0.3 files lack, and loads
strictly by default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from imde.utils.io import read_torch_file

DROPPED_PREFIXES = ("post_process_layer.",)  # and each model's own ``ignored_checkpoint_prefixes``
DATA_PARALLEL_PREFIX = "module."

# (pattern, replacement, why): applied to a file key only when the result is one of the model's keys.
RENAMES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"^(.*denselayer\d+\.(?:norm|conv))\.([12])\.(weight|bias|running_mean|running_var)$"), r"\1\2.\3",
     "old torchvision DenseNet names (norm.1 -> norm1)"),
    (re.compile(r"^(.*)\.layer0\.(.*)$"), r"\1.base.0.\2", "timm legacy SENet layer0 -> Hu et al.'s E.base.0"),
    (re.compile(r"^(.*)\.layer([1-4])\.(.*)$"), r"\1.base.\2.\3", "timm legacy SENet layerN -> Hu et al.'s E.base.N"),
    (re.compile(r"^encoder\.base_model\.features\.(.*)$"), r"encoder.base_model.\1",
     "timm DenseNet 'features.' prefix"),
)

# A key that identifies the architecture a state dict was saved from (for error messages).
SIGNATURES: tuple[tuple[str, str], ...] = (
    ("E.base.0.conv1.weight", "MFF with a SENet-154 encoder (Hu et al.): mff_senet154"),
    ("E.layer1.0.conv3.weight", "MFF with a ResNet-50-style encoder (Hu et al.): mff_resnet50"),
    ("E.layer1.0.conv2.weight", "MFF with a ResNet-18-style encoder: mff_resnet18 or mff_tiny"),
    ("encoder.base_model.conv0.weight", "BTS-DenseNet161: bts_densenet161_nyu / bts_densenet161_kitti"),
    ("gud_up_proj_layer1.conv1.weight", "CSPN-ResNet50: cspn_resnet50"),
)
_SHOWN = 5


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did to make a file fit the model.

    Attributes:
        path: The file read.
        wrapper: ``"model"`` or ``"state_dict"`` when the weights sat under that key, else ``None``.
        stripped_prefix: ``"module."`` when DataParallel's prefix was removed, else ``None``.
        renamed: File key -> model key, for every key whose name was mapped.
        dropped: File keys ignored on purpose (``post_process_layer.*``).
        filled: Model keys absent from the file and filled with zeros (``num_batches_tracked``).
        missing: Model keys the file lacks (only non-empty with ``strict=False``).
        unexpected: File keys the model lacks (only non-empty with ``strict=False``).
    """

    path: str
    wrapper: str | None = None
    stripped_prefix: str | None = None
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _read(path: Path, allow_unsafe: bool) -> object:
    return read_torch_file(path, "checkpoint", weights_only=not allow_unsafe)


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    wrapper = None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj, wrapper = obj[key], key
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, Mapping) else f"dict with keys {list(obj)[:_SHOWN]}"
        raise ValueError(f"checkpoint {str(path)!r} holds a {kind}; expected a state dict of tensors, possibly "
                         f"under a 'model' or 'state_dict' key")
    return dict(obj), wrapper


def guess_architecture(keys: set[str] | list[str]) -> str:
    """Name the architecture a state dict's keys come from (``"unknown"`` when no signature key is present)."""
    keys = set(keys)
    for key, name in SIGNATURES:
        if key in keys:
            return name
    return "unknown"


def _preview(keys: list[str]) -> str:
    head = ", ".join(keys[:_SHOWN])
    return f"{len(keys)} ({head}{', ...' if len(keys) > _SHOWN else ''})"


def _match_keys(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], report: LoadReport,
                ignored: tuple[str, ...]) -> dict[str, torch.Tensor]:
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in state) and state:
        state = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
        report.stripped_prefix = DATA_PARALLEL_PREFIX
    matched: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(ignored):
            report.dropped.append(key)
            continue
        if key not in expected:
            for pattern, replacement, _ in RENAMES:
                new_key = pattern.sub(replacement, key)
                if new_key != key and new_key in expected:
                    report.renamed[key] = new_key
                    key = new_key
                    break
        matched[key] = value
    for key, value in expected.items():
        if key not in matched and key.endswith("num_batches_tracked"):
            matched[key] = torch.zeros_like(value)
            report.filled.append(key)
    return matched


def adapt_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True,
                     source: str = "<state dict>") -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Map a state dict in an original layout onto ``model``'s keys and check it fits, without loading it.

    Args:
        model: The target model.
        state: A state dict (already unwrapped from ``model`` / ``state_dict``).
        strict: Require the keys to match exactly after the mappings.
        source: Where the state dict came from, for messages.

    Returns:
        The state dict in ``model``'s layout and the report of what was changed.

    Raises:
        ValueError: when the state dict does not fit (lists missing / unexpected / mis-shaped keys and names the
            architecture the keys seem to come from).
    """
    report = LoadReport(path=source)
    expected = model.state_dict()
    ignored = DROPPED_PREFIXES + tuple(getattr(model, "ignored_checkpoint_prefixes", ()))
    adapted = _match_keys(dict(state), expected, report, ignored)
    missing = [key for key in expected if key not in adapted]
    unexpected = [key for key in adapted if key not in expected]
    original = {new: old for old, new in report.renamed.items()}
    file_keys = [original.get(key, key) for key in adapted]
    mis_shaped = [f"{key} {tuple(adapted[key].shape)} vs {tuple(expected[key].shape)}"
                  for key in expected if key in adapted and adapted[key].shape != expected[key].shape]
    if mis_shaped or (strict and (missing or unexpected)):
        raise ValueError(
            f"checkpoint {source!r} does not fit {type(model).__name__}: the file seems to be for "
            f"{guess_architecture(file_keys)}. Missing keys: {_preview(missing)}; unexpected keys: "
            f"{_preview(unexpected)}; shape mismatches (file vs model): {_preview(mis_shaped)}"
        )
    report.missing, report.unexpected = missing, unexpected
    return adapted, report


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], strict: bool = True,
                    allow_unsafe: bool = False) -> LoadReport:
    """Load a released or imde checkpoint into ``model`` (on any device) and report what was mapped.

    Args:
        model: The model to fill, e.g. ``imde.models.create("mff_resnet50")``.
        path: A file written by ``torch.save``: a state dict, or a dict holding one under ``model``/``state_dict``.
        strict: Require the file's keys to match the model's exactly (after the mappings of :func:`adapt_state_dict`).
        allow_unsafe: Read with full unpickling (``weights_only=False``); only for files you trust.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a state dict, needs unsafe unpickling, or does not fit the model (the
            message lists missing / unexpected / mis-shaped keys and names the architecture the file seems to be for).
    """
    path = Path(path)
    state, wrapper = _unwrap(_read(path, allow_unsafe), path)
    adapted, report = adapt_state_dict(model, state, strict=strict, source=str(path))
    report.wrapper = wrapper
    model.load_state_dict(adapted, strict=strict)
    return report
