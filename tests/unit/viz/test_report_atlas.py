"""The unit atlas on a tiny hand-weighted model: sprite layout, tiles equal to the normalised feature maps
(checked against a slow per-pixel reference), predicted-bin masks, hooks removed, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from imde.core.bins import DepthBins
from imde.viz.atlas import export_unit_atlas

S, H, W = 3, 8, 12


class HandWeighted(nn.Module):
    """``units``: unit 0 = red, unit 1 = green - blue, unit 2 = 0 (dead); predicted depth = 0.2 + 2 * red."""

    def __init__(self) -> None:
        super().__init__()
        self.units = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.units.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, -1], [0, 0, 0]]).view(3, 3, 1, 1))

    def forward(self, image: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return 0.2 + 2.0 * self.units(image)[:, :1]


@pytest.fixture
def batch() -> dict:
    gen = torch.Generator().manual_seed(3)
    return {"image": torch.rand(S, 3, H, W, generator=gen), "depth": 0.5 + 5 * torch.rand(S, 1, H, W, generator=gen)}


def _viridis(value: float) -> np.ndarray:
    import matplotlib

    return np.round(np.array(matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[round(value * 255)][:3]) * 255)


def test_sprite_tiles_are_the_normalised_unit_maps(tmp_path: Path, batch: dict) -> None:
    model = HandWeighted()
    index = export_unit_atlas(model, ["units"], batch, tmp_path, device="cpu", bins=DepthBins("nyu", 2),
                              max_tile=W, image_normalized=False)
    layer = index["layers"]["units"]
    assert layer["units"] == 3 and layer["tile"] == [H, W] and index["samples"] == S
    sprite = np.asarray(Image.open(tmp_path / layer["file"]).convert("RGB"))
    assert sprite.shape == (3 * H, S * W, 3)  # rows = units, columns = samples

    image = batch["image"]
    maps = torch.stack([image[:, 0], image[:, 1] - image[:, 2], torch.zeros(S, H, W)], dim=1)  # [S, K, H, W]
    for k in range(3):
        low, high = float(maps[:, k].min()), float(maps[:, k].max())
        assert layer["range"][k] == pytest.approx([low, high], abs=1e-6)
        for s in range(S):  # slow reference, pixel by pixel
            tile = sprite[k * H:(k + 1) * H, s * W:(s + 1) * W]
            for y in range(0, H, 3):
                for x in range(0, W, 2):
                    norm = (float(maps[s, k, y, x]) - low) / (high - low) if high > low else 0.0
                    assert np.abs(tile[y, x] - _viridis(norm)).max() <= 1, (k, s, y, x)
    assert (sprite[2 * H:] == _viridis(0.0)).all()  # the dead unit is drawn at the bottom of the map


def test_images_and_predicted_bin_masks(tmp_path: Path, batch: dict) -> None:
    index = export_unit_atlas(HandWeighted(), ["units"], batch, tmp_path, device="cpu", bins=DepthBins("nyu", 2),
                              max_tile=W, image_normalized=False)
    images = np.asarray(Image.open(tmp_path / index["images"]["file"]).convert("RGB"))
    assert index["images"]["rows"] == ["image", "depth", "prediction"]
    assert images.shape == (3 * H, S * W, 3)
    expected_rgb = np.round(batch["image"].permute(2, 0, 3, 1).reshape(H, S * W, 3).numpy() * 255)
    assert np.abs(images[:H] - expected_rgb).max() <= 1

    masks = index["layers"]["units"]["masks"]
    assert masks["bins"] == 2  # N_b = min(2, K = 3): NYU edges [0, 0.75, 10]
    sprite = np.asarray(Image.open(tmp_path / masks["file"]).convert("RGB"))
    assert sprite.shape == (2 * H, S * W, 3)
    prediction = 0.2 + 2.0 * batch["image"][:, 0]  # [S, H, W]
    near = (prediction <= 0.75).permute(1, 0, 2).reshape(H, S * W).numpy()
    assert near.any() and (~near).any()
    highlighted = sprite[..., 0] > 100  # highlight >= 0.55 * 245 in red; dimmed <= 0.25 * 255
    assert (highlighted[:H] == near).all() and (highlighted[H:] == ~near).all()

    saved = json.loads((tmp_path / "index.json").read_text())
    assert saved == json.loads(json.dumps(index))


def test_large_maps_are_downsampled_and_model_state_is_restored(tmp_path: Path) -> None:
    model = HandWeighted().train()
    batch = {"image": torch.rand(2, 3, 40, 60), "depth": torch.ones(2, 1, 40, 60)}
    index = export_unit_atlas(model, "units", batch, tmp_path, device="cpu", max_tile=15)  # one name: a str
    assert list(index["layers"]) == ["units"] and index["layers"]["units"]["tile"] == [10, 15]
    assert index["images"]["tile"] == [10, 15]
    assert index["layers"]["units"]["masks"] is None  # no preset: no masks
    assert model.training and not model.units._forward_hooks


def test_bad_input_is_named(tmp_path: Path, batch: dict) -> None:
    model = HandWeighted()
    with pytest.raises(ValueError, match=r"samples: expected a batch dict with 'image'.*'depth'"):
        export_unit_atlas(model, ["units"], {"image": batch["image"]}, tmp_path, device="cpu")
    with pytest.raises(ValueError, match=r"samples\['depth'\]: expected shape \[3, 1, H, W\], got \(2, 1, 8, 12\)"):
        export_unit_atlas(model, ["units"], {**batch, "depth": batch["depth"][:2]}, tmp_path, device="cpu")
    with pytest.raises(ValueError, match="nonexistent"):
        export_unit_atlas(model, ["nonexistent"], batch, tmp_path, device="cpu")
    assert not model.units._forward_hooks and not list(tmp_path.iterdir())
