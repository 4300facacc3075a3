"""Joint image/depth transforms on sample dicts, and the training/evaluation recipes of each model.

A transform maps a sample dict (``image`` float32 ``[3,H,W]``, ``depth`` ``[1,H,W]`` metres, optional
``sparse_depth`` ``[1,H,W]``, ``focal``, ``name``) to a new dict. Geometric transforms move every map together;
depth-like maps are only ever resampled with nearest neighbour (never averaged across invalid pixels) and
padded with 0 (= invalid). Randomness comes from torch's global generator, so ``torch.manual_seed`` (and the
per-worker seeding of ``DataLoader``) makes it reproducible.

Recipes (``create_transform``), following ``models-and-data.md`` Sec. 5 and 7 (the paper authors' code):

- ``mff`` train: resize shorter side 240, flip, rotate U(-5, 5) deg (nearest), centre crop 228x304, depth to
  114x152 (nearest), PCA lighting (std 0.1), ColorJitter(0.4, 0.4, 0.4), ImageNet normalisation.
  eval: resize 240, centre crop 228x304, normalise (depth stays 228x304).
- ``bts_nyu`` train (authors): centre crop 427x565, rotate U(-2.5, 2.5) deg nearest, random crop 416x544, flip,
  ColorJitter(0.4, 0.4, 0.4), normalise. ``variant="bts"``: BTS's fixed crop (rows 45:472, cols 43:608),
  bilinear image rotation, random crop, flip, BTS gamma/brightness/colour augmentation (p = 0.5).
  eval: full frame, normalise.
- ``bts_kitti`` train (authors): KB crop, rotate U(-2.5, 2.5) deg nearest, random crop 352x704, flip, ColorJitter,
  normalise; ``variant="bts"``: rotate 1 deg (bilinear image), BTS augmentation with brightness U(0.9, 1.1).
  eval: KB crop, normalise.
- ``cspn`` train: scale s ~ U(1, 1.5): resize to 240 s (depth / s), rotate U(-5, 5) deg nearest, ColorJitter,
  centre crop 228x304, flip, sparse depth (Bernoulli, 500 points per 228x304 image), normalise, then CSPN's
  ``ToPILImage`` / ``ToTensor`` round trip of the normalised image (``requantize=False`` leaves it out).
  eval: resize 240, centre crop 228x304, sparse depth, normalise, the same round trip.
- ``dav2`` (Depth Anything V2's metric fine-tuning, ``metric_depth/train.py``): train: resize the shorter side to
  ``size`` (518), random ``size`` x ``size`` crop, flip, normalise. eval: resize the shorter side to ``size``,
  centre crop to multiples of the 14-pixel patch, normalise (the release resizes the longer side up to a multiple
  of 14 instead of cropping).
- ``simple``: optional resize to ``size=(H, W)``, flip when training, normalise (the rendered demo data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from imde.core.crops import kb_crop_box
from imde.utils.optional import require

TF = require("torchvision.transforms.functional", extra="data")
_TorchColorJitter = require("torchvision.transforms", extra="data").ColorJitter
InterpolationMode = require("torchvision.transforms", extra="data").InterpolationMode

Sample = dict[str, Any]
Size = int | tuple[int, int]

IMAGE_KEYS = ("image",)
DEPTH_KEYS = ("depth", "sparse_depth", "mask")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet RGB principal components (the "Lighting" augmentation of AlexNet, as used by Hu et al.).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _pair(size: Size, argument: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(not isinstance(v, int) or v <= 0 for v in pair):
        raise ValueError(f"{argument} must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


def _spatial_keys(sample: Sample) -> tuple[list[str], list[str]]:
    """The image-like and depth-like tensor keys present in ``sample``."""
    return [k for k in IMAGE_KEYS if k in sample], [k for k in DEPTH_KEYS if k in sample]


def _map(sample: Sample, image_fn: Callable[[torch.Tensor], torch.Tensor],
         depth_fn: Callable[[torch.Tensor], torch.Tensor]) -> Sample:
    """Apply ``image_fn`` to the image-like maps and ``depth_fn`` to the depth-like maps of a copy of ``sample``."""
    images, depths = _spatial_keys(sample)
    out = dict(sample)
    for key in images:
        out[key] = image_fn(sample[key])
    for key in depths:
        out[key] = depth_fn(sample[key])
    return out


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class Resize:
    """Resize image (bilinear, antialiased) and depth maps (nearest) to ``size``; ``focal`` scales with the width.

    Depth takes the source pixel under each output pixel's centre (``nearest-exact``), as PIL's ``NEAREST`` in
    the original loaders does; torch's ``nearest`` would take the one under its top-left corner, half a source
    pixel off (for 228x304 -> 114x152: rows ``2i`` instead of PIL's ``2i + 1``).

    Args:
        size: ``(H, W)``, or an int for the shorter side (aspect ratio kept, as torchvision does).
    """

    def __init__(self, size: Size) -> None:
        if isinstance(size, int) and size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = [size] if isinstance(size, int) else list(_pair(size, "size"))

    def __call__(self, sample: Sample) -> Sample:
        out = _map(
            sample,
            lambda x: TF.resize(x, self.size, InterpolationMode.BILINEAR, antialias=True),
            lambda x: TF.resize(x, self.size, InterpolationMode.NEAREST_EXACT),
        )
        if "focal" in sample:
            key = "image" if "image" in sample else "depth"
            out["focal"] = float(sample["focal"]) * out[key].shape[-1] / sample[key].shape[-1]
        return out


class DepthResize:
    """Resize only the depth maps (nearest, centre-aligned as :class:`Resize`), e.g. to the 114x152 output of MFF."""

    def __init__(self, size: Size) -> None:
        self.size = list(_pair(size, "size"))

    def __call__(self, sample: Sample) -> Sample:
        return _map(sample, lambda x: x, lambda x: TF.resize(x, self.size, InterpolationMode.NEAREST_EXACT))


class RandomScale:
    """CSPN's scale augmentation: resize the shorter side to ``base * s``, s ~ U(low, high), and divide depth by s.

    Dividing by s keeps the scene geometrically consistent: an image magnified by s looks s times closer at the
    original focal length, so ``focal`` is left as it was.
    """

    def __init__(self, low: float = 1.0, high: float = 1.5, base: int = 240) -> None:
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got ({low}, {high})")
        self.low, self.high, self.base = low, high, base

    def __call__(self, sample: Sample) -> Sample:
        scale = _uniform(self.low, self.high)
        out = Resize(int(round(self.base * scale)))(sample)
        if "focal" in sample:
            out["focal"] = sample["focal"]
        for key in _spatial_keys(out)[1]:
            if key != "mask":
                out[key] = out[key] / scale
        return out


class RandomHorizontalFlip:
    """Flip all maps left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if _uniform(0.0, 1.0) >= self.p:
            return sample
        return _map(sample, TF.hflip, TF.hflip)


class RandomRotate:
    """Rotate all maps by an angle ~ U(-degrees, degrees) about the centre, filling with 0.

    Depth-like maps always use nearest neighbour; the image uses ``image_interpolation`` ("nearest" as in the
    authors' MFF/BTS code, "bilinear" as in BTS's own code).
    """

    def __init__(self, degrees: float, image_interpolation: str = "nearest") -> None:
        if degrees < 0:
            raise ValueError(f"degrees must be >= 0, got {degrees}")
        modes = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}
        if image_interpolation not in modes:
            raise ValueError(f"image_interpolation must be one of {tuple(modes)}, got {image_interpolation!r}")
        self.degrees = degrees
        self.image_mode = modes[image_interpolation]

    def __call__(self, sample: Sample) -> Sample:
        angle = _uniform(-self.degrees, self.degrees)
        return _map(
            sample,
            lambda x: TF.rotate(x, angle, self.image_mode, fill=[0.0] * x.shape[0]),
            lambda x: TF.rotate(x, angle, InterpolationMode.NEAREST, fill=[0.0]),
        )


def _crop_all(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    crop = lambda x: x[..., top:top + height, left:left + width]  # noqa: E731
    return _map(sample, crop, crop)


def _check_fits(sample: Sample, height: int, width: int, what: str) -> tuple[int, int]:
    frame_h, frame_w = sample["image"].shape[-2:] if "image" in sample else sample["depth"].shape[-2:]
    if height > frame_h or width > frame_w:
        raise ValueError(f"{what}: crop {height}x{width} is larger than the sample {frame_h}x{frame_w}")
    return frame_h, frame_w


class CenterCrop:
    """Crop the centre ``size`` of all maps (offsets rounded as torchvision does)."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size, "size")

    def __call__(self, sample: Sample) -> Sample:
        height, width = self.size
        frame_h, frame_w = _check_fits(sample, height, width, "CenterCrop")
        top, left = int(round((frame_h - height) / 2.0)), int(round((frame_w - width) / 2.0))
        return _crop_all(sample, top, left, height, width)


class CropToMultiple:
    """Centre-crop all maps to the largest ``H`` and ``W`` that are multiples of ``multiple`` (a ViT's patch)."""

    def __init__(self, multiple: int) -> None:
        if multiple <= 0:
            raise ValueError(f"multiple must be positive, got {multiple}")
        self.multiple = multiple

    def __call__(self, sample: Sample) -> Sample:
        key = "image" if "image" in sample else "depth"
        frame_h, frame_w = sample[key].shape[-2:]
        size = (frame_h // self.multiple * self.multiple, frame_w // self.multiple * self.multiple)
        if min(size) == 0:
            raise ValueError(f"CropToMultiple: a {frame_h}x{frame_w} frame is smaller than {self.multiple} pixels")
        return CenterCrop(size)(sample)


class FixedCrop:
    """Crop the box ``(top, left, height, width)`` of all maps (BTS's NYU crop: ``(45, 43, 427, 565)``)."""

    def __init__(self, top: int, left: int, height: int, width: int) -> None:
        self.box = (top, left, height, width)

    def __call__(self, sample: Sample) -> Sample:
        top, left, height, width = self.box
        _check_fits(sample, top + height, left + width, "FixedCrop")
        return _crop_all(sample, top, left, height, width)


class RandomCrop:
    """Crop a random ``size`` window (same window for all maps)."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size, "size")

    def __call__(self, sample: Sample) -> Sample:
        height, width = self.size
        frame_h, frame_w = _check_fits(sample, height, width, "RandomCrop")
        top = int(torch.randint(0, frame_h - height + 1, ()))
        left = int(torch.randint(0, frame_w - width + 1, ()))
        return _crop_all(sample, top, left, height, width)


class KBCrop:
    """BTS's KITTI crop: bottom 352 rows, centred 1216 columns (see :func:`imde.core.crops.kb_crop_box`)."""

    def __call__(self, sample: Sample) -> Sample:
        frame_h, frame_w = sample["image"].shape[-2:] if "image" in sample else sample["depth"].shape[-2:]
        top, bottom, left, right = kb_crop_box(frame_h, frame_w)
        return _crop_all(sample, top, left, bottom - top, right - left)


class ColorJitter:
    """torchvision's ``ColorJitter`` on the image only (float image, clamped to [0, 1] by torchvision)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0):
        self.jitter = _TorchColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, sample: Sample) -> Sample:
        return {**sample, "image": self.jitter(sample["image"])}


class Lighting:
    """AlexNet-style PCA lighting (Hu et al.): add ``eigvec @ (alpha * eigval)`` per channel, alpha ~ N(0, std^2).

    Applied to the image in [0, 1] (after ToTensor, before ColorJitter and normalisation), not clamped.
    """

    def __init__(self, alpha_std: float = 0.1) -> None:
        self.alpha_std = alpha_std
        self.eigval = torch.tensor(IMAGENET_EIGVAL)
        self.eigvec = torch.tensor(IMAGENET_EIGVEC)

    def __call__(self, sample: Sample) -> Sample:
        if self.alpha_std == 0:
            return sample
        alpha = torch.randn(3) * self.alpha_std
        shift = self.eigvec @ (alpha * self.eigval)
        image = sample["image"]
        return {**sample, "image": image + shift.to(image).view(3, 1, 1)}


class BTSAugment:
    """BTS's photometric augmentation: with probability ``p``, gamma, brightness and per-channel colour, clipped.

    ``image ** gamma`` with gamma ~ U(0.9, 1.1), times brightness ~ U(*brightness) (NYU (0.75, 1.25), KITTI
    (0.9, 1.1)), times a colour factor ~ U(0.9, 1.1) per channel, then clipped to [0, 1].
    """

    def __init__(self, brightness: tuple[float, float] = (0.75, 1.25), p: float = 0.5) -> None:
        self.brightness = brightness
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if _uniform(0.0, 1.0) >= self.p:
            return sample
        gamma = _uniform(0.9, 1.1)
        bright = _uniform(*self.brightness)
        colour = torch.empty(3).uniform_(0.9, 1.1)
        image = sample["image"].clamp(min=0) ** gamma * bright * colour.to(sample["image"]).view(3, 1, 1)
        return {**sample, "image": image.clamp(0.0, 1.0)}


class Normalize:
    """Normalise the image with a per-channel mean and std (ImageNet's by default)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, sample: Sample) -> Sample:
        return {**sample, "image": TF.normalize(sample["image"], self.mean, self.std)}


class PILRoundTrip:
    """CSPN's input quirk: its loaders pass the normalised image through ``ToPILImage`` and ``ToTensor`` again.

    torchvision's ``ToPILImage`` multiplies a float image by 255 and casts it to uint8, which truncates toward 0
    and wraps modulo 256 (a normalised -0.5 becomes 129 / 255); ``ToTensor`` divides by 255. The released CSPN
    weights were trained and evaluated on these inputs in [0, 1], not on the normalised image
    (``models-and-data.md`` Sec. 5). Written with ``remainder`` so that the wrap does not depend on a
    platform's float-to-uint8 cast.
    """

    def __call__(self, sample: Sample) -> Sample:
        codes = torch.remainder(torch.trunc(sample["image"] * 255), 256)
        return {**sample, "image": codes / 255}


class SparseDepthSample:
    """CSPN's sparse depth input: keep each depth pixel with probability p (Bernoulli), others 0 -> ``sparse_depth``.

    Args:
        num_samples: expected number of kept points.
        reference: ``"image"`` (CSPN's rule): p = num_samples / (H W), so about ``num_samples`` times the valid
            fraction are kept; ``"valid"``: p = num_samples / (number of valid pixels), about ``num_samples`` kept.
    """

    def __init__(self, num_samples: int = 500, reference: str = "image") -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if reference not in ("image", "valid"):
            raise ValueError(f"reference must be 'image' or 'valid', got {reference!r}")
        self.num_samples, self.reference = num_samples, reference

    def __call__(self, sample: Sample) -> Sample:
        depth = sample["depth"]
        valid = depth > 0
        population = valid.sum() if self.reference == "valid" else depth[0].numel()
        prob = min(1.0, self.num_samples / max(int(population), 1))
        keep = torch.rand(depth.shape, device=depth.device) < prob
        return {**sample, "sparse_depth": torch.where(keep & valid, depth, torch.zeros_like(depth))}


MFF_INPUT = (228, 304)
MFF_OUTPUT = (114, 152)
BTS_NYU_CROP = (416, 544)
BTS_KITTI_CROP = (352, 704)
VARIANTS = ("authors", "bts")


def _mff(train: bool) -> list[Callable[[Sample], Sample]]:
    if not train:
        return [Resize(240), CenterCrop(MFF_INPUT), Normalize()]
    return [Resize(240), RandomHorizontalFlip(), RandomRotate(5.0), CenterCrop(MFF_INPUT), DepthResize(MFF_OUTPUT),
            Lighting(0.1), ColorJitter(0.4, 0.4, 0.4), Normalize()]


def _bts_nyu(train: bool, variant: str = "authors") -> list[Callable[[Sample], Sample]]:
    if not train:
        return [Normalize()]
    if variant == "bts":
        return [FixedCrop(45, 43, 427, 565), RandomRotate(2.5, "bilinear"), RandomCrop(BTS_NYU_CROP),
                RandomHorizontalFlip(), BTSAugment((0.75, 1.25)), Normalize()]
    return [CenterCrop((427, 565)), RandomRotate(2.5), RandomCrop(BTS_NYU_CROP), RandomHorizontalFlip(),
            ColorJitter(0.4, 0.4, 0.4), Normalize()]


def _bts_kitti(train: bool, variant: str = "authors") -> list[Callable[[Sample], Sample]]:
    if not train:
        return [KBCrop(), Normalize()]
    if variant == "bts":
        return [KBCrop(), RandomRotate(1.0, "bilinear"), RandomCrop(BTS_KITTI_CROP), RandomHorizontalFlip(),
                BTSAugment((0.9, 1.1)), Normalize()]
    return [KBCrop(), RandomRotate(2.5), RandomCrop(BTS_KITTI_CROP), RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4),
            Normalize()]


def _cspn(train: bool, num_samples: int = 500, requantize: bool = True) -> list[Callable[[Sample], Sample]]:
    per_image = [SparseDepthSample(num_samples), Normalize(), *([PILRoundTrip()] if requantize else [])]
    if not train:
        return [Resize(240), CenterCrop(MFF_INPUT), *per_image]
    return [RandomScale(1.0, 1.5, 240), RandomRotate(5.0), ColorJitter(0.4, 0.4, 0.4), CenterCrop(MFF_INPUT),
            RandomHorizontalFlip(), *per_image]


DAV2_SIZE = 518  # Depth Anything V2's training and evaluation size (37 patches of 14)
DAV2_PATCH = 14


def _dav2(train: bool, size: int = DAV2_SIZE) -> list[Callable[[Sample], Sample]]:
    if size % DAV2_PATCH:
        raise ValueError(f"dav2 size={size}: expected a multiple of the patch size {DAV2_PATCH}")
    if not train:
        return [Resize(size), CropToMultiple(DAV2_PATCH), Normalize()]
    return [Resize(size), RandomCrop((size, size)), RandomHorizontalFlip(), Normalize()]


def _simple(train: bool, size: Size | None = None) -> list[Callable[[Sample], Sample]]:
    resize = [Resize(_pair(size, "size"))] if size is not None else []
    return [*resize, *([RandomHorizontalFlip()] if train else []), Normalize()]


# recipe -> (builder of the steps, accepted keyword options)
_RECIPES: dict[str, tuple[Callable[..., list[Callable[[Sample], Sample]]], set[str]]] = {
    "mff": (_mff, set()),
    "bts_nyu": (_bts_nyu, {"variant"}),
    "bts_kitti": (_bts_kitti, {"variant"}),
    "cspn": (_cspn, {"num_samples", "requantize"}),
    "dav2": (_dav2, {"size"}),
    "simple": (_simple, {"size"}),
}


def create_transform(recipe: str, train: bool, **kw: Any) -> Compose:
    """The training or evaluation transform of a model, with ImageNet normalisation (see module docs).

    Args:
        recipe: one of ``mff``, ``bts_nyu``, ``bts_kitti``, ``cspn``, ``dav2``, ``simple``.
        train: training augmentation (``True``) or evaluation preprocessing (``False``).
        **kw: ``variant="authors"|"bts"`` for the BTS recipes; ``num_samples`` (500) and ``requantize``
            (``True``: CSPN's ``ToPILImage`` round trip after normalisation, :class:`PILRoundTrip`) for ``cspn``;
            ``size=(H, W)`` (optional) for ``simple``; ``size`` (518, a multiple of 14) for ``dav2``.
    """
    if recipe not in _RECIPES:
        raise ValueError(f"unknown transform recipe {recipe!r}; choose one of {tuple(_RECIPES)}")
    build, allowed = _RECIPES[recipe]
    unknown = set(kw) - allowed
    if unknown:
        raise ValueError(f"recipe {recipe!r} takes options {sorted(allowed)}, got unknown {sorted(unknown)}")
    if kw.get("variant", "authors") not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {kw['variant']!r}")
    return Compose(build(train, **kw))
