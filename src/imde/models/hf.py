"""Hugging Face ``transformers`` depth models as they are: token layers and predictions for imde's tools.

``DepthAnythingForDepthEstimation`` and ``DPTForDepthEstimation`` objects (random or ``from_pretrained``) are tapped
by their own module names (``backbone.encoder.layer.3``, ``neck.fusion_stage.layers.0``, ``head.conv2``). Their
neck and head layers are ``[B, K, h, w]`` maps already; their ViT layers (``backbone.embeddings``,
``backbone.encoder.layer.N``, ``dpt.encoder.layer.N``) return tokens, which :func:`hf_token_transforms` lays out on
the patch grid with the patch size and prefix tokens read from the model's config::

    layers = ["backbone.encoder.layer.11", "head.conv2"]
    with imde.LayerTap(model, layers, transforms=hf_token_transforms(model, layers)) as tap:
        depth = imde.models.depth_from_output(model(pixel_values=x))  # its predicted_depth, [B, 1, H, W]

``transformers`` is needed only to build the model (``pip install imde[hf]``); this module does not import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
    names = [name for name in ([layers] if isinstance(layers, str) else list(layers)) if TOKEN_LAYER.match(name)]
    if not names:  # no token layer asked for: nothing to read from the config
        return {}
    patch_size, num_prefix = hf_patch_layout(model)
    return {name: tokens_to_map(patch_size, num_prefix) for name in names}


def token_transforms(model: nn.Module, layers: str | Sequence[str]) -> dict[str, TokensToMap]:
    """The token-layer transforms a model needs for ``layers``: Hugging Face's ViT layers, else none.

    imde's own ViT models need none (their declared block layers are maps already).
    """
    try:
        return hf_token_transforms(model, layers)
    except ValueError:
        return {}
