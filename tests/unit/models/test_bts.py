"""BTS: local planar guidance against a per-pixel loop, plane decoding, focal scaling, input checks."""

from __future__ import annotations

import math

import pytest
import torch

import imde.models
from imde.models.bts import KITTI_REFERENCE_FOCAL, Reduction1x1, local_planar_guidance


@pytest.fixture(scope="module")
def kitti() -> torch.nn.Module:
    return imde.models.create("bts_densenet161_kitti").eval()


def _planes(batch: int, height: int, width: int) -> torch.Tensor:
    return Reduction1x1(8, 4, max_depth=10.0)(torch.randn(batch, 8, height, width))


def test_plane_decoding_ranges() -> None:
    plane = _planes(2, 3, 4)
    normal, dist = plane[:, :3], plane[:, 3]
    assert torch.allclose(normal.norm(dim=1), torch.ones(2, 3, 4), atol=1e-6)
    assert (normal[:, 2] >= math.cos(math.pi / 3) - 1e-6).all()  # theta in (0, pi/3)
    assert ((dist > 0) & (dist < 10)).all()


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_local_planar_guidance_matches_a_pixel_loop(ratio: int) -> None:
    plane = _planes(1, 2, 3)
    depth = local_planar_guidance(plane, ratio)
    assert depth.shape == (1, 1, 2 * ratio, 3 * ratio)
    for y in range(2 * ratio):
        for x in range(3 * ratio):
            n1, n2, n3, n4 = plane[0, :, y // ratio, x // ratio].tolist()
            u = ((x % ratio) - (ratio - 1) / 2) / ratio
            v = ((y % ratio) - (ratio - 1) / 2) / ratio
            assert depth[0, 0, y, x].item() == pytest.approx(n4 / (n1 * u + n2 * v + n3), rel=1e-5)


def test_kitti_output_scales_with_focal(kitti: torch.nn.Module) -> None:
    image = torch.randn(1, 3, 64, 96).expand(2, -1, -1, -1)
    focal = torch.tensor([KITTI_REFERENCE_FOCAL, 2 * KITTI_REFERENCE_FOCAL])
    with torch.no_grad():
        depth = kitti(image, focal=focal)
    assert torch.allclose(depth[1], 2 * depth[0], rtol=1e-5)
    assert (depth[0] > 0).all() and (depth[0] < 80).all()


def test_kitti_requires_focal_and_nyu_ignores_it(kitti: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="focal"):
        kitti(torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match="focal"):
        imde.models.run_model(kitti, {"image": torch.randn(1, 3, 64, 96)})
    with pytest.raises(ValueError, match=r"focal has shape \(2,\)"):
        kitti(torch.randn(1, 3, 64, 96), focal=torch.ones(2))
    assert not imde.models.create("bts_densenet161_nyu").uses_focal


@pytest.mark.parametrize(("shape", "match"), [((1, 3, 70, 96), "multiples of 32"), ((1, 1, 64, 96), r"\[B, 3, H, W\]")])
def test_bad_input_is_rejected(kitti: torch.nn.Module, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kitti(torch.randn(shape), focal=torch.ones(shape[0]))


def test_declared_layers_and_skips(kitti: torch.nn.Module) -> None:
    assert [(i.name, i.num_units, i.stride) for i in kitti.unit_info] == [
        ("upconv3", 128, 4), ("upconv2", 64, 2), ("iconv2", 64, 2), ("upconv1", 32, 1), ("iconv1", 32, 1)]
    assert kitti.encoder.channels == (96, 96, 192, 384, 2208)
    with torch.no_grad():
        skips = kitti.encoder(torch.randn(1, 3, 64, 96))
    assert [tuple(s.shape[1:]) for s in skips] == [(96, 32, 48), (96, 16, 24), (192, 8, 12), (384, 4, 6), (2208, 2, 3)]
    assert skips[0].min() >= 0 and skips[4].min() >= 0  # norm0 and norm5 outputs are ReLU'd (BTS's relu0 / relu)
