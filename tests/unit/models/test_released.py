"""Loading state dicts in the released layouts (models-and-data.md Sec. 3), built from our models' names and shapes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

import imde.models
from imde.models import adapt_state_dict, load_checkpoint


def _original(model: torch.nn.Module, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The model's weights as a PyTorch 0.3 DataParallel file holds them: prefixed, no num_batches_tracked."""
    return {prefix + k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def senet() -> torch.nn.Module:
    return imde.models.create("mff_senet154")


RELEASED_COUNTS = [("mff_resnet50", 407, 488), ("bts_densenet161_nyu", 900, 1075)]  # Sec. 3: keys without / with


@pytest.mark.parametrize(("name", "count", "with_tracked"), RELEASED_COUNTS)
def test_released_key_counts_and_prefix(name: str, count: int, with_tracked: int) -> None:
    model = imde.models.create(name)
    state = _original(model)
    assert len(state) == count
    adapted, report = adapt_state_dict(model, state)
    assert report.stripped_prefix == "module." and not report.renamed and not report.dropped
    assert len(report.filled) == with_tracked - count
    assert len(adapted) == with_tracked


def test_senet_hu_layout_and_timm_layout(senet: torch.nn.Module) -> None:
    hu = _original(senet)
    assert len(hu) == 1127
    _, report = adapt_state_dict(senet, hu)
    assert not report.renamed and len(report.filled) == 1312 - 1127
    # timm's own names (layer0..layer4) map back onto E.base.0..4.
    timm_layout = {re.sub(r"^module\.E\.base\.(\d)\.", r"module.E.layer\1.", k): v for k, v in hu.items()}
    adapted, report = adapt_state_dict(senet, timm_layout)
    assert len(report.renamed) == sum(k.startswith("module.E.") for k in hu)
    assert report.renamed["E.layer0.conv1.weight"] == "E.base.0.conv1.weight"
    assert torch.equal(adapted["E.base.3.5.se_module.fc1.weight"], hu["module.E.base.3.5.se_module.fc1.weight"])


def test_bts_old_torchvision_densenet_names() -> None:
    model = imde.models.create("bts_densenet161_kitti")
    state = _original(model)
    old = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}
    assert "module.encoder.base_model.denseblock1.denselayer1.norm.1.weight" in old
    adapted, report = adapt_state_dict(model, old)
    assert len(report.renamed) == sum(k != o for k, o in zip(state, old))
    assert torch.equal(adapted["encoder.base_model.denseblock2.denselayer3.conv2.weight"],
                       state["module.encoder.base_model.denseblock2.denselayer3.conv2.weight"])


def test_cspn_drops_post_process_and_unused_modules() -> None:
    model = imde.models.create("cspn_resnet50")
    state = _original(model)
    extras = {"module.post_process_layer.sum_conv.weight": torch.ones(1, 8, 1, 1, 1),
              "module.up_proj_layer1.conv1.weight": torch.zeros(3), "module.conv3.weight": torch.zeros(1, 128, 3, 3)}
    _, report = adapt_state_dict(model, {**state, **extras})
    assert sorted(report.dropped) == sorted(k.removeprefix("module.") for k in extras)


def test_load_from_disk_bts_style_wrapper(tmp_path: Path) -> None:
    source = imde.models.create("mff_tiny")
    for p in source.parameters():
        p.data.uniform_(-1, 1)
    path = tmp_path / "model"
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4}]}
    torch.save({"global_step": 10, "model": _original(source), "optimizer": optimizer}, path)
    target = imde.models.create("mff_tiny")
    report = load_checkpoint(target, path)
    assert report.wrapper == "model" and report.stripped_prefix == "module."
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert name.endswith("num_batches_tracked") or torch.equal(a, b), name


def test_plain_state_dict_without_prefix_and_non_strict(tmp_path: Path) -> None:
    source = imde.models.create("mff_tiny")
    path = tmp_path / "auth.pt"
    torch.save({"state_dict": {k: v for k, v in source.state_dict().items() if not k.startswith("R.")}}, path)
    with pytest.raises(ValueError, match=r"Missing keys: \d+ \(R\.conv0\.weight"):
        load_checkpoint(imde.models.create("mff_tiny"), path)
    report = load_checkpoint(imde.models.create("mff_tiny"), path, strict=False)
    assert report.stripped_prefix is None and report.wrapper == "state_dict"
    assert report.missing and all(k.startswith("R.") for k in report.missing)


def test_checkpoint_for_another_architecture_is_named() -> None:
    bts = _original(imde.models.create("bts_densenet161_nyu"))
    with pytest.raises(ValueError, match="seems to be for BTS-DenseNet161") as info:
        adapt_state_dict(imde.models.create("mff_tiny"), bts)
    assert "Missing keys" in str(info.value) and "unexpected keys: 900" in str(info.value)
    wide = _original(imde.models.create("mff_tiny", d_units=32))
    with pytest.raises(ValueError, match=r"shape mismatches \(file vs model\): \d+ \(D\.up"):
        adapt_state_dict(imde.models.create("mff_tiny"), wide)


def test_unsafe_files_need_an_explicit_opt_in(tmp_path: Path) -> None:
    source = imde.models.create("mff_tiny")
    path = tmp_path / "train.pth"
    torch.save({"state_dict": source.state_dict(), "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(ValueError, match="allow_unsafe=True"):
        load_checkpoint(imde.models.create("mff_tiny"), path)
    assert load_checkpoint(imde.models.create("mff_tiny"), path, allow_unsafe=True).wrapper == "state_dict"


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(imde.models.create("mff_tiny"), tmp_path / "missing.pt")
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        load_checkpoint(imde.models.create("mff_tiny"), path)
