"""Dataset registry: ``name -> "module:Class"``, imported only when that dataset is created."""

from __future__ import annotations

import importlib
import os
from typing import Any

from torch.utils.data import Dataset

from imde.data._listed import Transform

# Entries are strings so that creating one dataset never imports the others (h5py, pybullet, ...).
_DATASETS: dict[str, str] = {
    "nyu_hu_csv": "imde.data.nyu:NYUHuCSV",
    "nyu_bts": "imde.data.nyu:NYUBTS",
    "nyu_mat": "imde.data.nyu:NYUMat",
    "nyu_h5": "imde.data.nyu_h5:NYUH5",
    "kitti_eigen": "imde.data.kitti:KittiEigen",
    "rendered": "imde.data.rendered:RenderedDataset",
}
# Datasets that take no list_file (their split is built in).
_NO_LIST = {"rendered"}


def list_datasets() -> list[str]:
    """Names accepted by :func:`create`.

    >>> list_datasets()
    ['kitti_eigen', 'nyu_bts', 'nyu_h5', 'nyu_hu_csv', 'nyu_mat', 'rendered']
    """
    return sorted(_DATASETS)


def create(
    name: str,
    root: str | os.PathLike[str],
    split: str = "train",
    list_file: str | os.PathLike[str] | None = None,
    transform: Transform | None = None,
    **options: Any,
) -> Dataset[dict[str, Any]]:
    """Create a depth dataset by name.

    Items are dicts: ``image`` float32 ``[3, H, W]`` (in ``[0, 1]`` at the file's full resolution when
    ``transform`` is ``None``), ``depth`` float32 ``[1, H, W]`` in metres with 0 where invalid, ``focal``
    (pixels) where known, ``name``.

    Args:
        name: one of :func:`list_datasets`.
        root: the dataset's folder (or zip for ``nyu_hu_csv``).
        split: ``"train"`` or ``"test"``.
        list_file: the split list distributed with the data (``nyu_mat``: optional path of ``splits.mat``).
        transform: joint sample transform, e.g. ``imde.data.transforms.create_transform("mff", train=True)``.
        **options: dataset-specific options (``depth_format``, ``gt_root``, ``filled``, ``on_error``, ...).
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset name {name!r}; choose one of {list_datasets()}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    module_name, class_name = _DATASETS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if name in _NO_LIST:
        if list_file is not None:
            raise ValueError(f"dataset {name!r} takes no list_file (got {str(list_file)!r})")
        return cls(root, split=split, transform=transform, **options)
    return cls(root, split=split, list_file=None if list_file is None else str(list_file), transform=transform,
               **options)
