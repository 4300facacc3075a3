"""MFF (Hu et al.): module budget of the original, up-projection, input checks, layer taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import imde.models
from imde.hooks import LayerTap
from imde.models.mff import UpProj


@pytest.fixture(scope="module")
def senet() -> torch.nn.Module:
    return imde.models.create("mff_senet154")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "encoder"), [("mff_resnet50", 23_508_032), ("mff_senet154", 113_039_984)])
def test_parameter_budget_per_module(name: str, encoder: int, senet: torch.nn.Module) -> None:
    # models-and-data.md Sec. 1.1: E / D / MFF / R.
    model = senet if name == "mff_senet154" else imde.models.create(name)
    assert [_count(model.E), _count(model.D), _count(model.MFF), _count(model.R)] == [
        encoder, 40_054_400, 3_184_128, 822_913]


def test_senet_encoder_keys_follow_hu_layout(senet: torch.nn.Module) -> None:
    keys = senet.state_dict()
    assert "E.base.0.conv1.weight" in keys and "E.base.4.2.se_module.fc2.weight" in keys
    assert not any(k.startswith(("E.layer0", "E.pool0")) for k in keys)


def test_upproj_matches_its_definition() -> None:
    block = UpProj(3, 4).eval()
    for bn in (block.bn1, block.bn1_2, block.bn2):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 5, 6)
    out = block(x, (9, 11))
    up = F.interpolate(x, size=(9, 11), mode="bilinear", align_corners=False)
    branch_a = block.bn1_2(block.conv1_2(torch.relu(block.bn1(block.conv1(up)))))
    assert torch.allclose(out, torch.relu(branch_a + block.bn2(block.conv2(up))), atol=1e-6)
    assert out.shape == (2, 4, 9, 11) and out.min() >= 0


def test_align_corners_option_changes_resizing() -> None:
    model = imde.models.create("mff_resnet50", align_corners=True)
    assert all(up.align_corners for up in model.modules() if isinstance(up, UpProj))


def test_layer_tap_reaches_declared_layers_and_half_resolution_output() -> None:
    model = imde.models.create("mff_tiny").eval()
    x = torch.randn(1, 3, 128, 160)
    with LayerTap(model, [info.name for info in model.unit_info]) as tap, torch.no_grad():
        pred = model(x)
    assert pred.shape == (1, 1, 64, 80)
    assert {k: v.shape[1] for k, v in tap.features.items()} == {"D": 16, "MFF": 16, "Rconv0": 32, "Rconv1": 32}
    # R's first conv sees exactly cat(D, MFF).
    assert torch.equal(model.R.act0(model.R.bn0(model.R.conv0(torch.cat([tap.features["D"], tap.features["MFF"]],
                                                                          1)))), tap.features["Rconv0"])


def test_tiny_widths_are_constructor_kwargs() -> None:
    model = imde.models.create("mff_tiny", d_units=8, r_units=24)
    assert [(i.name, i.num_units) for i in model.unit_info] == [("D", 8), ("MFF", 8), ("Rconv0", 24), ("Rconv1", 24)]
    assert model.R.conv0.in_channels == 16
    with pytest.raises(ValueError, match="multiple of 4"):
        imde.models.create("mff_tiny", d_units=10)


def test_forward_is_pure() -> None:
    model = imde.models.create("mff_tiny").eval()
    before = set(vars(model))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert set(vars(model)) == before


@pytest.mark.parametrize(("shape", "match"), [((1, 4, 64, 64), r"\[B, 3, H, W\]"), ((1, 3, 66, 64), "multiples of 4"),
                                              ((3, 64, 64), r"\[B, 3, H, W\]"), ((1, 3, 16, 16), ">= 32")])
def test_bad_input_is_rejected(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        imde.models.create("mff_tiny")(torch.randn(shape))
