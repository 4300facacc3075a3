"""LayerTap and edit_layers: name resolution, captured values, autograd, and hooks that never outlive the block."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import nn

from imde.hooks import LayerTap, declared_layers, edit_layers, resolve_layer, unwrap_model
from imde.losses.selectivity import AssignLoss
from imde.models import run_with_features


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


class InPlaceAfterLayer(nn.Module):
    """``lin`` triples its input; the forward then shifts and rectifies that very tensor in place."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.lin.weight.fill_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        out -= 5.0
        return torch.relu_(out)


def test_tap_keeps_the_output_as_returned_under_later_in_place_ops() -> None:
    net = InPlaceAfterLayer()
    x = torch.tensor([[[[-1.0, 1.0, 2.0]]]])
    with LayerTap(net, ["lin"]) as tap:
        out = net(x)
    assert torch.equal(tap.features["lin"], torch.tensor([[[[-3.0, 3.0, 6.0]]]]))
    assert torch.equal(out, torch.tensor([[[[0.0, 0.0, 1.0]]]]))


def test_in_place_tap_keeps_the_gradient_of_the_returned_output() -> None:
    net = InPlaceAfterLayer()
    x = torch.tensor([[[[-1.0, 1.0, 2.0]]]])
    with LayerTap(net, ["lin"]) as tap:
        net(x)
    tap.features["lin"].pow(2).sum().backward()  # d/dw sum (w x)^2 = 2 w sum x^2 = 2 * 3 * 6
    assert net.lin.weight.grad.item() == pytest.approx(36.0)


def test_run_with_features_restores_the_mode_and_turns_grad_off() -> None:
    net = TinyNet().train()
    x = torch.tensor([[[[1.0, -1.0]], [[-2.0, 3.0]]]])
    pred, feats = run_with_features(net, {"image": x}, ["D"])
    assert torch.equal(feats["D"], torch.relu(2 * x)) and torch.equal(pred, torch.relu(2 * x).sum(1, keepdim=True))
    assert net.training and not pred.requires_grad and not feats["D"].requires_grad and _hook_count(net) == 0
    pred, feats = run_with_features(net.eval(), {"image": x}, grad=True)
    assert feats == {} and pred.requires_grad and not net.training
    with pytest.raises(RuntimeError, match="non-finite input"):
        run_with_features(net.train(), {"image": torch.full_like(x, float("nan"))}, ["D"])
    assert net.training and _hook_count(net) == 0


def test_data_parallel_over_several_devices_is_refused_with_ddp_advice() -> None:
    net = TinyNet()
    wrapped = nn.DataParallel(net)  # on a machine without GPUs: no replicas, device_ids == []
    with LayerTap(wrapped, ["D"]) as tap:  # one device (or none): the hooks see the whole batch
        wrapped(torch.ones(2, 2, 1, 1))
    assert tap.features["D"].shape == (2, 2, 1, 1)
    wrapped.device_ids = [0, 1]  # what DataParallel holds on a machine with two GPUs
    with pytest.raises(ValueError, match=r"DataParallel over 2 devices .*DistributedDataParallel"):
        LayerTap(wrapped, ["D"])
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        run_with_features(wrapped, {"image": torch.ones(2, 2, 1, 1)}, ["D"])
    assert _hook_count(net) == 0


def test_edit_and_tap_of_an_in_place_layer() -> None:
    net = InPlaceAfterLayer()
    x = torch.tensor([[[[-1.0, 1.0, 2.0]]]])
    with edit_layers(net, {"lin": lambda y: 2 * y}), LayerTap(net, ["lin"]) as tap:
        out = net(x)
    assert torch.equal(tap.features["lin"], torch.tensor([[[[-6.0, 6.0, 12.0]]]]))  # the edited output
    assert torch.equal(out, torch.tensor([[[[0.0, 1.0, 7.0]]]]))


def test_run_with_features_restores_mixed_modes() -> None:
    net = TinyNet().train()
    net.dec.eval()  # e.g. a frozen part of a model in training
    run_with_features(net, {"image": torch.ones(1, 2, 1, 1)})
    assert net.training and net.enc.training and not net.dec.training and not net.dec.act.training
