"""Joint transforms: alignment of image and depth, nearest-only depth, hand-computed photometric values, recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from imde.data.transforms import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    IMAGENET_MEAN,
    BTSAugment,
    CenterCrop,
    Compose,
    DepthResize,
    FixedCrop,
    KBCrop,
    Lighting,
    Normalize,
    PILRoundTrip,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotate,
    RandomScale,
    Resize,
    SparseDepthSample,
    create_transform,
)


def _marked(height: int = 96, width: int = 128, row: int = 30, col: int = 20) -> dict:
    """Grey image and 5 m depth with a 5x5 white / 9 m marker at (row, col), some invalid depth, and a hole."""
    image = torch.full((3, height, width), 0.2)
    depth = torch.full((1, height, width), 5.0)
    image[:, row:row + 5, col:col + 5] = 1.0
    depth[:, row:row + 5, col:col + 5] = 9.0
    depth[:, -10:, :] = 0.0  # invalid band
    return {"image": image, "depth": depth, "focal": 500.0, "name": "x"}


def _marker_masks(sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return sample["image"][0] > 0.9, sample["depth"][0] == 9.0


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    return mask.nonzero().float().mean(0)


@pytest.mark.parametrize("seed", range(4))
def test_geometric_augmentation_keeps_image_and_depth_aligned(seed):
    torch.manual_seed(seed)
    transform = Compose([RandomHorizontalFlip(1.0), RandomRotate(5.0), RandomCrop((80, 100))])
    out = transform(_marked(row=40, col=50))
    image_marker, depth_marker = _marker_masks(out)
    assert bool(depth_marker.any())
    assert torch.equal(image_marker, depth_marker)
    assert set(out["depth"].unique().tolist()) <= {0.0, 5.0, 9.0}  # nearest only, 0 fill


def test_flip_moves_the_marker_to_the_mirrored_column():
    out = RandomHorizontalFlip(1.0)(_marked(width=128, col=20))
    image_marker, depth_marker = _marker_masks(out)
    columns = depth_marker.any(0).nonzero().flatten()
    assert columns.tolist() == list(range(128 - 25, 128 - 20))
    assert torch.equal(image_marker, depth_marker)
    assert out["focal"] == 500.0 and out["name"] == "x"


def test_bilinear_image_rotation_stays_aligned_with_nearest_depth():
    torch.manual_seed(1)
    out = RandomRotate(10.0, image_interpolation="bilinear")(_marked(row=40, col=50))
    image_marker, depth_marker = out["image"][0] > 0.6, out["depth"][0] == 9.0
    assert torch.allclose(_centroid(image_marker), _centroid(depth_marker), atol=1.0)
    assert set(out["depth"].unique().tolist()) <= {0.0, 5.0, 9.0}


def test_rotation_pads_depth_with_invalid():
    seed = next(s for s in range(100) if abs(float(torch.manual_seed(s) and torch.empty(()).uniform_(-5, 5))) > 3)
    torch.manual_seed(seed)  # an angle above 3 degrees: the corners come from outside the frame
    sample = {"image": torch.ones(3, 100, 100), "depth": torch.full((1, 100, 100), 3.0)}
    out = RandomRotate(5.0)(sample)
    assert float(out["depth"][0, 0, 0]) == 0.0 and float(out["depth"][0, 50, 50]) == 3.0
    assert set(out["depth"].unique().tolist()) == {0.0, 3.0}


def test_resize_never_interpolates_depth():
    sample = _marked()
    out = Resize(240)(sample)
    assert out["image"].shape == (3, 240, 320) and out["depth"].shape == (1, 240, 320)
    assert out["focal"] == pytest.approx(500.0 * 320 / 128)  # the focal length in pixels scales with the image
    assert set(out["depth"].unique().tolist()) == {0.0, 5.0, 9.0}
    torch.testing.assert_close(out["image"][:, 0, 0], torch.full((3,), 0.2))
    half = Resize((48, 64))(sample)  # antialiased image blurs the marker; depth keeps source pixels
    assert torch.allclose(_centroid(half["image"][0] > 0.6), _centroid(half["depth"][0] == 9.0), atol=1.0)


def test_depth_resize_to_half_takes_the_pixel_under_each_output_centre_as_pil():
    depth = torch.rand(1, 228, 304)
    out = DepthResize((114, 152))({"image": torch.zeros(3, 228, 304), "depth": depth})
    torch.testing.assert_close(out["depth"], depth[:, 1::2, 1::2])  # rows and columns 2i + 1
    assert out["image"].shape == (3, 228, 304)
    # the original loaders resize depth with PIL's NEAREST: the same pixels, also at non-integer ratios
    for size in ((114, 152), (188, 621), (4, 5)):
        source = torch.rand(1, 2 * size[0] + 1, 2 * size[1] + 3) * 10
        pil = Image.fromarray(source[0].numpy(), mode="F").resize(size[::-1], Image.NEAREST)
        ours = Resize(size)({"depth": source})["depth"][0]
        assert torch.equal(ours, torch.from_numpy(np.array(pil)))


def test_crop_offsets():
    coded = torch.arange(480 * 640, dtype=torch.float32).reshape(1, 480, 640)
    sample = {"image": coded.expand(3, -1, -1), "depth": coded}
    centre = CenterCrop((427, 565))(sample)
    assert float(centre["depth"][0, 0, 0]) == 26 * 640 + 38  # torchvision's rounding: offset (top 26, left 38)
    fixed = FixedCrop(45, 43, 427, 565)(sample)
    assert float(fixed["depth"][0, 0, 0]) == 45 * 640 + 43 and fixed["image"].shape == (3, 427, 565)
    kitti = {"image": torch.zeros(3, 375, 1242), "depth": torch.zeros(1, 375, 1242)}
    assert KBCrop()(kitti)["depth"].shape == (1, 352, 1216)
    with pytest.raises(ValueError, match="RandomCrop: crop 500x544 is larger than the sample 480x640"):
        RandomCrop((500, 544))(sample)


def test_lighting_adds_the_pca_shift():
    image = torch.rand(3, 8, 8)
    torch.manual_seed(3)
    alpha = torch.randn(3) * 0.1
    shift = torch.tensor(IMAGENET_EIGVEC) @ (alpha * torch.tensor(IMAGENET_EIGVAL))
    torch.manual_seed(3)
    out = Lighting(0.1)({"image": image, "depth": torch.ones(1, 8, 8)})
    torch.testing.assert_close(out["image"] - image, shift.view(3, 1, 1).expand(3, 8, 8))
    assert torch.equal(out["depth"], torch.ones(1, 8, 8))


def test_bts_augment_gamma_brightness_colour():
    image = torch.rand(3, 8, 8)
    torch.manual_seed(5)
    torch.empty(()).uniform_(0.0, 1.0)  # the probability draw
    gamma = float(torch.empty(()).uniform_(0.9, 1.1))
    bright = float(torch.empty(()).uniform_(0.75, 1.25))
    colour = torch.empty(3).uniform_(0.9, 1.1)
    torch.manual_seed(5)
    out = BTSAugment((0.75, 1.25), p=1.0)({"image": image, "depth": torch.ones(1, 8, 8)})
    expected = (image**gamma * bright * colour.view(3, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(out["image"], expected)
    untouched = BTSAugment(p=0.0)({"image": image})
    assert torch.equal(untouched["image"], image)


def test_normalize_imagenet():
    image = torch.tensor(IMAGENET_MEAN).view(3, 1, 1).expand(3, 4, 4).clone()
    image[:, 0, 0] += torch.tensor([0.229, 0.224, 0.225])
    out = Normalize()({"image": image})["image"]
    assert float(out[:, 1:, 1:].abs().max()) < 1e-6
    torch.testing.assert_close(out[:, 0, 0], torch.ones(3))


@pytest.mark.parametrize(("reference", "expected"), [("valid", 400), ("image", 200)])
def test_sparse_depth_sample(reference, expected):
    depth = torch.rand(1, 100, 100) * 9 + 1
    depth[:, :50] = 0.0  # half invalid
    torch.manual_seed(0)
    out = SparseDepthSample(400, reference)({"image": torch.zeros(3, 100, 100), "depth": depth})
    sparse = out["sparse_depth"]
    kept = sparse > 0
    assert abs(int(kept.sum()) - expected) < 5 * expected**0.5  # binomial, 5 sigma
    assert torch.equal(sparse[kept], depth[kept]) and not bool(kept[:, :50].any())


def test_random_scale_divides_depth_by_the_scale():
    torch.manual_seed(2)
    sample = {"image": torch.rand(3, 480, 640), "depth": torch.full((1, 480, 640), 6.0), "focal": 518.8579}
    out = RandomScale(1.0, 1.5, base=240)(sample)
    assert out["focal"] == 518.8579  # the depth is rescaled instead
    height = out["image"].shape[-2]
    assert 240 <= height <= 360 and out["depth"].shape[-2:] == out["image"].shape[-2:]
    scale = 6.0 / float(out["depth"][0, 0, 0])
    assert abs(scale * 240 - height) <= 0.5 and bool((out["depth"] == out["depth"][0, 0, 0]).all())


@pytest.mark.parametrize(
    ("recipe", "train", "kw", "size", "image_shape", "depth_shape"),
    [
        ("mff", True, {}, (480, 640), (228, 304), (114, 152)),
        ("mff", False, {}, (480, 640), (228, 304), (228, 304)),
        ("bts_nyu", True, {}, (480, 640), (416, 544), (416, 544)),
        ("bts_nyu", True, {"variant": "bts"}, (480, 640), (416, 544), (416, 544)),
        ("bts_nyu", False, {}, (480, 640), (480, 640), (480, 640)),
        ("bts_kitti", True, {}, (375, 1242), (352, 704), (352, 704)),
        ("bts_kitti", True, {"variant": "bts"}, (375, 1242), (352, 704), (352, 704)),
        ("bts_kitti", False, {}, (375, 1242), (352, 1216), (352, 1216)),
        ("cspn", True, {}, (480, 640), (228, 304), (228, 304)),
        ("cspn", False, {}, (480, 640), (228, 304), (228, 304)),
        ("dav2", True, {}, (480, 640), (518, 518), (518, 518)),
        ("dav2", False, {}, (480, 640), (518, 686), (518, 686)),  # 518 x 690 cut to multiples of 14
        ("dav2", False, {"size": 378}, (375, 1242), (378, 1246), (378, 1246)),
        ("simple", True, {"size": (64, 80)}, (128, 160), (64, 80), (64, 80)),
        ("simple", False, {}, (128, 160), (128, 160), (128, 160)),
    ],
)
def test_recipes_output_sizes_and_depth_values(recipe, train, kw, size, image_shape, depth_shape):
    torch.manual_seed(0)
    depth = torch.randint(0, 3, (1, *size)).float() * 3.5  # values {0, 3.5, 7}
    sample = {"image": torch.rand(3, *size), "depth": depth, "focal": 518.8579, "name": "n"}
    out = create_transform(recipe, train, **kw)(sample)
    assert out["image"].shape == (3, *image_shape) and out["depth"].shape == (1, *depth_shape)
    if recipe != "cspn":  # CSPN's scale augmentation divides depth by s
        assert set(out["depth"].unique().tolist()) <= {0.0, 3.5, 7.0}
    if recipe == "cspn":
        assert out["sparse_depth"].shape == (1, *image_shape)
    if recipe == "cspn":  # CSPN's ToPILImage round trip of the normalised image: codes / 255 in [0, 1]
        assert out["image"].min() >= 0 and out["image"].max() <= 1
        assert torch.equal(out["image"] * 255, (out["image"] * 255).round())
    else:
        assert float(out["image"].min()) < -0.5  # ImageNet normalisation applied last
    assert out["name"] == "n"


def test_cspn_round_trip_equals_torchvision_to_pil_and_back():
    # the normalised image through torchvision's ToPILImage and ToTensor, as CSPN's loaders do (negative values
    # wrap around modulo 256)
    torch.manual_seed(0)
    normalised = torch.randn(3, 20, 30) * 1.5
    normalised[0, 0, :4] = torch.tensor([-0.5, -1.2, 1.5, 2.6])
    expected = TF.to_tensor(TF.to_pil_image(normalised))
    out = PILRoundTrip()({"image": normalised})["image"]
    assert torch.equal(out, expected)
    assert (out[0, 0, :4] * 255).round().tolist() == [129.0, 206.0, 126.0, 151.0]
    sample = {"image": torch.rand(3, 480, 640), "depth": torch.ones(1, 480, 640)}
    plain = create_transform("cspn", train=False, requantize=False)(sample)["image"]
    requantized = create_transform("cspn", train=False)(sample)["image"]
    assert torch.equal(requantized, PILRoundTrip()({"image": plain})["image"])


def test_train_recipe_is_reproducible_and_eval_is_deterministic():
    sample = {"image": torch.rand(3, 480, 640), "depth": torch.rand(1, 480, 640) * 10}
    train = create_transform("mff", train=True)
    torch.manual_seed(7)
    first = train(sample)
    torch.manual_seed(7)
    assert torch.equal(train(sample)["image"], first["image"])
    evaluate = create_transform("mff", train=False)
    assert torch.equal(evaluate(sample)["depth"], evaluate(sample)["depth"])


def test_recipe_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown transform recipe 'dorn'"):
        create_transform("dorn", train=True)
    with pytest.raises(ValueError, match=r"recipe 'mff' takes options \[\], got unknown \['size'\]"):
        create_transform("mff", train=True, size=(10, 10))
    with pytest.raises(ValueError, match="variant must be one of"):
        create_transform("bts_nyu", train=True, variant="hu")
    with pytest.raises(ValueError, match="size must be a positive int or"):
        create_transform("simple", train=False, size=(0, 5))
    with pytest.raises(ValueError, match="dav2 size=500: expected a multiple of the patch size 14"):
        create_transform("dav2", train=True, size=500)


@pytest.mark.parametrize(("recipe", "factor"), [("mff", 0.5), ("bts_nyu", 1.0), ("cspn", 0.5), ("simple", 1.0)])
def test_eval_recipes_keep_the_focal_length_consistent(recipe, factor):
    sample = {"image": torch.rand(3, 480, 640), "depth": torch.ones(1, 480, 640), "focal": 518.8579}
    assert create_transform(recipe, train=False)(sample)["focal"] == pytest.approx(518.8579 * factor)
