"""LayerTap and edit_layers: name resolution, captured values, autograd, and hooks that never outlive the block."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import nn

from imde.hooks import LayerTap, declared_layers, edit_layers, resolve_layer, unwrap_model
from imde.losses.selectivity import AssignLoss


class _Unit(NamedTuple):
    name: str
    module: str


class TinyNet(nn.Module):
    """Hand-weighted: ``enc`` doubles the input, ``dec.act`` is a ReLU, ``head`` sums the channels."""

    unit_info = (_Unit("E", "enc"), _Unit("D", "dec.act"))

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(2, 2, 1, bias=False)
        self.dec = nn.Sequential(nn.Identity(), nn.ReLU())
        self.dec.act = self.dec[1]
        self.head = nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.enc.weight.copy_(2 * torch.eye(2).view(2, 2, 1, 1))
            self.head.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(x).all():
            raise RuntimeError("non-finite input")
        return self.head(self.dec(self.enc(x)))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_captures_declared_and_dotted_layers_with_known_values() -> None:
    net = TinyNet()
    x = torch.tensor([[[[1.0, -1.0]], [[-2.0, 3.0]]]])
    with LayerTap(net, ["E", "D", "dec.0"]) as tap:
        out = net(x)
    assert torch.equal(tap.features["E"], 2 * x)
    assert torch.equal(tap.features["D"], torch.relu(2 * x))
    assert torch.equal(tap.features["dec.0"], 2 * x)
    assert torch.equal(out, torch.relu(2 * x).sum(1, keepdim=True))
    assert _hook_count(net) == 0


def test_features_stay_in_the_graph_unless_detached() -> None:
    net = TinyNet()
    x = torch.rand(2, 2, 4, 4)
    with LayerTap(net, "D") as tap:
        net(x)
    assert tap.features["D"].requires_grad
    loss = AssignLoss(num_bins=2, alpha=0.5, beta=2.0)(tap.features, torch.rand(2, 8, 8) * 2)
    loss.backward()
    assert net.enc.weight.grad is not None and float(net.enc.weight.grad.abs().sum()) > 0
    with LayerTap(net, "D", detach=True) as tap:
        net(x)
    assert not tap.features["D"].requires_grad
    with torch.no_grad(), LayerTap(net, "D") as tap:
        net(x)
    assert not tap.features["D"].requires_grad


def test_hooks_are_removed_when_the_forward_raises() -> None:
    net = TinyNet()
    with pytest.raises(RuntimeError, match="non-finite input"):
        with LayerTap(net, ["E", "D"]):
            assert _hook_count(net) == 2
            net(torch.full((1, 2, 2, 2), float("nan")))
    assert _hook_count(net) == 0
    assert all(len(m._forward_hooks) == 0 for m in (net.enc, net.dec.act))


def test_unknown_layer_lists_the_declared_names_and_adds_no_hook() -> None:
    net = TinyNet()
    with pytest.raises(ValueError, match=r"unknown layer 'MFF' for TinyNet: declared layers are E, D; any dotted"):
        LayerTap(net, ["E", "MFF"])
    with pytest.raises(ValueError, match="no unit_info"):
        resolve_layer(nn.Sequential(nn.ReLU()), "x")
    with pytest.raises(ValueError, match="duplicate"):
        LayerTap(net, ["E", "E"])
    assert _hook_count(net) == 0


def test_resolve_layer_and_data_parallel_unwrapping() -> None:
    net = TinyNet()
    assert declared_layers(net) == {"E": "enc", "D": "dec.act"}
    assert resolve_layer(net, "D") == (net.dec.act, "D")
    assert resolve_layer(net, "dec.act") == (net.dec.act, "D")  # the module path of a declared layer
    assert resolve_layer(net, "head") == (net.head, "head")
    wrapped = nn.DataParallel(net)
    assert unwrap_model(wrapped) is net
    with LayerTap(wrapped, "E") as tap:
        wrapped(torch.ones(1, 2, 1, 1))
    assert torch.equal(tap.features["E"], torch.full((1, 2, 1, 1), 2.0))
    assert _hook_count(net) == 0


def test_non_tensor_output_is_a_clear_error() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    net = nn.Sequential(Pair())
    with pytest.raises(ValueError, match="layer '0' \\(Pair\\) returned tuple, not a Tensor"):
        with LayerTap(net, "0"):
            net(torch.ones(1))
    assert _hook_count(net) == 0


def test_edit_layers_replaces_outputs_only_inside_the_block() -> None:
    net = TinyNet()
    x = torch.tensor([[[[1.0]], [[2.0]]]])

    def ablate_unit_1(y: torch.Tensor) -> torch.Tensor:
        y = y.clone()
        y[:, 1] = 0
        return y

    with edit_layers(net, {"E": ablate_unit_1}) as edited:
        assert edited is net
        assert float(net(x).detach()) == 2.0  # only unit 0 (2 * 1) reaches the head
    assert float(net(x).detach()) == 6.0
    with pytest.raises(RuntimeError), edit_layers(net, {"D": torch.neg}):
        net(torch.full((1, 2, 1, 1), float("inf")))
    assert _hook_count(net) == 0
    with pytest.raises(ValueError, match="expected a callable"):
        with edit_layers(net, {"E": 3}):
            pass
    with pytest.raises(ValueError, match="unknown layer 'Z'"):
        with edit_layers(net, {"Z": torch.neg}):
            pass
