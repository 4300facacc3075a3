"""NYU Depth V2 in three of the layouts the paper's models were trained and evaluated on (CSPN's per-frame
HDF5 files: :mod:`imde.data.nyu_h5`).

- :class:`NYUHuCSV`: Hu et al.'s CSV (``image,depth`` paths), folder or zip; 8-bit training depth, 16-bit mm test depth.
- :class:`NYUBTS`: BTS's "sync" extraction (``rgb_XXXXX.jpg``, ``sync_depth_XXXXX.png`` in mm) with its file lists.
- :class:`NYUMat`: the official ``nyu_depth_v2_labeled.mat`` (HDF5 v7.3) with ``splits.mat``, streamed lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from imde.data._io import FileSource, decode_depth_png, parse_list_text, read_list, rgb_array_to_tensor
from imde.data._listed import ListedDataset, Sample, Transform, check_pair, make_record, require_list
from imde.utils.optional import require

NYU_FOCAL = 518.8579
"""Focal length (pixels) of the NYU Depth V2 Kinect colour camera, as used by BTS and the authors."""

# name -> (stored integer type, metres per stored unit)
NYU_DEPTH_FORMATS: dict[str, tuple[type[np.integer], float]] = {
    "hu_8bit": (np.uint8, 10.0 / 255.0),
    "mm_16bit": (np.uint16, 1.0 / 1000.0),
}
SPLITS = ("train", "test")


def check_split(split: str) -> str:
    """Validate the ``split`` argument."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


class NYUHuCSV(ListedDataset):
    """NYU Depth V2 as distributed by Hu et al. (and the paper's authors): a CSV of ``image,depth`` paths.

    Lines are ``train/<scene>/<n>.jpg,train/<scene>/<n>.png`` (no header), paths relative to ``root``, which
    may be the extracted folder or the zip archive itself. The depth scale is explicit: ``"hu_8bit"``
    (metres = v / 255 * 10, the training pngs) or ``"mm_16bit"`` (metres = v / 1000, the test pngs); the png's
    stored type must match the declared format.

    Args:
        root: folder or ``.zip`` holding the files named in the CSV.
        split: ``"train"`` or ``"test"``; picks the default ``depth_format``.
        list_file: the CSV, a path on disk or, when ``root`` is a zip, a member name inside it.
        transform: joint sample transform.
        depth_format: ``"hu_8bit"`` or ``"mm_16bit"``; default ``"hu_8bit"`` for train, ``"mm_16bit"`` for test.
        on_error: ``"raise"`` or ``"skip"`` (see :class:`~imde.data._listed.ListedDataset`).
        check_files: check at construction that every listed file exists.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        list_file: str | None = None,
        transform: Transform | None = None,
        depth_format: str | None = None,
        on_error: str = "raise",
        check_files: bool = True,
    ) -> None:
        split = check_split(split)
        depth_format = depth_format or ("hu_8bit" if split == "train" else "mm_16bit")
        if depth_format not in NYU_DEPTH_FORMATS:
            raise ValueError(f"depth_format must be one of {tuple(NYU_DEPTH_FORMATS)}, got {depth_format!r}")
        self.depth_format = depth_format
        self.depth_dtype, self.metres_per_unit = NYU_DEPTH_FORMATS[depth_format]
        list_file = require_list(
            list_file,
            "nyu_hu_csv",
            "Hu et al.'s nyu2_train.csv / nyu2_test.csv (in the NYU zip linked from "
            "github.com/JunjH/Revisiting_Single_Depth_Estimation) or the paper authors' dataset/nyuv2/*.csv",
        )
        source = FileSource(root, must_exist=check_files)
        rows = self._read_csv(source, list_file)
        records = [make_record(line, fields, list_file, NYU_FOCAL) for line, fields in rows]
        super().__init__(records, source, source, list_file, transform, on_error, check_files)

    @staticmethod
    def _read_csv(source: FileSource, list_file: str) -> list[tuple[int, list[str]]]:
        if Path(list_file).is_file() or not source.is_zip:
            return read_list(list_file, (2, 3), separator=",")
        where = f"list_file={list_file!r}"
        text = source.read_bytes(list_file, where).decode("utf-8")
        return parse_list_text(text, source.describe(list_file), (2, 3), separator=",")

    def decode_depth(self, data: bytes, where: str) -> torch.Tensor:
        """Depth png in the declared ``depth_format`` -> metres."""
        return decode_depth_png(data, f"{where} (depth_format={self.depth_format!r})", self.depth_dtype,
                                self.metres_per_unit)


class NYUBTS(ListedDataset):
    """NYU Depth V2 in BTS's "sync" layout: ``<scene>/rgb_XXXXX.jpg`` and ``<scene>/sync_depth_XXXXX.png`` (uint16 mm).

    ``list_file`` lines are ``<scene>/rgb_XXXXX.jpg <scene>/sync_depth_XXXXX.png <focal>`` (space-separated; a
    leading ``/`` as in BTS's train list is accepted), paths relative to ``root``.

    Args:
        root: folder (or zip) holding the scene folders.
        split: ``"train"`` or ``"test"`` (only checked: the list decides the samples).
        list_file: BTS's ``nyudepthv2_{train,test}_files_with_gt.txt``.
        transform: joint sample transform.
        on_error: ``"raise"`` or ``"skip"``.
        check_files: check at construction that every listed file exists.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        list_file: str | None = None,
        transform: Transform | None = None,
        on_error: str = "raise",
        check_files: bool = True,
    ) -> None:
        check_split(split)
        list_file = require_list(
            list_file,
            "nyu_bts",
            "BTS's nyudepthv2_train_files_with_gt.txt / nyudepthv2_test_files_with_gt.txt "
            "(github.com/cleinc/bts, folder train_test_inputs/)",
        )
        rows = read_list(list_file, (2, 3))
        records = [make_record(line, fields, list_file, NYU_FOCAL) for line, fields in rows]
        source = FileSource(root, must_exist=check_files)
        super().__init__(records, source, source, list_file, transform, on_error, check_files)

    def decode_depth(self, data: bytes, where: str) -> torch.Tensor:
        """uint16 millimetres -> metres."""
        return decode_depth_png(data, where, np.uint16, 1.0 / 1000.0)


LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
_SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}


class NYUMat(Dataset[Sample]):
    """The official labelled NYU Depth V2 (``nyu_depth_v2_labeled.mat``, HDF5 v7.3) with the official split.

    The 2.8 GB file is never loaded whole: it is opened lazily in each process (each ``DataLoader`` worker)
    and one frame is read per item. In h5py order ``images`` is ``N x 3 x 640 x 480`` uint8 and
    ``rawDepths`` / ``depths`` are ``N x 640 x 480`` metres; each frame is transposed to ``480 x 640``.
    ``splits.mat`` (MATLAB v5) holds the 1-based ``trainNdxs`` (795) and ``testNdxs`` (654).

    Args:
        root: folder holding ``nyu_depth_v2_labeled.mat`` (and ``splits.mat`` unless ``list_file`` is given).
        split: ``"train"`` or ``"test"``.
        list_file: path of ``splits.mat`` if not in ``root``.
        transform: joint sample transform.
        filled: ``False`` (default) reads the raw Kinect depth ``rawDepths`` (holes = 0); ``True`` the in-filled
            ``depths``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        list_file: str | None = None,
        transform: Transform | None = None,
        filled: bool = False,
    ) -> None:
        self.split = check_split(split)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"root={str(root)!r} is not a folder (expected one holding {LABELED_MAT})")
        self.path = root / LABELED_MAT
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} not found (the official labelled NYU Depth V2 file)")
        self.depth_key = "depths" if filled else "rawDepths"
        self.transform = transform
        num_frames = self._check_layout()
        self.indices = _read_split(Path(list_file) if list_file else root / SPLITS_MAT, split, num_frames)
        self._file: Any = None
        self._pid: int | None = None

    def _check_layout(self) -> int:
        h5py = require("h5py", extra="data")

        with h5py.File(self.path, "r") as handle:
            for key in ("images", self.depth_key):
                if key not in handle:
                    raise ValueError(f"{self.path}: dataset {key!r} missing (found {sorted(handle.keys())})")
            images, depths = handle["images"], handle[self.depth_key]
            if images.ndim != 4 or images.shape[1] != 3 or depths.shape != (images.shape[0], *images.shape[2:]):
                raise ValueError(
                    f"{self.path}: expected images N x 3 x W x H and {self.depth_key} N x W x H, "
                    f"got {images.shape} and {depths.shape}"
                )
            return int(images.shape[0])

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _handle(self) -> Any:
        """This process's open ``h5py.File`` (opened on first use)."""
        if self._file is None or self._pid != os.getpid():
            h5py = require("h5py", extra="data")

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        frame = self.indices[index]
        handle = self._handle()
        image = rgb_array_to_tensor(np.asarray(handle["images"][frame]).T)
        depth = torch.from_numpy(np.asarray(handle[self.depth_key][frame], dtype=np.float32).T.copy())
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros(()))
        depth = depth.unsqueeze(0)
        check_pair(image, depth, f"{self.path}: frame {frame} (0-based) of {self.depth_key!r}")
        sample: Sample = {"image": image, "depth": depth, "focal": NYU_FOCAL, "name": f"{frame:05d}"}
        return self.transform(sample) if self.transform is not None else sample


def _read_split(path: Path, split: str, num_frames: int) -> np.ndarray:
    """0-based frame indices of ``split`` from ``splits.mat`` (1-based MATLAB indices in the file)."""
    loadmat = require("scipy.io", extra="data").loadmat

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the official NYU Depth V2 split file splits.mat)")
    key = _SPLIT_KEYS[split]
    content = loadmat(path)
    if key not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise ValueError(f"{path}: variable {key!r} missing (found {found})")
    one_based = np.asarray(content[key]).reshape(-1).astype(np.int64)
    if one_based.size == 0 or one_based.min() < 1 or one_based.max() > num_frames:
        raise ValueError(
            f"{path}: {key} must hold 1-based indices in [1, {num_frames}], "
            f"got range [{one_based.min(initial=0)}, {one_based.max(initial=0)}]"
        )
    return one_based - 1
