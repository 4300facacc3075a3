"""Token layers of vision transformers laid out as feature maps, so they can be dissected like conv layers.

A ViT block's output is a token tensor ``[B, P + N, C]``: ``P`` prefix tokens (class and register tokens) and
``N = h * w`` patch tokens in row-major order over the patch grid ``h = H / patch_size``, ``w = W / patch_size`` of
the ``[B, 3, H, W]`` input. Dissection (Eq. 1-3) and the selectivity losses see a layer as ``[B, K, h, w]`` with
``K = C`` units, so the prefix tokens are dropped and the patch tokens are put back on their grid; the reshape is a
view-preserving permutation, so gradients flow to the tokens.

>>> import torch
>>> tokens = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)  # 1 class token + a 2x3 grid, C=3
>>> tokens_to_map(patch_size=14, num_prefix=1)(tokens, (28, 42)).shape
torch.Size([2, 3, 2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Size = tuple[int, int]


def patch_grid(image_size: Sequence[int], patch_size: int) -> Size:
    """The patch grid ``(h, w)`` of an input of size ``(H, W)``.

    Raises:
        ValueError: when ``H`` or ``W`` is not a positive multiple of ``patch_size``.

    >>> patch_grid((518, 392), 14)
    (37, 28)
    """
    height, width = (int(v) for v in image_size)
    if patch_size <= 0:
        raise ValueError(f"patch_size={patch_size}: expected a positive integer")
    if height <= 0 or width <= 0 or height % patch_size or width % patch_size:
        raise ValueError(f"input size (H, W)=({height}, {width}) is not a multiple of the patch size {patch_size}; "
                         f"expected H and W divisible by {patch_size} (e.g. "
                         f"({max(1, round(height / patch_size)) * patch_size}, "
                         f"{max(1, round(width / patch_size)) * patch_size}))")
    return height // patch_size, width // patch_size


def split_tokens(tokens: torch.Tensor, grid: Size, num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``[B, P + h*w, C]`` tokens into the prefix ``[B, P, C]`` and the patch map ``[B, C, h, w]``.

    Raises:
        ValueError: when ``tokens`` is not 3-D or its token count is not ``num_prefix + h * w``.
    """
    height, width = grid
    if tokens.ndim != 3 or tokens.shape[1] != num_prefix + height * width:
        raise ValueError(f"tokens have shape {tuple(tokens.shape)}; expected [B, {num_prefix} + {height}*{width}, C] "
                         f"= [B, {num_prefix + height * width}, C] ({num_prefix} prefix tokens and a "
                         f"{height}x{width} patch grid)")
    prefix, patches = tokens[:, :num_prefix], tokens[:, num_prefix:]
    return prefix, patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def map_to_tokens(prefix: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_tokens`: ``[B, P, C]`` and ``[B, C, h, w]`` back to ``[B, P + h*w, C]``."""
    return torch.cat([prefix, feature_map.flatten(2).transpose(1, 2)], dim=1)


class TokensToMap:
    """A layer transform for :class:`imde.hooks.LayerTap`: token output -> ``[B, C, h, w]`` patch map.

    Called as ``transform(output, image_size)`` with the layer's output (a tensor, or a tuple whose first element
    is the token tensor, as some Hugging Face layers return) and the ``(H, W)`` of the model's input.

    Args:
        patch_size: Side of a patch in pixels (14 for DINOv2, 16 for ViT-L/16).
        num_prefix: Class and register tokens before the patch tokens (1, or 5 with 4 registers).
    """

    def __init__(self, patch_size: int, num_prefix: int) -> None:
        if not isinstance(patch_size, int) or patch_size <= 0:
            raise ValueError(f"patch_size={patch_size!r}: expected a positive integer")
        if not isinstance(num_prefix, int) or num_prefix < 0:
            raise ValueError(f"num_prefix={num_prefix!r}: expected a non-negative integer")
        self.patch_size = patch_size
        self.num_prefix = num_prefix

    def __call__(self, output: torch.Tensor | tuple[torch.Tensor, ...], image_size: Sequence[int]) -> torch.Tensor:
        tokens = output[0] if isinstance(output, tuple | list) else output
        if not isinstance(tokens, torch.Tensor):
            raise ValueError(f"tokens_to_map: the layer returned {type(tokens).__name__}; expected a token tensor "
                             f"[B, P + N, C]")
        return split_tokens(tokens, patch_grid(image_size, self.patch_size), self.num_prefix)[1]

    def restore(self, output: torch.Tensor | tuple[torch.Tensor, ...], feature_map: torch.Tensor,
                image_size: Sequence[int]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The layer's ``output`` with its patch tokens replaced by ``feature_map`` (the prefix tokens kept):
        the inverse of the transform, for :func:`imde.edit_layers` on a token layer."""
        tokens = output[0] if isinstance(output, tuple | list) else output
        prefix, patches = split_tokens(tokens, patch_grid(image_size, self.patch_size), self.num_prefix)
        if feature_map.shape != patches.shape:
            raise ValueError(f"tokens_to_map.restore: the edited map has shape {tuple(feature_map.shape)}; expected "
                             f"{tuple(patches.shape)}, the layer's patch map")
        restored = map_to_tokens(prefix, feature_map.to(tokens.dtype))
        return (restored, *output[1:]) if isinstance(output, tuple | list) else restored

    def __repr__(self) -> str:
        return f"tokens_to_map(patch_size={self.patch_size}, num_prefix={self.num_prefix})"


def tokens_to_map(patch_size: int, num_prefix: int = 1) -> TokensToMap:
    """The transform that lays a ViT layer's tokens out on the patch grid (pass it to ``LayerTap(transforms=...)``).

    Args:
        patch_size: Side of a patch in pixels.
        num_prefix: Class and register tokens to drop.

    >>> transform = tokens_to_map(16, num_prefix=1)
    >>> transform(torch.zeros(1, 1 + 4 * 6, 8), (64, 96)).shape
    torch.Size([1, 8, 4, 6])
    """
    return TokensToMap(patch_size, num_prefix)


class TokenMap(nn.Module):
    """A parameter-free module whose output is a ViT block's patch tokens as a map ``[B, C, h, w]``.

    Models put it right after the blocks they declare as layers, and continue from its output (see
    :func:`map_to_tokens`), so hooks on it see the block as a feature map and edits of it reach every later layer.
    """

    def __init__(self, num_prefix: int) -> None:
        super().__init__()
        self.num_prefix = num_prefix

    def forward(self, tokens: torch.Tensor, grid: Size) -> torch.Tensor:
        return split_tokens(tokens, grid, self.num_prefix)[1]

    def extra_repr(self) -> str:
        return f"num_prefix={self.num_prefix}"
