"""Evaluation crops and the KB crop against hand-computed boxes."""

from __future__ import annotations

import pytest
import torch

from imde.data import crop_box, crop_mask, kb_crop


def test_eigen_nyu_is_the_standard_box():
    mask = crop_mask("eigen_nyu", 480, 640)
    assert mask.dtype == torch.bool and mask.shape == (480, 640)
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    assert (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) == (45, 471, 41, 601)
    assert int(mask.sum()) == 426 * 560
    # other sizes use the same fractions: half resolution -> about half the box
    assert crop_box("eigen_nyu", 240, 320) == (22, 236, 20, 300)


@pytest.mark.parametrize(
    ("name", "height", "width", "box"),
    [
        # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44, int(0.96405229*1242)=1197
        ("garg", 375, 1242, (153, 371, 44, 1197)),
        ("garg", 352, 1216, (143, 349, 43, 1172)),
        # int(0.3324324*375)=124, int(0.91351351*375)=342
        ("eigen_kitti", 375, 1242, (124, 342, 44, 1197)),
        ("none", 5, 7, (0, 5, 0, 7)),
    ],
)
def test_kitti_crops_by_hand(name, height, width, box):
    assert crop_box(name, height, width) == box
    mask = crop_mask(name, height, width)
    top, bottom, left, right = box
    assert int(mask.sum()) == (bottom - top) * (right - left)
    assert bool(mask[top, left]) and bool(mask[bottom - 1, right - 1])
    assert not bool(mask[:top].any()) and not bool(mask[:, right:].any())


def test_kb_crop_takes_bottom_rows_and_centred_columns():
    frame = torch.arange(375 * 1242).reshape(1, 375, 1242)
    cropped = kb_crop(frame)
    assert cropped.shape == (1, 352, 1216)
    assert int(cropped[0, 0, 0]) == 23 * 1242 + 13  # top = 375 - 352, left = (1242 - 1216) // 2
    assert int(cropped[0, -1, -1]) == 374 * 1242 + 1228


def test_bad_crop_arguments():
    with pytest.raises(ValueError, match="crop name must be one of"):
        crop_mask("eigen", 480, 640)
    with pytest.raises(ValueError, match="positive"):
        crop_mask("garg", 0, 640)
    with pytest.raises(ValueError, match="KB crop needs a frame of at least 352 x 1216, got 300 x 1242"):
        kb_crop(torch.zeros(1, 300, 1242))
