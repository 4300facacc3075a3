"""Encoders built from timm, with ImageNet weights loaded through timm or from a local file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from imde.errors import WeightsUnavailableError
from imde.utils.optional import require

timm = require("timm", extra="models")


def create_timm_model(arch: str, tag: str | None, pretrained: bool, pretrained_file: str | os.PathLike[str] | None,
                      **kwargs: object) -> nn.Module:
    """Create a timm model, optionally with ImageNet weights.

    Args:
        arch: timm architecture name (``"resnet50"``, ``"legacy_senet154"``, ``"densenet161"``).
        tag: Pretrained tag (``"tv_in1k"``, ...); ``None`` when the model has no released weights.
        pretrained: Load the weights of ``arch.tag`` through timm (network or timm's cache).
        pretrained_file: A local weights file (``.pth``/``.safetensors`` in timm's or torchvision's layout) to load
            instead of downloading; implies ``pretrained``.
        **kwargs: Passed to ``timm.create_model`` (``num_classes=0``, ``channels=...``).

    Raises:
        ValueError: when weights are requested for a model without a tag.
        FileNotFoundError: when ``pretrained_file`` does not exist.
        RuntimeError: when the weights cannot be downloaded; the message says what to download and where.
    """
    if pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained_file={str(path)!r} does not exist")
        pretrained = True
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **kwargs)
    if tag is None:
        raise ValueError(f"pretrained=True: the encoder {arch!r} of this model has no released ImageNet weights; "
                         f"use pretrained=False")
    name = f"{arch}.{tag}"
    if pretrained_file is not None:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)},
                                 **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # offline: huggingface_hub / urllib raise many different types
        hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        torch_home = torch.hub.get_dir()
        raise WeightsUnavailableError(
            f"could not load the ImageNet weights {name!r} through timm ({type(err).__name__}: {err}). "
            f"Download them on a machine with network access (https://huggingface.co/timm/{name}, file "
            f"model.safetensors), and either put them in timm's cache ({hf_home}/hub, or {torch_home}/checkpoints "
            f"for torchvision URLs) or pass pretrained_file=PATH to load the local file (in a training config: "
            f"model.kwargs.pretrained_file=PATH; model.pretrained=false trains from scratch instead)"
        ) from err


def block_channels(backbone: nn.Module) -> tuple[int, ...]:
    """Channel counts of the last four stages (strides 4, 8, 16, 32) of a timm backbone, from its ``feature_info``."""
    return tuple(int(info["num_chs"]) for info in backbone.feature_info[-4:])
