"""One check of every registered model against its declaration: output shape, layers' units, strides and signs."""

from __future__ import annotations

import math

import pytest
import torch

import imde.losses
import imde.models
from imde.models import UnitInfo

# Parameter counts of the original architectures (models-and-data.md, Sec. 1).
PARAM_COUNTS = {
    "mff_resnet50": 67_569_473,
    "mff_senet154": 157_101_425,
    "bts_densenet161_nyu": 47_000_688,
    "bts_densenet161_kitti": 47_000_688,
    "cspn_resnet50": 218_121_920,
    # Depth Anything V2 and DPT-Large: equal to transformers' DepthAnythingForDepthEstimation /
    # DPTForDepthEstimation at the released configurations (checked in test_dpt.py)
    "depth_anything_v2_small": 24_785_089,
    "depth_anything_v2_base": 97_470_785,
    "depth_anything_v2_large": 335_315_649,
    "dpt_large": 343_030_465,
}
LARGE = set(PARAM_COUNTS)
SLOW_SMALL = {"mff_resnet18"}  # ~25 s forward + backward at 228x304 on one CPU thread
# ViTs whose random initialisation alone takes long on a CPU: checked on the meta device (shapes and parameter
# count) by default, with real values in the slow tests.
META = {"depth_anything_v2_base", "depth_anything_v2_large", "dpt_large"}
REDUCED_SIZE = (64, 96)  # rounded up to each model's size_multiple (32 for the CNNs, the patch for the ViTs)
CSPN_SPARSE_POINTS = 20


def _batch(model: torch.nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, torch.Tensor]:
    """Inputs for every kind of model: image, focal, and sparse depth for 4-channel models."""
    out = {"image": torch.randn(batch, 3, *size), "focal": torch.full((batch,), 721.5377)}
    if model.in_chans == 4:
        sparse = torch.zeros(batch, 1, *size)
        flat = sparse.view(batch, -1)
        flat[:, torch.randperm(flat.shape[1])[:CSPN_SPARSE_POINTS]] = torch.rand(batch, CSPN_SPARSE_POINTS) * 9 + 0.5
        out["sparse_depth"] = sparse
    return out


def _reduced(model: torch.nn.Module) -> tuple[int, int]:
    multiple = model.size_multiple
    return tuple(-(-side // multiple) * multiple for side in REDUCED_SIZE)


def check_declaration(name: str, size: tuple[int, int] | None, backward: bool = False,
                      device: str = "cpu") -> torch.nn.Module:
    """Run ``name`` at ``size`` (default: reduced) and check output and every declared layer against ``unit_info``.

    On the meta device only shapes are checked (meta tensors have no values).
    """
    with torch.device(device):
        model = imde.models.create(name)
        batch = _batch(model, size or _reduced(model))
    size = size or _reduced(model)
    values = device != "meta"
    model.train(backward)
    assert isinstance(model.unit_info, tuple) and model.unit_info
    assert all(isinstance(info, UnitInfo) for info in model.unit_info)
    assert model.depth_preset in ("nyu", "kitti")
    assert model.default_loss in imde.losses.DEPTH_LOSSES
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = [modules[info.module].register_forward_hook(
        lambda _m, _i, out, key=info.name: captured.__setitem__(key, out)) for info in model.unit_info]
    try:
        with torch.set_grad_enabled(backward):
            pred = imde.models.run_model(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    height, width = size
    assert pred.shape == (batch["image"].shape[0], 1, height // model.output_stride, width // model.output_stride)
    assert not values or torch.isfinite(pred).all()
    for info in model.unit_info:
        feature = captured[info.name]
        assert feature.shape[1:] == (info.num_units, math.ceil(height / info.stride),
                                     math.ceil(width / info.stride)), info
        if not values:
            continue
        if info.signed:
            assert (feature < 0).any(), f"{info.name} is declared signed but has no negative value"
        else:
            assert feature.min() >= 0, f"{info.name} is declared non-negative (after ReLU)"
    if backward:
        imde.losses.create(model.default_loss)(pred, torch.rand_like(pred) * 5 + 0.5).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return model


def test_registry_lists_the_paper_models() -> None:
    names = imde.models.list()
    assert set(PARAM_COUNTS) | {"mff_resnet18", "mff_tiny"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", imde.models.list())
def test_declaration_and_size_at_reduced_input(name: str) -> None:
    """Every model: parameter count of the original, and a forward at a reduced size checked against its layers."""
    model = check_declaration(name, None, device="meta" if name in META else "cpu")
    if name in PARAM_COUNTS:
        assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", sorted(set(imde.models.list()) - LARGE - SLOW_SMALL))
def test_small_models_at_standard_size_with_backward(name: str) -> None:
    check_declaration(name, imde.models.create(name).input_size, backward=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(META))
def test_vits_at_reduced_input_with_values(name: str) -> None:
    check_declaration(name, None)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LARGE | SLOW_SMALL))
def test_models_at_standard_size_with_backward(name: str) -> None:
    check_declaration(name, imde.models.create(name).input_size, backward=True)
