"""NYU Depth V2 readers on tiny files written in each real layout, the real sync frames and the real split lists."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from _data_writers import random_rgb, write_image
from PIL import Image

from imde.data import create

# --- BTS sync layout ---------------------------------------------------------------------------------------------


def test_nyu_bts_reads_metric_depth_to_the_millimetre(nyu_sync):
    root, list_file, depths = nyu_sync
    dataset = create("nyu_bts", root, split="test", list_file=list_file)
    assert len(dataset) == 2
    for index, (name, mm) in enumerate(depths.items()):
        sample = dataset[index]
        assert sample["name"] == name
        assert sample["focal"] == pytest.approx(518.8579)
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 6, 8)
        assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
        assert sample["depth"].dtype == torch.float32 and sample["depth"].shape == (1, 6, 8)
        np.testing.assert_allclose(sample["depth"][0].numpy(), mm / 1000.0, atol=1e-6)
        assert float(sample["depth"][0, 0, 0]) == 0.0  # holes stay 0


def test_nyu_bts_image_is_the_file_untouched(tmp_path):
    rgb = random_rgb(5, 7, 3)
    write_image(tmp_path / "s" / "rgb_00001.png", rgb)
    write_image(tmp_path / "s" / "sync_depth_00001.png", np.full((5, 7), 2500, np.uint16))
    (tmp_path / "l.txt").write_text("s/rgb_00001.png s/sync_depth_00001.png 518.8579\n")
    sample = create("nyu_bts", tmp_path, list_file=tmp_path / "l.txt")[0]
    np.testing.assert_array_equal((sample["image"] * 255).round().byte().permute(1, 2, 0).numpy(), rgb)


def test_missing_list_says_which_list_and_where(tmp_path):
    with pytest.raises(ValueError, match="nyudepthv2_test_files_with_gt.txt.*train_test_inputs"):
        create("nyu_bts", tmp_path, split="test")
    with pytest.raises(ValueError, match="nyu2_train.csv"):
        create("nyu_hu_csv", tmp_path)


def test_missing_root_and_missing_listed_file(nyu_sync, tmp_path):
    root, list_file, _ = nyu_sync
    with pytest.raises(FileNotFoundError, match="root="):
        create("nyu_bts", tmp_path / "nowhere", list_file=list_file)
    (root / "office_0001" / "sync_depth_00007.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"line 2: .*sync_depth_00007.png not found"):
        create("nyu_bts", root, list_file=list_file)
    with pytest.warns(UserWarning, match="skipped 1 line"):
        dataset = create("nyu_bts", root, list_file=list_file, on_error="skip")
    assert len(dataset) == 1 and dataset.num_skipped == 1


def test_malformed_lines_name_the_line(tmp_path):
    bad = tmp_path / "l.txt"
    bad.write_text("a/rgb_1.jpg a/sync_depth_1.png 518.8\na/rgb_2.jpg\n")
    with pytest.raises(ValueError, match="line 2: expected 2 or 3 fields"):
        create("nyu_bts", tmp_path, list_file=bad, check_files=False)
    bad.write_text("a/rgb_1.jpg a/sync_depth_1.png f518\n")
    with pytest.raises(ValueError, match="line 1: focal length 'f518'"):
        create("nyu_bts", tmp_path, list_file=bad, check_files=False)
    bad.write_text("a/sync_depth_1.png a/rgb_1.jpg 518.8\n")
    with pytest.raises(ValueError, match="line 1: second field should be a depth .png, got 'a/rgb_1.jpg'"):
        create("nyu_bts", tmp_path, list_file=bad, check_files=False)
    bad.write_text("a/rgb_1.bmp a/sync_depth_1.png 518.8\n")
    with pytest.raises(ValueError, match="line 1: first field should be an image"):
        create("nyu_bts", tmp_path, list_file=bad, check_files=False)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.full((6, 8), 100, np.uint8), "stores uint8 values but the declared format expects uint16"),
        (np.full((4, 8), 1000, np.uint16), r"depth size \(4, 8\) does not match image size \(6, 8\)"),
        (np.zeros((6, 8), np.uint16), "no valid pixel"),
        (np.full((6, 8, 3), 100, np.uint8), "single-channel"),
    ],
)
def test_bad_depth_files_raise_naming_file_and_line(nyu_sync, depth, message):
    root, list_file, _ = nyu_sync
    write_image(root / "office_0001" / "sync_depth_00007.png", depth)
    dataset = create("nyu_bts", root, list_file=list_file)
    dataset[0]
    with pytest.raises(ValueError, match=rf"line 2: depth 'office_0001/sync_depth_00007.png'.*{message}"):
        dataset[1]


def test_corrupt_image_raises_or_is_skipped(nyu_sync):
    root, list_file, depths = nyu_sync
    (root / "kitchen_0028b" / "rgb_00003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    dataset = create("nyu_bts", root, list_file=list_file)
    with pytest.raises(ValueError, match="line 1: image 'kitchen_0028b/rgb_00003.jpg': cannot decode"):
        dataset[0]
    skipping = create("nyu_bts", root, list_file=list_file, on_error="skip")
    with pytest.warns(UserWarning, match="skipping unreadable sample"):
        sample = skipping[0]
    assert sample["name"] == "office_0001/rgb_00007.jpg" and skipping.num_load_errors == 1


def test_on_error_must_be_known(nyu_sync):
    root, list_file, _ = nyu_sync
    with pytest.raises(ValueError, match="on_error must be one of"):
        create("nyu_bts", root, list_file=list_file, on_error="ignore")


def test_real_metric3d_sync_frames(fixtures_dir, tmp_path):
    sync = fixtures_dir / "nyu" / "metric3d_sync"
    names = ["00000", "00050", "00100"]
    lines = [f"rgb/rgb_{n}.jpg depth/sync_depth_{n}.png 518.8579" for n in names]
    (tmp_path / "list.txt").write_text("\n".join(lines))
    dataset = create("nyu_bts", sync, split="test", list_file=tmp_path / "list.txt")
    for index, name in enumerate(names):
        sample = dataset[index]
        assert sample["image"].shape == (3, 480, 640) and sample["depth"].shape == (1, 480, 640)
        raw = np.asarray(Image.open(sync / "depth" / f"sync_depth_{name}.png")).astype(np.float64)
        np.testing.assert_allclose(sample["depth"][0].double().numpy(), raw / 1000.0, atol=1e-6)
        valid = float((sample["depth"] > 0).float().mean())
        assert 0.6 < valid < 0.8  # raw Kinect depth: zero borders and holes (README: 67-75 % valid)
        assert 0.5 < float(sample["depth"][sample["depth"] > 0].median()) < 10.0


# --- Hu et al.'s CSV layout ------------------------------------------------------------------------------------------


def _hu_files(root: Path) -> dict[str, np.ndarray]:
    files = {
        "train/room_a/1.jpg": random_rgb(4, 5, 1),
        "train/room_a/1.png": np.array([[0, 51, 102, 153, 255]] * 4, np.uint8),
        "test/room_b/rgb_00002.jpg": random_rgb(4, 5, 2),
        "test/room_b/sync_depth_00002.png": np.array([[0, 1, 1234, 9999, 65535]] * 4, np.uint16),
    }
    for name, array in files.items():
        write_image(root / name, array)
    return files


def test_hu_csv_train_8bit_and_test_16bit(tmp_path):
    _hu_files(tmp_path / "nyuv2")
    (tmp_path / "train.csv").write_text("train/room_a/1.jpg,train/room_a/1.png\n")
    (tmp_path / "test.csv").write_text("test/room_b/rgb_00002.jpg,test/room_b/sync_depth_00002.png\n")
    train = create("nyu_hu_csv", tmp_path / "nyuv2", split="train", list_file=tmp_path / "train.csv")
    np.testing.assert_allclose(train[0]["depth"][0, 0].numpy(), [0.0, 2.0, 4.0, 6.0, 10.0], atol=1e-6)
    test = create("nyu_hu_csv", tmp_path / "nyuv2", split="test", list_file=tmp_path / "test.csv")
    np.testing.assert_allclose(test[0]["depth"][0, 0].numpy(), [0.0, 0.001, 1.234, 9.999, 65.535], atol=1e-6)
    # the declared format is checked against the png's stored type, never guessed from the values
    mislabelled = create("nyu_hu_csv", tmp_path / "nyuv2", split="train", list_file=tmp_path / "test.csv")
    with pytest.raises(ValueError, match=r"line 1: .*depth_format='hu_8bit'.*uint16.*expects uint8"):
        mislabelled[0]
    with pytest.raises(ValueError, match="depth_format must be one of"):
        create("nyu_hu_csv", tmp_path / "nyuv2", list_file=tmp_path / "train.csv", depth_format="auto")


def test_hu_csv_straight_from_the_zip(tmp_path):
    files = _hu_files(tmp_path / "extracted")
    archive = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in files:
            handle.write(tmp_path / "extracted" / name, name)
        handle.writestr("data/nyu2_train.csv", "train/room_a/1.jpg,train/room_a/1.png\n")
    (tmp_path / "extracted" / "train" / "room_a" / "1.png").unlink()  # the zip alone must suffice
    from_member = create("nyu_hu_csv", archive, list_file="data/nyu2_train.csv")
    np.testing.assert_allclose(from_member[0]["depth"][0, 0].numpy(), [0.0, 2.0, 4.0, 6.0, 10.0], atol=1e-6)
    (tmp_path / "list.csv").write_text("train/room_a/1.jpg,train/room_a/1.png\ntrain/room_a/2.jpg,train/room_a/2.png\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: .*nyu_data.zip:train/room_a/2.jpg not found"):
        create("nyu_hu_csv", archive, list_file=tmp_path / "list.csv")
    # pickling (as DataLoader workers do) drops the open handle; the copy reopens the archive itself
    clone = pickle.loads(pickle.dumps(from_member))
    assert clone.images._zip is None
    torch.testing.assert_close(clone[0]["depth"], from_member[0]["depth"])


# --- official labelled .mat ---------------------------------------------------------------------------------------


def _write_labeled_mat(root: Path, num: int = 5, height: int = 6, width: int = 8) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num, height, width, 3), dtype=np.uint8)
    raw = rng.uniform(0.5, 9.5, (num, height, width)).astype(np.float32)
    raw[:, 0, 0] = 0.0
    raw[:, 0, 1] = np.nan
    filled = raw + 0.25
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as handle:  # MATLAB v7.3 order: N x 3 x W x H
        handle["images"] = images.transpose(0, 3, 2, 1)
        handle["rawDepths"] = raw.transpose(0, 2, 1)
        handle["depths"] = filled.transpose(0, 2, 1)
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1.0], [3.0], [5.0]]),
                                           "testNdxs": np.array([[2.0], [4.0]])})
    return images, raw, filled


def test_nyu_mat_official_split_raw_and_filled(tmp_path):
    images, raw, filled = _write_labeled_mat(tmp_path)
    train = create("nyu_mat", tmp_path, split="train")
    test = create("nyu_mat", tmp_path, split="test")
    assert len(train) == 3 and len(test) == 2
    sample = test[1]  # 1-based index 4 -> frame 3
    assert sample["name"] == "00003" and sample["focal"] == pytest.approx(518.8579)
    np.testing.assert_array_equal((sample["image"] * 255).round().byte().permute(1, 2, 0).numpy(), images[3])
    expected = np.nan_to_num(raw[3], nan=0.0)
    np.testing.assert_allclose(sample["depth"][0].numpy(), expected, atol=1e-6)
    assert float(sample["depth"][0, 0, 1]) == 0.0  # NaN -> invalid
    filled_sample = create("nyu_mat", tmp_path, split="test", filled=True)[1]
    np.testing.assert_allclose(filled_sample["depth"][0, 1:].numpy(), filled[3, 1:], atol=1e-6)


def test_nyu_mat_is_lazy_and_picklable(tmp_path):
    _write_labeled_mat(tmp_path)
    dataset = create("nyu_mat", tmp_path, split="train")
    assert dataset._file is None  # nothing opened at construction
    first = dataset[0]
    assert dataset._file is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._file is None
    torch.testing.assert_close(clone[0]["depth"], first["depth"])
    # forked workers inherit the parent's open handle and must reopen the file in their own process
    from torch.utils.data import DataLoader

    batches = list(DataLoader(dataset, batch_size=1, num_workers=2, multiprocessing_context="fork"))
    assert [b["name"][0] for b in batches] == ["00000", "00002", "00004"]
    torch.testing.assert_close(batches[0]["depth"][0], first["depth"])


def test_nyu_mat_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nyu_depth_v2_labeled.mat"):
        create("nyu_mat", tmp_path)
    _write_labeled_mat(tmp_path)
    scipy.io.savemat(tmp_path / "bad_splits.mat", {"trainNdxs": np.array([[0.0], [6.0]]), "testNdxs": [[1.0]]})
    with pytest.raises(ValueError, match=r"trainNdxs must hold 1-based indices in \[1, 5\], got range \[0, 6\]"):
        create("nyu_mat", tmp_path, list_file=tmp_path / "bad_splits.mat")
    with pytest.raises(FileNotFoundError, match="splits.mat"):
        create("nyu_mat", tmp_path, list_file=tmp_path / "nowhere.mat")


# --- the real split lists ---------------------------------------------------------------------------------------------


def test_real_nyu_lists_parse(splits_dir):
    test = create("nyu_bts", "/no/data", split="test", list_file=splits_dir / "bts_nyudepthv2_test_files_with_gt.txt",
                  check_files=False)
    assert len(test) == 654 and test.records[0].image == "bathroom/rgb_00045.jpg"
    train = create("nyu_bts", "/no/data", list_file=splits_dir / "bts_nyudepthv2_train_files_with_gt.txt",
                   check_files=False)
    assert len(train) == 24231 and not train.records[0].image.startswith("/")
    hu = create("nyu_hu_csv", "/no/data", list_file=splits_dir / "hu_nyu2_train.csv", check_files=False)
    assert len(hu) == 50688 and hu.depth_format == "hu_8bit"
    authors = create("nyu_hu_csv", "/no/data", split="test", list_file=splits_dir / "authors_nyuv2_test.csv",
                     check_files=False)
    assert len(authors) == 654 and authors.depth_format == "mm_16bit"
    assert {r.image.split("/", 1)[1] for r in authors.records} == {r.image for r in test.records}


def test_real_frames_through_the_mff_recipe_and_a_dataloader(fixtures_dir, tmp_path):
    from torch.utils.data import DataLoader

    from imde.data.transforms import create_transform

    sync = fixtures_dir / "nyu" / "metric3d_sync"
    lines = [f"rgb/rgb_{n}.jpg depth/sync_depth_{n}.png 518.8579" for n in ("00000", "00050", "00100")]
    (tmp_path / "list.txt").write_text("\n".join(lines))
    dataset = create("nyu_bts", sync, list_file=tmp_path / "list.txt", transform=create_transform("mff", train=True))
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["image"].shape == (3, 3, 228, 304) and batch["depth"].shape == (3, 1, 114, 152)
    assert batch["focal"].tolist() == pytest.approx([518.8579 / 2] * 3) and len(batch["name"]) == 3  # resized 240
    raw = torch.stack([create("nyu_bts", sync, list_file=tmp_path / "list.txt")[i]["depth"] for i in range(3)])
    kept = batch["depth"][batch["depth"] > 0]
    assert bool(torch.isin(kept, raw).all())  # every output depth is a measured value: nearest only
