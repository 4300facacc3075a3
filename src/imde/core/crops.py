"""The standard evaluation crops of NYU and KITTI, defined once for the loaders, transforms and metrics.

- ``eigen_nyu``: rows 45:471, cols 41:601 of a 480 x 640 NYU frame (BTS's NYU evaluation); other sizes
  use the same fractions of the height and width.
- ``garg``: KITTI, rows ``int(0.40810811 H) : int(0.99189189 H)``, cols ``int(0.03594771 W) : int(0.96405229 W)``.
- ``eigen_kitti``: KITTI, rows ``int(0.3324324 H) : int(0.91351351 H)``, cols ``int(0.0359477 W) : int(0.96405229 W)``.
- ``none``: the whole frame.

The KB crop (BTS's KITTI input: bottom 352 rows, centred 1216 columns) crops the frame itself, see
:func:`kb_crop_box`.
"""

from __future__ import annotations

import torch

NYU_EIGEN_BOX = (45, 471, 41, 601)
"""(top, bottom, left, right) of the Eigen crop on a 480 x 640 NYU frame."""
NYU_FRAME = (480, 640)

# (top, bottom, left, right) as fractions of (H, H, W, W)
KITTI_CROP_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen_kitti": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
CROP_NAMES = ("none", "eigen_nyu", "eigen_kitti", "garg")

KB_CROP_SIZE = (352, 1216)
"""(height, width) of the KB crop BTS feeds its KITTI model."""


def crop_box(name: str, height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the crop ``name`` on an ``height x width`` frame (bottom/right exclusive).

    Args:
        name: one of ``none``, ``eigen_nyu``, ``eigen_kitti``, ``garg``.
        height: frame height in pixels.
        width: frame width in pixels.

    >>> crop_box("eigen_nyu", 480, 640)
    (45, 471, 41, 601)
    >>> crop_box("garg", 352, 1216)
    (143, 349, 43, 1172)
    """
    if name not in CROP_NAMES:
        raise ValueError(f"crop name must be one of {CROP_NAMES}, got {name!r}")
    if height <= 0 or width <= 0:
        raise ValueError(f"crop {name!r}: height and width must be positive, got {height} x {width}")
    if name == "none":
        return 0, height, 0, width
    if name == "eigen_nyu":
        if (height, width) == NYU_FRAME:
            return NYU_EIGEN_BOX
        top, bottom, left, right = NYU_EIGEN_BOX
        fractions = (top / NYU_FRAME[0], bottom / NYU_FRAME[0], left / NYU_FRAME[1], right / NYU_FRAME[1])
        return (round(fractions[0] * height), round(fractions[1] * height),
                round(fractions[2] * width), round(fractions[3] * width))
    top, bottom, left, right = KITTI_CROP_FRACTIONS[name]
    return int(top * height), int(bottom * height), int(left * width), int(right * width)


def crop_mask(name: str, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask ``[height, width]``, ``True`` inside the evaluation crop ``name`` (see :func:`crop_box`).

    >>> crop_mask("eigen_nyu", 480, 640).sum().item() == (471 - 45) * (601 - 41)
    True
    """
    top, bottom, left, right = crop_box(name, height, width)
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask


def kb_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of BTS's KB crop: the bottom 352 rows and the centred 1216 columns.

    >>> kb_crop_box(375, 1242)
    (23, 375, 13, 1229)
    """
    crop_h, crop_w = KB_CROP_SIZE
    if height < crop_h or width < crop_w:
        raise ValueError(f"KB crop needs a frame of at least {crop_h} x {crop_w}, got {height} x {width}")
    top, left = height - crop_h, (width - crop_w) // 2
    return top, height, left, left + crop_w


def kb_crop(tensor: torch.Tensor) -> torch.Tensor:
    """Apply the KB crop to the last two dimensions of ``tensor`` (``[..., H, W]``)."""
    top, bottom, left, right = kb_crop_box(*tensor.shape[-2:])
    return tensor[..., top:bottom, left:right]
