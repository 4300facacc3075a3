"""NYU as per-frame HDF5 files (CSPN's data): decoding, invalid depth, CSPN's lists, and the error messages."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import imde.data
from imde.data.nyu import NYU_FOCAL
from imde.data.nyu_h5 import NYUH5


def write_frame(path: Path, rgb: np.ndarray, depth: np.ndarray) -> None:
    """One frame in the extraction's layout: ``rgb`` 3 x H x W uint8, ``depth`` H x W float32 metres."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("rgb", data=rgb)
        handle.create_dataset("depth", data=depth)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for rel in ("train/kitchen_0001/00002.h5", "train/kitchen_0001/00001.h5", "train/office_0003/00001.h5",
                "val/official/00005.h5"):
        depth = rng.uniform(0.5, 9.5, (6, 8)).astype(np.float32)
        write_frame(tmp_path / rel, rng.integers(0, 256, (3, 6, 8), dtype=np.uint8), depth)
    return tmp_path


def test_frames_decode_to_the_sample_convention(root: Path) -> None:
    rgb = np.arange(3 * 6 * 8, dtype=np.uint8).reshape(3, 6, 8)
    depth = np.full((6, 8), 2.5, dtype=np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2] = 0.0, np.nan, -1.0
    write_frame(root / "val/official/00005.h5", rgb, depth)
    sample = NYUH5(root, "test")[0]
    assert sample["image"].shape == (3, 6, 8) and sample["depth"].shape == (1, 6, 8)
    # channel c, row y, column x of the stored rgb: not transposed or reordered
    assert torch.equal(sample["image"] * 255, torch.from_numpy(rgb).float())
    assert sample["depth"][0, 0, :3].tolist() == [0.0, 0.0, 0.0]  # 0, NaN and negative depth are invalid
    assert sample["depth"][0, 1:].eq(2.5).all()
    assert sample["focal"] == NYU_FOCAL and sample["name"] == "val/official/00005.h5"


def test_without_a_list_the_split_is_every_file_of_its_folder_sorted(root: Path) -> None:
    train = NYUH5(root, "train")
    assert [s["name"] for s in train] == ["train/kitchen_0001/00001.h5", "train/kitchen_0001/00002.h5",
                                          "train/office_0003/00001.h5"]
    assert len(imde.data.create("nyu_h5", root, "test")) == 1


def test_cspn_lists_with_the_authors_absolute_paths_resolve_against_root(root: Path) -> None:
    listing = root / "nyudepth_hdf5_train.csv"
    listing.write_text("Name\n/mnt/sda1/Dataset/NYU/nyudepthv2/train/office_0003/00001.h5\n\n"
                       "/mnt/sda1/Dataset/NYU/nyudepthv2/train/kitchen_0001/00002.h5\n")
    dataset = NYUH5(root, "train", list_file=listing)
    assert [s["name"] for s in dataset] == ["train/office_0003/00001.h5", "train/kitchen_0001/00002.h5"]
    listing.write_text("Name\n/mnt/x/nyudepthv2/train/office_0003/00009.h5\n")
    with pytest.raises(FileNotFoundError, match=r"nyudepth_hdf5_train\.csv', line 2: .*00009\.h5 not found"):
        NYUH5(root, "train", list_file=listing)
    listing.write_text("/mnt/x/nyudepthv2/train/office_0003/00001.h5\n")
    with pytest.raises(ValueError, match="line 1: expected the header 'Name'"):
        NYUH5(root, "train", list_file=listing)
    listing.write_text("Name\n/mnt/x/other/00001.h5\n")
    with pytest.raises(ValueError, match="line 2: .* no 'train/' or 'val/' folder"):
        NYUH5(root, "train", list_file=listing)


def test_bad_frames_and_roots_are_named(root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        NYUH5(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"no \.h5 file under .*val"):
        NYUH5(root / "train", "test")
    write_frame(root / "val/official/00005.h5", np.zeros((6, 8, 3), dtype=np.uint8), np.ones((6, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected rgb 3 x H x W uint8"):
        NYUH5(root, "test")[0]
    write_frame(root / "val/official/00005.h5", np.zeros((3, 6, 8), dtype=np.uint8), np.ones((5, 8), np.float32))
    with pytest.raises(ValueError, match=r"depth size \(5, 8\) does not match image size \(6, 8\)"):
        NYUH5(root, "test")[0]
