"""KITTI, Eigen split, with the improved ("annotated") ground truth of Uhrig et al.

Images come from the raw data (``<date>/<drive>_sync/image_02/data/<frame>.png`` under ``root``), depth from
the annotated depth (``<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png`` under ``gt_root``, uint16,
metres = v / 256, 0 = no measurement). Lists are BTS's ``eigen_{train,test}_files_with_gt.txt`` (depth paths
without date prefix) or the paper authors' variant whose depth paths start with ``<date>/``; lines whose depth
is ``None`` (45 in BTS's 697-line test list) are skipped and counted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from imde.data._io import FileSource, decode_depth_png, read_list
from imde.data._listed import ListedDataset, Record, Transform, make_record, require_list
from imde.data.nyu import check_split

KITTI_DEPTH_SCALE = 1.0 / 256.0
KITTI_FOCALS: dict[str, float] = {
    "2011_09_26": 721.5377,
    "2011_09_28": 707.0493,
    "2011_09_29": 718.3351,
    "2011_09_30": 707.0912,
    "2011_10_03": 718.856,
}
"""Focal length (pixels) of the rectified colour cameras per recording date (P_rect_02[0, 0])."""
CALIB_FILE = "calib_cam_to_cam.txt"
# Where KITTI's data_depth_annotated keeps the drives when not moved up as BTS's instructions do.
_GT_SUBFOLDERS = ("", "train/", "val/")
_DATE = re.compile(r"^\d{4}_\d{2}_\d{2}$")


def read_calib_focal(path: str | os.PathLike[str], camera: str = "02") -> float:
    """Focal length (pixels) ``P_rect_<camera>[0, 0]`` from a KITTI ``calib_cam_to_cam.txt``."""
    key = f"P_rect_{camera}:"
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if key in line:
            values = line.split(key, 1)[1].split()
            if len(values) != 12:
                raise ValueError(f"{path}, line {number}: {key} should hold 12 numbers, got {len(values)}")
            return float(values[0])
    raise ValueError(f"{path}: no {key} line")


class KittiEigen(ListedDataset):
    """KITTI Eigen split: raw RGB frames and annotated depth, following a BTS-format list.

    Args:
        root: the KITTI raw data folder (holding ``<date>/<drive>_sync/image_02/data/``).
        split: ``"train"`` or ``"test"`` (only checked: the list decides the samples).
        list_file: BTS's ``eigen_train_files_with_gt.txt`` / ``eigen_test_files_with_gt.txt`` or the authors'
            ``eigen_test_files_with_gt_652.txt``.
        transform: joint sample transform.
        gt_root: folder of the annotated depth (``data_depth_annotated``); default ``root``. Depth paths are
            looked up there, then under its ``train/`` and ``val/`` subfolders (KITTI's own layout).
        on_error: ``"raise"`` or ``"skip"``.
        check_files: check at construction that every listed file exists. With ``False`` only the list is parsed
            (no file is touched) and depth paths are used as written.

    The focal length is the list's third column; without one it is read from ``<root>/<date>/calib_cam_to_cam.txt``
    when present, else taken from :data:`KITTI_FOCALS`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        list_file: str | None = None,
        transform: Transform | None = None,
        gt_root: str | os.PathLike[str] | None = None,
        on_error: str = "raise",
        check_files: bool = True,
    ) -> None:
        check_split(split)
        list_file = require_list(
            list_file,
            "kitti_eigen",
            "BTS's eigen_train_files_with_gt.txt / eigen_test_files_with_gt.txt "
            "(github.com/cleinc/bts, folder train_test_inputs/) or the paper authors' eigen_test_files_with_gt_652.txt",
        )
        self.root = Path(root)
        rows = read_list(list_file, (2, 3))
        images = FileSource(root, must_exist=check_files)
        depths = images if gt_root is None else FileSource(gt_root, "gt_root", must_exist=check_files)
        none_lines = [line for line, fields in rows if fields[1] == "None"]
        records = [self._record(line, fields, list_file) for line, fields in rows if fields[1] != "None"]
        if check_files:
            records = [self._locate_depth(record, depths) for record in records]
        skipped = [f"list {list_file!r}, line {line}: no ground truth (depth None)" for line in none_lines]
        super().__init__(records, images, depths, list_file, transform, on_error, check_files, skipped)

    def _record(self, line: int, fields: list[str], list_file: str) -> Record:
        record = make_record(line, fields, list_file, default_focal=None)
        if record.focal is not None:
            return record
        date = record.image.split("/", 1)[0]
        if not _DATE.match(date):
            raise ValueError(
                f"list {list_file!r}, line {line}: no focal column and the image path {record.image!r} does not "
                "start with a <date>/ folder to look it up"
            )
        calib = self.root / date / CALIB_FILE
        camera = "03" if "/image_03/" in record.image else "02"
        if calib.is_file():
            focal = read_calib_focal(calib, camera)
        elif date in KITTI_FOCALS and camera == "02":
            focal = KITTI_FOCALS[date]
        else:
            raise ValueError(f"list {list_file!r}, line {line}: no focal column and {calib} not found")
        return Record(line=record.line, image=record.image, depth=record.depth, focal=focal)

    @staticmethod
    def _locate_depth(record: Record, depths: FileSource) -> Record:
        for prefix in _GT_SUBFOLDERS:
            if depths.exists(prefix + record.depth):
                return Record(record.line, record.image, prefix + record.depth, record.focal)
        return record

    def decode_depth(self, data: bytes, where: str) -> torch.Tensor:
        """uint16 png, metres = v / 256."""
        return decode_depth_png(data, where, np.uint16, KITTI_DEPTH_SCALE)

