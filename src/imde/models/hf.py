"""Hugging Face ``transformers`` depth models as they are: token layers and predictions for imde's tools.

``DepthAnythingForDepthEstimation`` and ``DPTForDepthEstimation`` objects (random or ``from_pretrained``) are tapped
by their own module names (``backbone.encoder.layer.3``, ``neck.fusion_stage.layers.0``, ``head.conv2``). Their
neck and head layers are ``[B, K, h, w]`` maps already; their ViT layers (``backbone.embeddings``,
``backbone.encoder.layer.N``, ``dpt.encoder.layer.N``) return tokens, which :func:`hf_token_transforms` lays out on
the patch grid with the patch size and prefix tokens read from the model's config::

    layers = ["backbone.encoder.layer.11", "head.conv2"]
    with imde.LayerTap(model, layers, transforms=hf_token_transforms(model, layers)) as tap:
        depth = hf_predicted_depth(model(pixel_values=x))

``transformers`` is needed only to build the model (``pip install imde[hf]``); this module does not import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from imde.hooks import unwrap_model
from imde.tokens import TokensToMap, tokens_to_map

TOKEN_LAYER = re.compile(r"^(?:backbone|dpt)\.(?:embeddings|encoder\.layer\.\d+)$")
"""Module names of a Hugging Face depth model whose output is a token tensor ``[B, P + N, C]``."""


def hf_patch_layout(model: nn.Module) -> tuple[int, int]:
    """``(patch_size, num_prefix)`` of a Hugging Face ViT depth model, from its config.

    Depth Anything reads its DINOv2 backbone's config (one class token plus ``num_register_tokens``); DPT has one
    class token.

    Raises:
        ValueError: when the model has no such config (not a Hugging Face ViT depth model, or a hybrid DPT).
    """
    inner = unwrap_model(model)
    config = getattr(inner, "config", None)
    backbone = getattr(config, "backbone_config", None) if config is not None else None
    if getattr(config, "is_hybrid", False):
        raise ValueError(f"{type(inner).__name__}: hybrid DPT (a CNN stem) has no plain token layers")
    source = backbone if backbone is not None else config
    patch_size = getattr(source, "patch_size", None)
    if not isinstance(patch_size, int):
        raise ValueError(f"{type(inner).__name__}: expected a Hugging Face depth model with config.patch_size or "
                         f"config.backbone_config.patch_size (DepthAnythingForDepthEstimation, "
                         f"DPTForDepthEstimation)")
    return patch_size, 1 + int(getattr(source, "num_register_tokens", 0) or 0)


def hf_token_transforms(model: nn.Module, layers: str | Sequence[str]) -> dict[str, TokensToMap]:
    """``{layer: tokens_to_map(...)}`` for the token layers among ``layers`` (pass it to ``LayerTap(transforms=)``).

    Args:
        model: A Hugging Face depth model.
        layers: Module names to tap; those that are not token layers (neck, head) get no transform.

    Raises:
        ValueError: when the model's config has no patch size (see :func:`hf_patch_layout`).
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    patch_size, num_prefix = hf_patch_layout(model)
    return {name: tokens_to_map(patch_size, num_prefix) for name in names if TOKEN_LAYER.match(name)}


def hf_predicted_depth(output: object) -> torch.Tensor:
    """The prediction ``[B, 1, H, W]`` of a Hugging Face depth model's output (its ``predicted_depth``).

    Raises:
        ValueError: when the output has no ``predicted_depth`` tensor, naming its type and fields.

    >>> hf_predicted_depth({"predicted_depth": torch.ones(2, 4, 5)}).shape
    torch.Size([2, 1, 4, 5])
    """
    depth = output.get("predicted_depth") if isinstance(output, dict) else getattr(output, "predicted_depth", None)
    if not isinstance(depth, torch.Tensor) or depth.ndim not in (3, 4):
        fields = list(output.keys()) if hasattr(output, "keys") else type(output).__name__
        raise ValueError(f"a {type(output).__name__} has no depth: expected a predicted_depth tensor [B, H, W] "
                         f"(DepthEstimatorOutput); it has {fields}")
    return depth.unsqueeze(1) if depth.ndim == 3 else depth


def token_transforms(model: nn.Module, layers: str | Sequence[str]) -> dict[str, TokensToMap]:
    """The token-layer transforms a model needs for ``layers``: Hugging Face's ViT layers, else none.

    imde's own ViT models need none (their declared block layers are maps already).
    """
    try:
        return hf_token_transforms(model, layers)
    except ValueError:
        return {}
