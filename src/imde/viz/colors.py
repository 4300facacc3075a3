"""The one place that fixes how depth and images look in every figure."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from imde.data.transforms import IMAGENET_MEAN, IMAGENET_STD

DEPTH_CMAP = "magma_r"
"""Colour map of every depth panel: near is bright, far is dark."""

FEATURE_CMAP = "viridis"
"""Colour map of unit activations."""

ERROR_CMAP = "Reds"
"""Colour map of error and bin masks."""


def depth_limits(maps: Iterable[torch.Tensor]) -> tuple[float, float]:
    """Shared ``(vmin, vmax)`` over the valid (finite, positive) pixels of several depth maps.

    Raises:
        ValueError: when no map has a valid pixel.
    """
    values = [m[torch.isfinite(m) & (m > 0)].float() for m in maps]
    values = [v for v in values if v.numel()]
    if not values:
        raise ValueError("maps: no valid (finite, positive) depth pixel to set colour limits from")
    return min(float(v.min()) for v in values), max(float(v.max()) for v in values)


def display_image(image: torch.Tensor, normalised: bool = True) -> torch.Tensor:
    """An image ``[C, H, W]`` as ``[H, W, 3]`` in ``[0, 1]`` for ``imshow``.

    Args:
        image: ImageNet-normalised (``normalised=True``) or ``[0, 1]`` RGB; extra channels (CSPN's sparse
            depth) are dropped. A CSPN input re-quantised by ``PILRoundTrip`` cannot be undone and shows as it is.
        normalised: undo the ImageNet normalisation first.
    """
    if image.ndim != 3 or image.shape[0] < 3:
        raise ValueError(f"image: expected [C>=3, H, W], got {tuple(image.shape)}")
    rgb = image[:3].detach().float().cpu()
    if normalised:
        rgb = rgb * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return rgb.clamp(0, 1).permute(1, 2, 0)
