"""Token layers as maps: tokens_to_map against a hand reshape, LayerTap transforms, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import imde
from imde.hooks import LayerTap
from imde.tokens import TokenMap, map_to_tokens, patch_grid, split_tokens


def _hand_map(tokens: torch.Tensor, num_prefix: int, height: int, width: int) -> torch.Tensor:
    """Slow reference: patch token ``num_prefix + r * width + c`` is the pixel (r, c) of every channel."""
    out = torch.empty(tokens.shape[0], tokens.shape[2], height, width)
    for row in range(height):
        for col in range(width):
            out[:, :, row, col] = tokens[:, num_prefix + row * width + col]
    return out


@pytest.mark.parametrize(("patch", "num_prefix", "size"), [(14, 1, (42, 70)), (16, 5, (32, 48)), (8, 0, (8, 24))])
def test_tokens_to_map_matches_hand_reshape(patch: int, num_prefix: int, size: tuple[int, int]) -> None:
    height, width = size[0] // patch, size[1] // patch
    tokens = torch.randn(2, num_prefix + height * width, 6)
    mapped = imde.tokens_to_map(patch, num_prefix)(tokens, size)
    assert torch.equal(mapped, _hand_map(tokens, num_prefix, height, width))
    prefix, same = split_tokens(tokens, (height, width), num_prefix)
    assert torch.equal(same, mapped) and torch.equal(map_to_tokens(prefix, same), tokens)


def test_errors_name_the_grid_and_the_patch() -> None:
    with pytest.raises(ValueError, match=r"not a multiple of the patch size 14; expected H and W divisible by 14"):
        patch_grid((50, 70), 14)
    with pytest.raises(ValueError, match=r"expected \[B, 1 \+ 3\*5, C\] = \[B, 16, C\]"):
        imde.tokens_to_map(14, 1)(torch.zeros(1, 17, 4), (42, 70))
    with pytest.raises(ValueError, match="patch_size"):
        imde.tokens_to_map(0, 1)
    with pytest.raises(ValueError, match="num_prefix"):
        imde.tokens_to_map(14, -1)


class _TinyViT(nn.Module):
    """A user's own token model: patchify, a class token, one linear 'block', mean of the patch tokens."""

    def __init__(self, patch: int = 4, dim: int = 5) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1))
        return tokens[:, 1:].mean(-1).reshape(x.shape[0], 1, x.shape[2] // self.patch, x.shape[3] // self.patch)


def test_layer_tap_transform_feeds_depth_response_and_losses_with_gradients() -> None:
    torch.manual_seed(0)
    model = _TinyViT()
    x = torch.randn(2, 3, 12, 20)
    transforms = {"block": imde.tokens_to_map(4, 1)}
    with LayerTap(model, ["block"], transforms=transforms) as tap:
        model(x)
    feature = tap.features["block"]
    with torch.no_grad():
        tokens = model.block(torch.cat([model.cls.expand(2, -1, -1),
                                        model.embed(x).flatten(2).transpose(1, 2)], dim=1))
    assert torch.allclose(feature, _hand_map(tokens, 1, 3, 5))
    depth = torch.rand(2, 12, 20) * 9 + 0.5
    response = imde.DepthResponse(num_units=5, edges=imde.uniform_edges(4, 0.5, 10.0))
    response.update(feature.detach(), depth)
    assert int(response.counts.sum()) == 2 * 12 * 20
    loss = imde.AssignLoss(num_bins=4, alpha=0.5, beta=10.0)({"block": feature}, depth)
    loss.backward()
    assert model.block.weight.grad is not None and model.block.weight.grad.abs().sum() > 0
    assert model.cls.grad is None or model.cls.grad.abs().sum() == 0  # the class token is dropped from the map


def test_layer_tap_transform_errors() -> None:
    model = _TinyViT()
    with pytest.raises(ValueError, match=r"transforms\['embed'\]: not one of the tapped layers"):
        LayerTap(model, ["block"], transforms={"embed": imde.tokens_to_map(4)})
    with pytest.raises(ValueError, match="expected a callable"):
        LayerTap(model, ["block"], transforms={"block": 3})
    with pytest.raises(ValueError, match=r"returned Tensor|not a Tensor|transforms=\{'block'"):
        with LayerTap(model, ["block"], transforms={"block": lambda out, size: [out]}):
            model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="not a multiple of the patch size 3"):
        with LayerTap(model, ["block"], transforms={"block": imde.tokens_to_map(3, 1)}):
            model(torch.randn(1, 3, 8, 8))
    assert not model._forward_pre_hooks and not model.block._forward_hooks  # hooks gone after the errors


def test_token_map_module_is_parameter_free() -> None:
    module = TokenMap(num_prefix=1)
    assert not list(module.parameters())
    tokens = torch.randn(1, 1 + 6, 2)
    assert torch.equal(module(tokens, (2, 3)), _hand_map(tokens, 1, 2, 3))
