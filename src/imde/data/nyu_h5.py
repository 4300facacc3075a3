"""NYU Depth V2 as HDF5 frames (the "sparse-to-dense" extraction CSPN was trained and evaluated on).

One ``.h5`` file per frame, ``<root>/train/<scene>/<nnnnn>.h5`` (47,584 frames) and
``<root>/val/official/<nnnnn>.h5`` (the 654 official test frames). Each holds ``rgb``, ``(3, H, W)`` uint8,
and ``depth``, ``(H, W)`` float32 metres (``models-and-data.md`` Sec. 6).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from imde.data._io import rgb_array_to_tensor
from imde.data._listed import Sample, Transform, check_pair
from imde.data.nyu import NYU_FOCAL, check_split
from imde.utils.optional import require

SPLIT_FOLDERS = {"train": "train", "test": "val"}
"""Sub-folder of ``root`` holding each split (the extraction calls the test split ``val``)."""
LIST_HEADER = "Name"


class NYUH5(Dataset[Sample]):
    """NYU Depth V2 frames stored one per HDF5 file (``rgb`` ``3 x H x W`` uint8, ``depth`` ``H x W`` metres).

    Without ``list_file`` the split is every ``.h5`` under ``root/train`` or ``root/val``, sorted by path.
    CSPN's lists (``nyudepth_hdf5_{train,val}.csv``: a ``Name`` header line, then one path per line) hold the
    absolute paths of the authors' machine; each is resolved against ``root`` from its ``train/`` or ``val/``
    component on (an existing absolute path is used as it is).

    Args:
        root: the folder holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"test"`` (the ``val`` folder).
        list_file: optional CSPN list (see above).
        transform: joint sample transform.
        check_files: check at construction that every listed file exists.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        list_file: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        check_files: bool = True,
    ) -> None:
        self.split = check_split(split)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"root={str(self.root)!r} is not a folder (expected one holding train/ and val/)")
        self.transform = transform
        if list_file is None:
            folder = self.root / SPLIT_FOLDERS[split]
            self.files = sorted(folder.rglob("*.h5"))
            if not self.files:
                raise FileNotFoundError(f"no .h5 file under {folder} (split {split!r})")
            self.where = [str(path) for path in self.files]
        else:
            self.files, self.where = self._read_list(Path(list_file))
            if check_files:
                for path, where in zip(self.files, self.where, strict=True):
                    if not path.is_file():
                        raise FileNotFoundError(f"{where}: {path} not found")

    def _read_list(self, path: Path) -> tuple[list[Path], list[str]]:
        if not path.is_file():
            raise FileNotFoundError(f"list_file={str(path)!r} not found")
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0].strip() != LIST_HEADER:
            raise ValueError(f"list {str(path)!r}, line 1: expected the header {LIST_HEADER!r}, "
                             f"got {(lines[0] if lines else '')!r}")
        files, where = [], []
        for number, line in enumerate(lines[1:], start=2):
            if line.strip():
                files.append(self._resolve(line.strip(), f"list {str(path)!r}, line {number}"))
                where.append(f"list {str(path)!r}, line {number}")
        if not files:
            raise ValueError(f"list {str(path)!r} names no file")
        return files, where

    def _resolve(self, entry: str, where: str) -> Path:
        if not entry.endswith(".h5"):
            raise ValueError(f"{where}: expected an .h5 path, got {entry!r}")
        if Path(entry).is_absolute() and Path(entry).is_file():
            return Path(entry)
        parts = PurePosixPath(entry).parts
        starts = [i for i, part in enumerate(parts) if part in SPLIT_FOLDERS.values()]
        if not starts:
            raise ValueError(f"{where}: {entry!r} has no 'train/' or 'val/' folder to resolve it against root")
        return self.root.joinpath(*parts[starts[-1]:])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        h5py = require("h5py", extra="data")

        path, where = self.files[index], self.where[index]
        if not path.is_file():
            raise FileNotFoundError(f"{where}: {path} not found")
        with h5py.File(path, "r") as handle:
            missing = [key for key in ("rgb", "depth") if key not in handle]
            if missing:
                raise ValueError(f"{where}: {path} has no dataset {missing[0]!r} (found {sorted(handle.keys())})")
            rgb, depth = np.asarray(handle["rgb"]), np.asarray(handle["depth"], dtype=np.float32)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] != 3 or depth.ndim != 2:
            raise ValueError(f"{where}: {path}: expected rgb 3 x H x W uint8 and depth H x W, "
                             f"got rgb {rgb.shape} {rgb.dtype} and depth {depth.shape}")
        image = rgb_array_to_tensor(rgb.transpose(1, 2, 0))
        metres = torch.from_numpy(depth)
        metres = torch.where(torch.isfinite(metres) & (metres > 0), metres, torch.zeros(())).unsqueeze(0)
        check_pair(image, metres, f"{where}: {path}")
        name = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)
        sample: Sample = {"image": image, "depth": metres, "focal": NYU_FOCAL, "name": name}
        return self.transform(sample) if self.transform is not None else sample
