"""Registry, run_model and the pretrained-weights paths (never downloading anything)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import imde.models
from imde.cli import EXIT_BAD_INPUT, main
from imde.errors import WeightsUnavailableError
from imde.models import register_model


def test_unknown_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="name='mff_resnet5' is not registered; expected one of"):
        imde.models.create("mff_resnet5")
    with pytest.raises(ValueError, match="already registered"):
        register_model(imde.models.mff.mff_tiny)


def test_offline_pretrained_error_names_download_cache_and_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        imde.models.create("mff_resnet18", pretrained=True)
    message = str(info.value)
    assert "resnet18.tv_in1k" in message and "huggingface.co/timm/resnet18.tv_in1k" in message
    assert "pretrained_file=PATH" in message and "cache" in message
    # the command line reports it on one line, before any training
    config = Path(__file__).resolve().parents[3] / "configs" / "train" / "mff" / "resnet50_assign_d_mff.yaml"
    argv = ["train", str(config), "model.name=mff_resnet18", "device=cpu", f"run_dir={tmp_path / 'run'}"]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("imde: error: could not load the ImageNet weights") and "Traceback" not in err


def test_pretrained_file_loads_a_local_encoder(tmp_path: Path) -> None:
    source = timm.create_model("resnet18")  # random weights in timm/torchvision layout, with the classifier
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = imde.models.create("mff_resnet18", pretrained_file=path)
    assert torch.equal(model.E.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.E.bn1.running_var, source.bn1.running_var)
    with pytest.raises(FileNotFoundError, match="pretrained_file="):
        imde.models.create("mff_resnet18", pretrained_file=tmp_path / "missing.pth")


def test_tiny_has_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="no released ImageNet weights"):
        imde.models.create("mff_tiny", pretrained=True)


def test_run_model_builds_inputs() -> None:
    model = imde.models.create("mff_tiny").eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        direct = model(image)
        batch = {"image": image, "depth": torch.rand(2, 1, 64, 64), "name": ["a", "b"]}
        via_batch = imde.models.run_model(model, batch, device="cpu")
    assert torch.equal(direct, via_batch)
    with torch.no_grad():
        assert torch.equal(imde.models.run_model(torch.nn.DataParallel(model), batch), direct)
    with pytest.raises(ValueError, match="'image'"):
        imde.models.run_model(model, {"depth": image})


def test_run_model_takes_any_user_module() -> None:
    """A plain nn.Module with no ``focal`` keyword (a user's own depth net) runs through run_model."""
    model = torch.nn.Conv2d(3, 1, kernel_size=1)
    image = torch.randn(2, 3, 8, 8)
    out = imde.models.run_model(model, {"image": image, "focal": torch.ones(2)})
    assert torch.equal(out, model(image))
