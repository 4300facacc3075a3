"""KITTI Eigen reader: tiny raw/annotated layouts, both list variants, the real annotated frames and split lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _data_writers import random_rgb, write_image
from PIL import Image

from imde.data import create, kb_crop
from imde.data.kitti import KITTI_FOCALS, read_calib_focal

DRIVE = "2011_09_26_drive_0001_sync"
IMAGE = f"2011_09_26/{DRIVE}/image_02/data/0000000005.png"
DEPTH = f"{DRIVE}/proj_depth/groundtruth/image_02/0000000005.png"


def _kitti(tmp_path: Path, gt_prefix: str = "") -> tuple[Path, Path, np.ndarray]:
    raw, gt = tmp_path / "raw", tmp_path / "gt"
    write_image(raw / IMAGE, random_rgb(4, 6))
    stored = np.array([[0, 256, 3200, 12345, 20480, 65535]] * 4, np.uint16)
    write_image(gt / gt_prefix / DEPTH, stored)
    return raw, gt, stored


def test_bts_list_depth_in_metres_and_none_lines_counted(tmp_path):
    raw, gt, stored = _kitti(tmp_path)
    lines = [f"{IMAGE} {DEPTH} 721.5377", f"{IMAGE.replace('05.png', '06.png')} None 721.5377"]
    (tmp_path / "test.txt").write_text("\n".join(lines))
    with pytest.warns(UserWarning, match=r"skipped 1 line.*line 2: no ground truth"):
        dataset = create("kitti_eigen", raw, split="test", list_file=tmp_path / "test.txt", gt_root=gt)
    assert len(dataset) == 1 and dataset.num_skipped == 1
    sample = dataset[0]
    np.testing.assert_allclose(sample["depth"][0, 0].numpy(), [0.0, 1.0, 12.5, 48.22265625, 80.0, 255.99609375])
    assert sample["focal"] == pytest.approx(721.5377) and sample["name"] == IMAGE
    assert sample["image"].shape == (3, 4, 6)


def test_authors_variant_with_date_prefix_and_kitti_train_val_folders(tmp_path):
    raw, gt, stored = _kitti(tmp_path, gt_prefix="2011_09_26")
    (tmp_path / "authors.txt").write_text(f"{IMAGE} 2011_09_26/{DEPTH} 721.5377\n")
    sample = create("kitti_eigen", raw, list_file=tmp_path / "authors.txt", gt_root=gt)[0]
    np.testing.assert_allclose(sample["depth"][0].numpy(), stored / 256.0)
    # annotated depth left in KITTI's own train/ and val/ folders is found too
    raw, gt, stored = _kitti(tmp_path / "second", gt_prefix="val")
    (tmp_path / "bts.txt").write_text(f"{IMAGE} {DEPTH} 721.5377\n")
    dataset = create("kitti_eigen", raw, list_file=tmp_path / "bts.txt", gt_root=gt)
    assert dataset.records[0].depth == "val/" + DEPTH
    np.testing.assert_allclose(dataset[0]["depth"][0].numpy(), stored / 256.0)


def test_focal_from_calibration_or_date_table(tmp_path):
    raw, gt, _ = _kitti(tmp_path)
    (tmp_path / "nofocal.txt").write_text(f"{IMAGE} {DEPTH}\n")
    assert create("kitti_eigen", raw, list_file=tmp_path / "nofocal.txt", gt_root=gt)[0]["focal"] == 721.5377
    (raw / "2011_09_26" / "calib_cam_to_cam.txt").write_text(
        "S_rect_02: 1.242000e+03 3.750000e+02\nP_rect_02: 7.0e+02 0 6.0e+02 4.4e+01 0 7.0e+02 1.7e+02 0 0 0 1 0\n"
    )
    assert create("kitti_eigen", raw, list_file=tmp_path / "nofocal.txt", gt_root=gt)[0]["focal"] == 700.0


def test_real_calibration_focal(fixtures_dir):
    calib = fixtures_dir / "kitti" / "sfnd_raw_2011_09_26" / "calib_2011_09_26.txt"
    assert read_calib_focal(calib) == pytest.approx(KITTI_FOCALS["2011_09_26"])


def test_bad_kitti_inputs(tmp_path):
    raw, gt, _ = _kitti(tmp_path)
    with pytest.raises(ValueError, match="eigen_test_files_with_gt.txt.*train_test_inputs"):
        create("kitti_eigen", raw, split="test", gt_root=gt)
    (tmp_path / "l.txt").write_text(f"{IMAGE} {DEPTH} 721.5377\n")
    with pytest.raises(FileNotFoundError, match=r"line 1: .*0000000005.png not found"):
        create("kitti_eigen", raw, list_file=tmp_path / "l.txt")  # depth is not under root
    with pytest.raises(FileNotFoundError, match="gt_root="):
        create("kitti_eigen", raw, list_file=tmp_path / "l.txt", gt_root=tmp_path / "nowhere")
    write_image(gt / DEPTH, np.full((4, 6), 3, np.uint8))
    with pytest.raises(ValueError, match="line 1: depth .*stores uint8 values but the declared format expects uint16"):
        create("kitti_eigen", raw, list_file=tmp_path / "l.txt", gt_root=gt)[0]


def test_real_annotated_frames(fixtures_dir, tmp_path):
    source = fixtures_dir / "kitti" / "metric3d_annotated"
    frames = ["0000000005", "0000000050"]
    lines = []
    for frame in frames:  # lay the two real frames out as KITTI raw + data_depth_annotated
        image = tmp_path / "raw" / "2011_09_26" / DRIVE / "image_02" / "data" / f"{frame}.png"
        depth = tmp_path / "gt" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / f"{frame}.png"
        for src, dst in ((source / "rgb" / f"{frame}.png", image), (source / "depth" / f"{frame}.png", depth)):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
        lines.append(f"{IMAGE.replace('0000000005', frame)} {DEPTH.replace('0000000005', frame)} 721.5377")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    dataset = create("kitti_eigen", tmp_path / "raw", split="test", list_file=tmp_path / "list.txt",
                     gt_root=tmp_path / "gt")
    for index, frame in enumerate(frames):
        sample = dataset[index]
        assert sample["image"].shape == (3, 375, 1242) and sample["depth"].shape == (1, 375, 1242)
        stored = np.asarray(Image.open(source / "depth" / f"{frame}.png")).astype(np.float64)
        np.testing.assert_allclose(sample["depth"][0].double().numpy(), stored / 256.0, atol=1e-6)
        depth = sample["depth"]
        assert 0.1 < float((depth > 0).float().mean()) < 0.3  # README: about 19 % valid
        assert 60.0 < float(depth.max()) < 90.0
        assert kb_crop(depth).shape == (1, 352, 1216)
        # the annotated LiDAR ground truth lies in the lower part of the frame: nothing in the top 40 rows
        assert not bool((depth[:, :40] > 0).any())


def test_real_eigen_lists_parse_without_the_data(splits_dir):
    with pytest.warns(UserWarning, match="skipped 45 line"):
        bts = create("kitti_eigen", "/no/raw", split="test", list_file=splits_dir / "bts_eigen_test_files_with_gt.txt",
                     check_files=False)
    assert len(bts) == 652 and bts.num_skipped == 45
    authors = create("kitti_eigen", "/no/raw", split="test",
                     list_file=splits_dir / "authors_eigen_test_files_with_gt_652.txt", check_files=False)
    assert authors.num_skipped == 0
    assert [r.image for r in authors.records] == [r.image for r in bts.records]
    assert [r.depth for r in authors.records] == [r.image.split("/", 1)[0] + "/" + r.depth for r in bts.records]
    assert {r.focal for r in bts.records} <= set(KITTI_FOCALS.values())
    train = create("kitti_eigen", "/no/raw", list_file=splits_dir / "bts_eigen_train_files_with_gt.txt",
                   check_files=False)
    assert len(train) == 23158 and train.num_skipped == 0
